"""The operator commands, as an operator types them."""

from __future__ import annotations

import base64
import datetime
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dns.name
import dns.query
import dns.rcode
import dns.tsig
import dns.tsigkeyring
import dns.update
import pytest

from registry import MIGRATIONS
from tests.ddnsd_harness import prepare, start, stop

BIN = Path(sys.executable).parent


def nascloud(registry: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "nascloud"), *args, "--registry", str(registry)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def as_json(registry: Path, *args: str) -> Any:
    done = nascloud(registry, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_accounts_devices_access_and_tokens(tmp_path: Path) -> None:
    registry = tmp_path / "registry.sqlite3"
    alice = as_json(registry, "account", "create", "alice@example.org", "--name", "Alice")
    bob = as_json(registry, "account", "create", "bob@example.org", "--name", "Bob")
    key = base64.b64encode(os.urandom(32)).decode()
    device = as_json(registry, "device", "enrol", alice["account_id"], "nas1", key)
    assert device["access_mode"] == "private" and device["public_key"] == key
    shared = as_json(registry, "device", "access", "nas1", "custom", bob["account_id"])
    assert shared["access_list"] == [bob["account_id"]]
    token = as_json(registry, "token", "create", "dyndns2", "nas1")
    assert len(token["secret"]) >= 22 and token["device_name"] == "nas1"
    assert [
        d["name"] for d in as_json(registry, "device", "list", "--owner", alice["account_id"])
    ] == ["nas1"]
    corrected = as_json(registry, "account", "correct", alice["account_id"], "--name", "Alice B.")
    assert corrected["display_name"] == "Alice B."
    assert as_json(registry, "token", "revoke", token["token_id"]) == {"revoked": token["token_id"]}
    deleted = as_json(registry, "account", "delete", alice["account_id"], "--yes")
    assert deleted == {"deleted_devices": ["nas1"]}
    assert as_json(registry, "device", "list") == []


def test_clear_errors_and_exit_codes(tmp_path: Path) -> None:
    registry = tmp_path / "registry.sqlite3"
    missing = nascloud(registry, "device", "delete", "nosuch", "--yes")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "nascloud: no device 'nosuch'"
    bad = nascloud(registry, "account", "create", "not-an-email", "--name", "X")
    assert bad.returncode == 1 and "is not an e-mail address" in bad.stderr
    alice = as_json(registry, "account", "create", "a@example.org", "--name", "A")
    invalid = nascloud(registry, "device", "enrol", alice["account_id"], "NAS_1", "AAAA")
    assert invalid.returncode == 1 and "device name" in invalid.stderr
    usage = nascloud(registry, "device", "access", "nas1", "everyone")
    assert usage.returncode == 2  # argparse: not one of the modes


def test_a_registry_from_newer_software_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    registry = tmp_path / "registry.sqlite3"
    as_json(registry, "account", "list")
    with sqlite3.connect(registry) as db:
        db.execute("UPDATE schema_version SET version = 999")
    db.close()
    done = nascloud(registry, "account", "list")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"nascloud: {registry} has schema version 999, newer than this software "
        f"({len(MIGRATIONS)}); upgrade nascloud"
    ]


def test_deleting_asks_for_confirmation(tmp_path: Path) -> None:
    registry = tmp_path / "registry.sqlite3"
    alice = as_json(registry, "account", "create", "a@example.org", "--name", "A")
    key = base64.b64encode(os.urandom(32)).decode()
    as_json(registry, "device", "enrol", alice["account_id"], "nas1", key)
    # No terminal to ask and no --yes: nothing is deleted.
    for args in (("device", "delete", "nas1"), ("account", "delete", alice["account_id"])):
        refused = nascloud(registry, *args)
        assert refused.returncode == 1
        assert "cannot be undone; add --yes to confirm" in refused.stderr
        assert "nothing was deleted" in refused.stderr
    assert [d["name"] for d in as_json(registry, "device", "list")] == ["nas1"]
    # At a terminal, the operator types the name (here through a pseudo-terminal).
    assert _at_a_terminal(registry, ["device", "delete", "nas1"], "nas2\n")[0] == 1
    code, output = _at_a_terminal(registry, ["device", "delete", "nas1"], "nas1\n")
    assert code == 0 and "Type 'nas1' to confirm" in output and "unregistered nas1" in output
    gone = as_json(registry, "account", "delete", alice["account_id"], "--yes")
    assert gone == {"deleted_devices": []}


def _at_a_terminal(registry: Path, args: list[str], typed: str) -> tuple[int, str]:
    import pty

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [str(BIN / "nascloud"), *args, "--registry", str(registry)],
        stdin=follower,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    os.write(leader, typed.encode())
    output = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the process ended and closed its end
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    return process.wait(timeout=30), output.decode(errors="replace")


def test_tokens_and_tsig_keys_are_listed_without_secrets(tmp_path: Path) -> None:
    registry = tmp_path / "registry.sqlite3"
    alice = as_json(registry, "account", "create", "a@example.org", "--name", "A")
    key = base64.b64encode(os.urandom(32)).decode()
    as_json(registry, "device", "enrol", alice["account_id"], "nas1", key)
    password = as_json(registry, "token", "create", "dyndns2", "nas1")
    api = as_json(registry, "token", "create", "api", alice["account_id"])
    tsig = as_json(registry, "device", "tsig-key", "nas1", "--algorithm", "hmac-sha512")
    listed = as_json(registry, "token", "list", "--device", "nas1")
    assert [t["token_id"] for t in listed] == [password["token_id"]]
    assert [
        t["token_id"] for t in as_json(registry, "token", "list", "--account", alice["account_id"])
    ] == [api["token_id"]]
    keys = as_json(registry, "device", "tsig-keys", "nas1")
    assert keys == [{"key_name": "nas1", "device_name": "nas1", "algorithm": "hmac-sha512"}]
    every = (
        json.dumps([listed, keys]) + nascloud(registry, "token", "list", "--device", "nas1").stdout
    )
    for secret in (password["secret"], api["secret"], tsig["secret"]):
        assert secret not in every


def test_key_files_for_agents_and_services(tmp_path: Path) -> None:
    def key(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "nascloud"), "key", *args], capture_output=True, text=True, timeout=60
        )

    made = key("create", str(tmp_path / "relay" / "service.key"), "--service", "relay")
    assert made.returncode == 0, made.stderr
    assert oct((tmp_path / "relay" / "service.key").stat().st_mode & 0o777) == "0o600"
    [comment, line] = made.stdout.splitlines()
    assert comment == "# in ddnsd's config, under [protocol.services]:"
    name, _, quoted = line.partition(" = ")
    public = quoted.strip('"')
    assert name == "relay" and len(base64.b64decode(public, validate=True)) == 32
    assert key("show", str(tmp_path / "relay" / "service.key")).stdout.strip() == public
    again = key("create", str(tmp_path / "relay" / "service.key"))
    assert again.returncode == 1 and "never replaced" in again.stderr
    (tmp_path / "not-a-key").write_text("hello\n")
    assert key("show", str(tmp_path / "not-a-key")).returncode == 1
    assert key("show", str(tmp_path / "missing")).returncode == 1


def _recent_utc(text: str | None) -> datetime.datetime:
    assert text is not None
    when = datetime.datetime.fromisoformat(text)
    assert when.utcoffset() == datetime.timedelta(0), text
    assert abs(time.time() - when.timestamp()) < 120, text
    return when


def test_times_are_iso_8601_in_json_and_in_text(tmp_path: Path) -> None:
    registry = tmp_path / "registry.sqlite3"
    alice = as_json(registry, "account", "create", "a@example.org", "--name", "A")
    _recent_utc(alice["created_at"])
    key = base64.b64encode(os.urandom(32)).decode()
    device = as_json(registry, "device", "enrol", alice["account_id"], "nas1", key)
    _recent_utc(device["created_at"])
    assert device["last_seen_at"] is None  # never seen stays null, not 1970
    token = as_json(registry, "token", "create", "dyndns2", "nas1")
    _recent_utc(token["created_at"])
    [listed] = as_json(registry, "account", "list")
    assert listed["created_at"] == alice["created_at"]
    assert as_json(registry, "device", "show", "nas1")["created_at"] == device["created_at"]
    [listed_token] = as_json(registry, "token", "list", "--device", "nas1")
    assert listed_token["created_at"] == token["created_at"]
    # What a person reads shows the same times.
    assert alice["created_at"] in nascloud(registry, "account", "list").stdout
    assert alice["created_at"] in nascloud(registry, "account", "show", alice["account_id"]).stdout
    assert device["created_at"] in nascloud(registry, "device", "show", "nas1").stdout
    assert "last seen never" in nascloud(registry, "device", "list").stdout
    assert token["created_at"] in nascloud(registry, "token", "list", "--device", "nas1").stdout


def test_a_tsig_key_is_rotated_by_creating_a_new_one_and_revoking_the_old(
    tmp_path: Path,
) -> None:
    """As docs/deploy.md tells it, against a running ddnsd: the old key works until it is
    revoked and is refused from the next UPDATE on; the new one goes on working."""
    prepare(tmp_path)
    daemon = start(tmp_path)
    try:
        registry = daemon.registry_path
        algorithm, old_name, old_secret = daemon.tsig["nas1"].split(":")
        new = as_json(registry, "device", "tsig-key", "nas1", "--key-name", "nas1-2026.dyn.test")
        names = [k["key_name"] for k in as_json(registry, "device", "tsig-keys", "nas1")]
        assert sorted(names) == sorted([old_name, "nas1-2026.dyn.test"])

        def update(name: str, secret: str, address: str) -> int:
            keyring = dns.tsigkeyring.from_text({name: (algorithm, secret)})
            message = dns.update.UpdateMessage(
                "dyn.test", keyring=keyring, keyname=dns.name.from_text(name)
            )
            message.replace("nas1", 60, "A", address)
            reply = dns.query.tcp(message, "127.0.0.1", port=daemon.dns_port, timeout=5)
            return int(reply.rcode())

        assert update(old_name, old_secret, "192.0.2.10") == dns.rcode.NOERROR
        assert update(new["key_name"], new["secret"], "192.0.2.11") == dns.rcode.NOERROR
        # Another device's key is not this device's to revoke.
        wrong = nascloud(registry, "device", "tsig-key-revoke", "nas2", old_name)
        assert wrong.returncode == 1
        assert wrong.stderr.strip() == f"nascloud: nas2 has no TSIG key '{old_name}'"
        done = nascloud(registry, "device", "tsig-key-revoke", "nas1", old_name + ".")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"revoked TSIG key {old_name}. of nas1")
        assert "refused from now on" in done.stdout
        with pytest.raises(dns.tsig.PeerBadKey):  # NOTAUTH, BADKEY: unknown to the server
            update(old_name, old_secret, "192.0.2.12")
        assert update(new["key_name"], new["secret"], "192.0.2.13") == dns.rcode.NOERROR
        names = [k["key_name"] for k in as_json(registry, "device", "tsig-keys", "nas1")]
        assert names == ["nas1-2026.dyn.test"]
        again = nascloud(registry, "device", "tsig-key-revoke", "nas1", old_name)
        assert again.returncode == 1
    finally:
        stop(daemon)
