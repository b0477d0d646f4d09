"""Real update clients against ddnsd: nsupdate (RFC 2136 + TSIG), ddclient and inadyn
(DynDNS2). Secondaries (Knot, NSD) are in test_ddnsd_secondary.py."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

from tests.ddnsd_harness import BIN, Ddnsd

from .conftest import require
from .test_ddnsd_dig import dig, nsupdate


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
    for key, error in (
        (f"{algorithm}:{name}:{wrong}", "NOTAUTH(BADSIG)"),
        (f"{algorithm}:stranger.dyn.test:{wrong}", "NOTAUTH(BADKEY)"),
    ):
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
        assert f"update failed: {error}" in done.stderr, done.stderr  # RFC 8945 5.2
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


def test_nsupdate_with_an_hmac_sha512_key_from_the_cli(ddnsd: Ddnsd) -> None:
    """docs/ddnsd.md: TSIG with HMAC-SHA256 or SHA-512; a key made by `nascloud device
    tsig-key --algorithm hmac-sha512` while ddnsd runs works at once, a wrong secret is
    refused with the TSIG error nsupdate reports."""
    require("nsupdate")
    created = subprocess.run(
        [
            str(BIN / "nascloud"),
            "device",
            "tsig-key",
            "nas1",
            "--algorithm",
            "hmac-sha512",
            "--key-name",
            "nas1-512.dyn.test",
            "--registry",
            str(ddnsd.registry_path),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["algorithm"] == "hmac-sha512"
    good = f"hmac-sha512:{key['key_name']}:{key['secret']}"
    wrong = f"hmac-sha512:{key['key_name']}:{base64.b64encode(os.urandom(64)).decode()}"
    script = (
        f"server 127.0.0.1 {ddnsd.dns_port}\nzone dyn.test\n"
        "update add nas1.dyn.test 60 A 192.0.2.51\nsend\n"
    )

    def run(secret: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["nsupdate", "-t", "5", "-y", secret],
            input=script,
            capture_output=True,
            text=True,
            timeout=30,
        )

    refused = run(wrong)
    assert refused.returncode != 0
    assert "update failed: NOTAUTH(BADSIG)" in refused.stderr, refused.stderr
    assert dig(ddnsd, "nas1.dyn.test", "A").get("ANSWER_SECTION") is None
    done = run(good)
    assert done.returncode == 0, done.stderr
    assert dig(ddnsd, "nas1.dyn.test", "A")["ANSWER_SECTION"] == [
        "nas1.dyn.test. 60 IN A 192.0.2.51"
    ]


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
