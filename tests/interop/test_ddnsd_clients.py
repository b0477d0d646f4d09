"""Real update clients against ddnsd: nsupdate (RFC 2136 + TSIG), ddclient and inadyn
(DynDNS2), and NSD as a secondary that transfers the zone and follows NOTIFY."""

from __future__ import annotations

import base64
import os
import subprocess
import time
from pathlib import Path

from tests.ddnsd_harness import Ddnsd

from .conftest import require
from .test_ddnsd_dig import dig, nsupdate


def wait_for(predicate: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_nsupdate_sets_and_deletes_an_acme_challenge(ddnsd: Ddnsd) -> None:
    require("nsupdate")
    name = "_acme-challenge.nas1.dyn.test"
    done = nsupdate(ddnsd, "nas1", f'update add {name} 60 TXT "gfj9Xq-Rg85nM"')
    assert done.returncode == 0, done.stderr
    assert dig(ddnsd, name, "TXT")["ANSWER_SECTION"] == [f'{name}. 60 IN TXT "gfj9Xq-Rg85nM"']
    done = nsupdate(ddnsd, "nas1", f"update delete {name} TXT")
    assert done.returncode == 0, done.stderr
    assert dig(ddnsd, name, "TXT")["status"] == "NXDOMAIN"


def test_nsupdate_may_change_only_its_own_device(ddnsd: Ddnsd) -> None:
    require("nsupdate")
    for command in (
        "update add nas2.dyn.test 60 A 192.0.2.66",  # another device
        "update add _acme-challenge.nas2.dyn.test 60 TXT x",
        "update add nas1.dyn.test 60 MX 10 mail.example.org.",  # a type it may not set
        "update add _acme-challenge.nas1.dyn.test 60 A 192.0.2.1",
        "update delete dyn.test NS",
    ):
        done = nsupdate(ddnsd, "nas1", command)
        assert done.returncode != 0 and "REFUSED" in done.stderr, (command, done.stderr)
    assert dig(ddnsd, "nas2.dyn.test", "A").get("ANSWER_SECTION") is None


def test_nsupdate_with_a_wrong_or_unknown_key_is_not_authorized(ddnsd: Ddnsd) -> None:
    require("nsupdate")
    algorithm, name, _ = ddnsd.tsig["nas1"].split(":")
    wrong = base64.b64encode(os.urandom(32)).decode()
    for key in (f"{algorithm}:{name}:{wrong}", f"{algorithm}:stranger.dyn.test:{wrong}"):
        script = (
            f"server 127.0.0.1 {ddnsd.dns_port}\nzone dyn.test\n"
            "update add nas1.dyn.test 60 A 192.0.2.7\nsend\n"
        )
        done = subprocess.run(
            ["nsupdate", "-t", "5", "-y", key],
            input=script,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode != 0
    assert dig(ddnsd, "nas1.dyn.test", "A").get("ANSWER_SECTION") is None
    unsigned = subprocess.run(
        ["nsupdate", "-t", "5"],
        input=f"server 127.0.0.1 {ddnsd.dns_port}\nzone dyn.test\n"
        "update add nas1.dyn.test 60 A 192.0.2.7\nsend\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "REFUSED" in unsigned.stderr


def test_ddclient_updates_a_name(ddnsd: Ddnsd, tmp_path: Path) -> None:
    require("ddclient")
    config = tmp_path / "ddclient.conf"
    config.write_text(
        "daemon=0\nssl=no\nprotocol=dyndns2\nuse=ip, ip=198.51.100.20\n"
        f"server={ddnsd.dyndns2}\nlogin=nas1.dyn.test\npassword='{ddnsd.tokens['nas1']}'\n"
        "nas1.dyn.test\n"
    )
    config.chmod(0o600)
    done = subprocess.run(
        [
            "ddclient",
            "-daemon=0",
            "-foreground",
            "-force",
            "-verbose",
            "-file",
            str(config),
            "-cache",
            str(tmp_path / "ddclient.cache"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "SUCCESS" in done.stdout + done.stderr, done.stdout + done.stderr
    assert dig(ddnsd, "nas1.dyn.test", "A")["ANSWER_SECTION"] == [
        "nas1.dyn.test. 60 IN A 198.51.100.20"
    ]


def test_inadyn_updates_a_name(ddnsd: Ddnsd, tmp_path: Path) -> None:
    require("inadyn")
    config = tmp_path / "inadyn.conf"
    config.write_text(
        f"""
period = 60
custom nascloud {{
    username = nas1.dyn.test
    password = {ddnsd.tokens["nas1"]}
    ddns-server = {ddnsd.dyndns2}
    ddns-path = "/nic/update?hostname=%h&myip=%i"
    checkip-command = "/bin/echo 198.51.100.30"
    hostname = nas1.dyn.test
    ssl = false
}}
"""
    )
    done = subprocess.run(
        [
            "inadyn",
            "-1",
            "--foreground",
            "-f",
            str(config),
            "--cache-dir",
            str(tmp_path),
            "-l",
            "debug",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert dig(ddnsd, "nas1.dyn.test", "A")["ANSWER_SECTION"] == [
        "nas1.dyn.test. 60 IN A 198.51.100.30"
    ], output


def test_nsd_as_a_secondary_transfers_and_follows_notify(tmp_path: Path) -> None:
    require("nsd", "dig")
    import socket

    from tests.ddnsd_harness import DdnsdOptions, running_ddnsd

    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    nsd_port = probe.getsockname()[1]
    probe.close()
    daemon_dir = tmp_path / "ddnsd"
    daemon_dir.mkdir()
    with running_ddnsd(
        daemon_dir, DdnsdOptions(extra=f'notify = ["127.0.0.1:{nsd_port}"]')
    ) as ddnsd:
        nsd_dir = tmp_path / "nsd"
        nsd_dir.mkdir()
        (nsd_dir / "nsd.conf").write_text(
            f"""
server:
    ip-address: 127.0.0.1
    port: {nsd_port}
    username: ""
    chroot: ""
    zonesdir: "{nsd_dir}"
    pidfile: "{nsd_dir}/nsd.pid"
    xfrdfile: "{nsd_dir}/xfrd.state"
    xfrdir: "{nsd_dir}"
    zonelistfile: "{nsd_dir}/zone.list"
    database: ""
    logfile: "{nsd_dir}/nsd.log"
    verbosity: 2
remote-control:
    control-enable: no
key:
    name: "transfer.dyn.test"
    algorithm: hmac-sha256
    secret: "{ddnsd.transfer_key}"
zone:
    name: "dyn.test"
    zonefile: "dyn.test.zone"
    request-xfr: AXFR 127.0.0.1@{ddnsd.dns_port} transfer.dyn.test
    allow-notify: 127.0.0.1 transfer.dyn.test
"""
        )
        nsd = subprocess.Popen(
            ["nsd", "-d", "-c", str(nsd_dir / "nsd.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            secondary = Ddnsd(**{**ddnsd.__dict__, "dns_port": nsd_port})

            def secondary_has(address: str) -> bool:
                try:
                    answer = dig(secondary, "nas1.dyn.test", "A").get("ANSWER_SECTION") or []
                except subprocess.CalledProcessError:
                    return False
                return answer == [f"nas1.dyn.test. 60 IN A {address}"]

            nsupdate(ddnsd, "nas1", "update add nas1.dyn.test 60 A 192.0.2.10")
            wait_for(lambda: secondary_has("192.0.2.10"), 20)
            # The next change reaches the secondary by NOTIFY, not by its refresh timer.
            nsupdate(
                ddnsd,
                "nas1",
                "update delete nas1.dyn.test A\nupdate add nas1.dyn.test 60 A 192.0.2.11",
            )
            wait_for(lambda: secondary_has("192.0.2.11"), 20)
            primary_serial = dig(ddnsd, "dyn.test", "SOA")["ANSWER_SECTION"][0].split()[6]
            secondary_serial = dig(secondary, "dyn.test", "SOA")["ANSWER_SECTION"][0].split()[6]
            assert primary_serial == secondary_serial
        finally:
            nsd.terminate()
            nsd.wait(timeout=10)
        log = (nsd_dir / "nsd.log").read_text()
        assert "TSIG verified with key transfer.dyn.test" in log
