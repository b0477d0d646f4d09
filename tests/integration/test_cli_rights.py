"""The user's rights end to end through the operator CLI: export (access), correct
(rectification), delete (erasure) — privacy rules 5 and 6."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from pathlib import Path

import trio

from registry import AccessLogKeys, AccessRecord, DnsRRset, Registry
from tests.database import database_bytes

from .test_cli_admin import as_json, nascloud

CLIENT = "198.51.100.203"
OTHER_CLIENT = "203.0.113.99"


async def _device_activity(registry_path: Path, keys_path: Path) -> None:
    """What ddnsd and relayd write while the devices are in use."""
    registry = Registry.open_sqlite(registry_path)
    try:
        now = time.time()
        await registry.commit_dns(
            [
                DnsRRset("alice-nas", "A", "alice-nas", 60, ("192.0.2.41",)),
                DnsRRset("_acme-challenge.alice-nas", "TXT", "alice-nas", 60, ("acme-proof-x1",)),
                DnsRRset("bob-nas", "A", "bob-nas", 60, ("192.0.2.42",)),
            ],
            {"example.test": 7},
        )
        keys = AccessLogKeys(keys_path)
        await registry.log_access(
            [
                AccessRecord(now - 60, now - 50, "alice-nas", CLIENT, "https", 900, 12000, "ok"),
                AccessRecord(now - 40, now - 30, "bob-nas", OTHER_CLIENT, "https", 1, 2, "ok"),
            ],
            keys,
        )
    finally:
        await registry.aclose()


def test_export_holds_everything_about_the_account_and_nothing_else(tmp_path: Path) -> None:
    registry = tmp_path / "registry.sqlite3"
    keys = tmp_path / "access-log.keys"
    alice = as_json(registry, "account", "create", "alice@example.org", "--name", "Alice")
    bob = as_json(registry, "account", "create", "bob@example.org", "--name", "Bob")
    alice_key = base64.b64encode(os.urandom(32)).decode()
    as_json(registry, "device", "enrol", alice["account_id"], "alice-nas", alice_key)
    as_json(
        registry,
        "device",
        "enrol",
        bob["account_id"],
        "bob-nas",
        base64.b64encode(os.urandom(32)).decode(),
    )
    as_json(registry, "device", "access", "bob-nas", "custom", alice["account_id"])
    dyndns = as_json(registry, "token", "create", "dyndns2", "alice-nas")
    api = as_json(registry, "token", "create", "api", alice["account_id"])
    tsig = as_json(registry, "device", "tsig-key", "alice-nas", "--key-name", "alice-nas.key")
    trio.run(_device_activity, registry, keys)

    exported = as_json(registry, "account", "export", alice["account_id"], "--key-file", str(keys))
    assert exported["account"]["email"] == "alice@example.org"
    assert exported["account"]["display_name"] == "Alice"
    assert [t["token_id"] for t in exported["api_tokens"]] == [api["token_id"]]
    assert exported["granted_access_to"] == ["bob-nas"]
    (device,) = exported["devices"]
    assert device["name"] == "alice-nas" and device["public_key"] == alice_key
    assert [t["token_id"] for t in device["dyndns2_tokens"]] == [dyndns["token_id"]]
    assert device["tsig_keys"] == [{"key_name": "alice-nas.key", "algorithm": "hmac-sha256"}]
    assert {(r["owner"], r["type"], tuple(r["values"])) for r in device["dns_records"]} == {
        ("alice-nas", "A", ("192.0.2.41",)),
        ("_acme-challenge.alice-nas", "TXT", ("acme-proof-x1",)),
    }
    (connection,) = device["access_log"]
    assert connection["client_address"] == CLIENT and connection["bytes_out"] == 12000
    assert device["access_log_unreadable"] == 0
    text = json.dumps(exported)
    # Secrets are not data about the person: only their hashes exist, or the device holds them.
    for secret in (dyndns["secret"], api["secret"], tsig["secret"]):
        assert secret not in text
    # Nothing of another account leaks into this one's export.
    for foreign in ("bob@example.org", "Bob", "192.0.2.42", OTHER_CLIENT, bob["account_id"]):
        assert foreign not in text
    assert exported["not_included"]

    without_keys = as_json(registry, "account", "export", alice["account_id"])
    assert "access_log" not in without_keys["devices"][0]
    assert any("access log" in line for line in without_keys["not_included"])
    missing = nascloud(registry, "account", "export", "acc_nosuch")
    assert missing.returncode == 1 and "no account" in missing.stderr


def test_correct_then_delete_leaves_no_trace_in_the_database(tmp_path: Path) -> None:
    registry = tmp_path / "registry.sqlite3"
    keys = tmp_path / "access-log.keys"
    alice = as_json(registry, "account", "create", "alice-old@example.org", "--name", "Alice")
    bob = as_json(registry, "account", "create", "bob@example.org", "--name", "Bob")
    public_key = os.urandom(32)
    as_json(
        registry,
        "device",
        "enrol",
        alice["account_id"],
        "alice-nas",
        base64.b64encode(public_key).decode(),
    )
    as_json(
        registry,
        "device",
        "enrol",
        bob["account_id"],
        "bob-nas",
        base64.b64encode(b"b" * 32).decode(),
    )
    dyndns = as_json(registry, "token", "create", "dyndns2", "alice-nas")
    tsig = as_json(registry, "device", "tsig-key", "alice-nas")
    trio.run(_device_activity, registry, keys)

    corrected = as_json(
        registry, "account", "correct", alice["account_id"], "--email", "alice@example.net"
    )
    assert corrected["email"] == "alice@example.net"
    assert b"alice-old@example.org" not in database_bytes(registry)  # the old value is gone too

    assert as_json(registry, "account", "delete", alice["account_id"], "--yes") == {
        "deleted_devices": ["alice-nas"]
    }
    stored = database_bytes(registry)
    for trace in (
        b"alice@example.net",
        public_key,
        base64.b64decode(tsig["secret"]),
        hashlib.sha256(dyndns["secret"].encode()).digest(),
        b"acme-proof-x1",
        b"192.0.2.41",
        alice["account_id"].encode(),
    ):
        assert trace not in stored, trace
    assert b"bob@example.org" in stored and b"192.0.2.42" in stored  # others untouched
    assert nascloud(registry, "device", "show", "alice-nas").returncode == 1
    assert nascloud(registry, "account", "export", alice["account_id"]).returncode == 1
    # Connection records are kept for the legal retention period (rule 3), encrypted; they
    # still read with the key and are purged on schedule, not by the account's deletion.
    logs = as_json(registry, "logs", "--key-file", str(keys), "--device", "alice-nas")
    assert [r["client_address"] for r in logs["records"]] == [CLIENT]
