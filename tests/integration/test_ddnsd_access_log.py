"""ddnsd keeps DynDNS2 and RFC 2136 updates in the encrypted access log (privacy rule 3):
the full client address is readable with the key only, never stored in clear."""

from __future__ import annotations

import base64
import http.client
import json
import os
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.tsigkeyring
import dns.update

from tests.database import database_bytes
from tests.ddnsd_harness import BIN, DdnsdOptions, running_ddnsd, stop

from .ddnsd_updates import http_update


def test_updates_are_recorded_encrypted_and_read_with_the_key(tmp_path: Path) -> None:
    with running_ddnsd(tmp_path, DdnsdOptions(access_log=True)) as daemon:
        assert http_update(daemon, "nas1", "198.51.100.31") == "good 198.51.100.31"
        assert http_update(daemon, "nas1", "198.51.100.31") == "nochg 198.51.100.31"
        algorithm, name, secret = daemon.tsig["nas2"].split(":")
        keyring = dns.tsigkeyring.from_text({name: (algorithm, secret)})
        update = dns.update.UpdateMessage(
            "dyn.test", keyring=keyring, keyname=dns.name.from_text(name)
        )
        update.replace("nas2", 60, "AAAA", "2001:db8:77::1")
        reply = dns.query.tcp(update, "127.0.0.1", port=daemon.dns_port, timeout=5)
        assert reply.rcode() == dns.rcode.NOERROR
        refused = dns.update.UpdateMessage(
            "dyn.test", keyring=keyring, keyname=dns.name.from_text(name)
        )
        refused.replace("nas1", 60, "A", "192.0.2.1")  # another device's name
        reply = dns.query.tcp(refused, "127.0.0.1", port=daemon.dns_port, timeout=5)
        assert reply.rcode() == dns.rcode.REFUSED
        stop(daemon)  # records still queued are written on the way out
    keys = tmp_path / "state" / "access-log.keys"
    registry = tmp_path / "state" / "registry.sqlite3"
    stored = database_bytes(registry)
    assert b"127.0.0.1" not in stored  # the client address exists only encrypted
    done = subprocess.run(
        [
            str(BIN / "nascloud"),
            "logs",
            "--registry",
            str(registry),
            "--key-file",
            str(keys),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    records = json.loads(done.stdout)["records"]
    seen = [(r["device"], r["ingress"], r["result"], r["client_address"]) for r in records]
    assert seen == [
        ("nas1", "dyndns2", "good", "127.0.0.1"),
        ("nas1", "dyndns2", "nochg", "127.0.0.1"),
        ("nas2", "rfc2136", "noerror", "127.0.0.1"),
        ("nas2", "rfc2136", "refused", "127.0.0.1"),
    ]
    assert all(r["bytes_out"] > 0 for r in records)
    assert all(r["bytes_in"] > 0 for r in records if r["ingress"] == "rfc2136")
    # The anonymised copy keeps the /24 only.
    db = sqlite3.connect(registry)
    try:
        prefixes = {row[0] for row in db.execute("SELECT client_prefix FROM access_stats")}
    finally:
        db.close()
    assert prefixes == {"127.0.0.0/24"}


def test_a_canary_in_update_requests_is_kept_nowhere(tmp_path: Path) -> None:
    """Privacy rule 1 on ddnsd: paths, query strings and headers of DynDNS2 requests appear in
    no log, no database and no file, with the access log on."""
    canary = "canary-" + os.urandom(8).hex()
    with running_ddnsd(tmp_path, DdnsdOptions(access_log=True)) as daemon:
        host, port = daemon.dyndns2.rsplit(":", 1)
        token = daemon.tokens["nas1"]
        for user, secret in (("nas1.dyn.test", token), (f"{canary}.dyn.test", canary)):
            auth = base64.b64encode(f"{user}:{secret}".encode()).decode()
            with closing(http.client.HTTPConnection(host, int(port), timeout=10)) as connection:
                connection.request(
                    "GET",
                    f"/{canary}/update?hostname=nas1.dyn.test&myip=198.51.100.8&x={canary}",
                    headers={
                        "Authorization": f"Basic {auth}",
                        "User-Agent": f"router/{canary}",
                        "X-Canary": canary,
                    },
                )
                assert connection.getresponse().read().split()[0] in (b"good", b"badauth")
        stop(daemon)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert canary.encode() not in path.read_bytes(), path
