"""Data minimisation: every registry column is in the documented data inventory, with what it
is, why it is kept and for how long; and the inventory names no column that does not exist."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from registry import Registry

INVENTORY = Path(__file__).resolve().parents[2] / "docs" / "data-inventory.md"
_ROW = re.compile(r"^\| `(\w+)\.(\w+)` \|(.*)\|\s*$")


def _documented() -> dict[tuple[str, str], list[str]]:
    rows: dict[tuple[str, str], list[str]] = {}
    for line in INVENTORY.read_text().splitlines():
        match = _ROW.match(line)
        if match:
            key = (match.group(1), match.group(2))
            assert key not in rows, f"{key} is listed twice"
            rows[key] = [cell.strip() for cell in match.group(3).split("|")]
    return rows


def _schema(tmp_path: Path) -> set[tuple[str, str]]:
    Registry.open_sqlite(tmp_path / "registry.sqlite3").backend.close()
    db = sqlite3.connect(tmp_path / "registry.sqlite3")
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {
            (table, column[1])
            for table in tables
            for column in db.execute(f"PRAGMA table_info({table})")
        }
    finally:
        db.close()


def test_every_column_is_in_the_inventory_and_nothing_else_is(tmp_path: Path) -> None:
    documented = _documented()
    schema = _schema(tmp_path)
    assert len(schema) > 40  # the schema was read, not an empty database
    missing = sorted(schema - documented.keys())
    assert not missing, f"columns without an entry in {INVENTORY.name}: {missing}"
    stale = sorted(documented.keys() - schema)
    assert not stale, f"{INVENTORY.name} lists columns that do not exist: {stale}"


def test_every_entry_says_what_why_and_how_long() -> None:
    for key, cells in _documented().items():
        assert len(cells) == 3 and all(cells), f"{key}: what, why and how long are required"


def test_an_account_is_an_id_an_email_and_a_name(tmp_path: Path) -> None:
    accounts = {column for table, column in _schema(tmp_path) if table == "accounts"}
    assert accounts == {"account_id", "email", "display_name", "created_at"}
