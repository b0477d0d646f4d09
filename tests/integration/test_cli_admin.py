"""The operator commands, as an operator types them."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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
    deleted = as_json(registry, "account", "delete", alice["account_id"])
    assert deleted == {"deleted_devices": ["nas1"]}
    assert as_json(registry, "device", "list") == []


def test_clear_errors_and_exit_codes(tmp_path: Path) -> None:
    registry = tmp_path / "registry.sqlite3"
    missing = nascloud(registry, "device", "delete", "nosuch")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "nascloud: no device 'nosuch'"
    bad = nascloud(registry, "account", "create", "not-an-email", "--name", "X")
    assert bad.returncode == 1 and "is not an e-mail address" in bad.stderr
    alice = as_json(registry, "account", "create", "a@example.org", "--name", "A")
    invalid = nascloud(registry, "device", "enrol", alice["account_id"], "NAS_1", "AAAA")
    assert invalid.returncode == 1 and "device name" in invalid.stderr
    usage = nascloud(registry, "device", "access", "nas1", "everyone")
    assert usage.returncode == 2  # argparse: not one of the modes
