"""Moving a registry from one engine to another (a SQLite machine becoming a fleet on
PostgreSQL): every row of every table, in one transaction on the target, which must be a
registry with nothing in it yet."""

from __future__ import annotations

from ._models import Conflict
from ._schema import TABLES
from ._sql import SQLBackend

__all__ = ["copy_registry"]


def copy_registry(source: SQLBackend, target: SQLBackend) -> dict[str, int]:
    """Copy every row of `source` into `target` (blocking); return the rows per table.
    Both are at this software's schema (opening them migrated them). Conflict if the
    target holds any row already: a copy never merges two registries."""
    with target._transaction() as db:
        for table in TABLES:
            if db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
                raise Conflict(f"{target.where} is not empty (table {table} has rows)")
        copied: dict[str, int] = {}
        for table in TABLES:
            rows = source._read(f"SELECT * FROM {table}").fetchall()
            if rows:
                marks = ", ".join("?" * len(rows[0]))
                db.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
            copied[table] = len(rows)
        target._copied(db)
    return copied
