"""`nascloud registry copy`: a SQLite machine's registry moved into PostgreSQL by the
operator's command, once; the fleet's CLI then finds everything there."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from tests.postgres import PostgresServer

from .test_cli_admin import as_json, nascloud


def test_a_sqlite_registry_is_copied_into_postgresql_once(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    sqlite = tmp_path / "registry.sqlite3"
    alice = as_json(sqlite, "account", "create", "alice@example.org", "--name", "Alice")
    key = base64.b64encode(bytes(range(32))).decode()
    as_json(sqlite, "device", "enrol", alice["account_id"], "nas1", key)
    as_json(sqlite, "token", "create", "dyndns2", "nas1", "--name", "router")
    url = postgres_server.create_database()
    copied = nascloud(sqlite, "registry", "copy", "--to", url, "--json")
    assert copied.returncode == 0, copied.stderr
    counts = json.loads(copied.stdout)
    assert (counts["accounts"], counts["devices"], counts["tokens"]) == (1, 1, 1)
    # The last --registry wins: the fleet's, as the CLI must take a URI as written.
    devices = nascloud(sqlite, "device", "list", "--json", "--registry", url)
    assert devices.returncode == 0, devices.stderr
    assert [d["name"] for d in json.loads(devices.stdout)] == ["nas1"]
    again = nascloud(sqlite, "registry", "copy", "--to", url)
    assert again.returncode == 1
    assert "not empty" in again.stderr
    missing = nascloud(tmp_path / "none.sqlite3", "registry", "copy", "--to", url)
    assert missing.returncode != 0 and "no registry there" in missing.stderr
