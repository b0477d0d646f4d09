"""The embedded backend: one SQLite file in WAL mode with secure_delete, migrated on open.

Blocking; used from one worker thread at a time through `Registry`. secure_delete makes
SQLite overwrite deleted rows, so erased data does not linger in the file (privacy rule 5).
A reserve file beside the database is given up when the disk fills, so that the write-ahead
log can still be checkpointed and truncated; errors that cannot heal are `RegistryGone`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._models import RegistryFull, RegistryGone
from ._reserve import Reserve
from ._sql import Rows, SQLBackend

__all__ = ["RESERVE_BYTES", "SQLiteBackend"]

BUSY_TIMEOUT_MS = 5000  # how long a write waits for another process's write lock
#: Room kept on the registry's disk for the checkpoint that empties the write-ahead log once
#: the disk is full: a checkpoint copies pages into the database, which may have to grow,
#: and without room for that the log could never shrink again (every write refused, even
#: after a restart). 256 pages: more than the daemons change between two checkpoints.
RESERVE_BYTES = 1 << 20
#: A write-ahead log is cut back to this size after a checkpoint, so that a burst (or a
#: reader holding a snapshot) does not keep the disk space it took.
JOURNAL_SIZE_LIMIT_BYTES = 4 << 20

# SQLite's primary result codes (sqlite3.h) that no retry can heal: the file is not there,
# not a database, damaged, or cannot be written. Every other error (a full disk, a lock
# another process holds, an SQL or constraint error) is raised as it is.
_GONE = {
    "SQLITE_CORRUPT": "the database file is corrupt",
    "SQLITE_NOTADB": "the file is not a SQLite database",
    "SQLITE_CANTOPEN": "the database file cannot be opened",
    "SQLITE_READONLY": "the database cannot be written (moved, deleted or read-only)",
    "SQLITE_IOERR": "the file system failed to read or write it",
    "SQLITE_PERM": "access to the database file is denied",
}


class SQLiteBackend(SQLBackend):
    integrity_error = sqlite3.IntegrityError
    #: One connection, used by one thread at a time.
    concurrency = 1
    notifies = False

    def __init__(
        self, path: Path | str, *, reserve_bytes: int = RESERVE_BYTES, create: bool = True
    ) -> None:
        """Open the registry at `path`; without `create` (the daemons), one that is not there
        is RegistryGone rather than a new, empty one (a restart after an unmount, or a path
        mistyped, must not serve a zone with no devices)."""
        self.path = path
        self.where = str(path)
        self._file: Path | None = None if str(path) == ":memory:" else Path(path)
        if self._file is not None and not create and not self._file.exists():
            raise RegistryGone(
                f"{path}: no registry there (the nascloud CLI creates one; or restore a backup)"
            )
        if self._file is not None:
            self._file.parent.mkdir(parents=True, exist_ok=True)
        self._erase_pending = False  # an erasure whose WAL truncation is still to be done
        reserve = None if self._file is None else self._file.with_name(self._file.name + ".reserve")
        self._reserve = Reserve(reserve, reserve_bytes)
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE) in _transaction.
        try:
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            why = self.why_gone(exc)
            if why is None:
                raise
            raise RegistryGone(why) from exc
        try:
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA secure_delete = ON")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT_BYTES}")
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._migrate()
        except sqlite3.Error as exc:
            self._db.close()
            why = self.why_gone(exc)
            if why is None:
                raise
            raise RegistryGone(why) from exc
        # The file as opened: another one at the same path later is not this registry.
        self._identity = self._stat_identity()
        self._reserve.keep()

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException as exc:
            # SQLite may have rolled back already (a full disk does): a second ROLLBACK
            # would hide the error. A failed COMMIT may leave the transaction open: then
            # every later BEGIN would fail.
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error) and _code(exc) == "SQLITE_FULL":
                self._make_room()
                raise RegistryFull(f"{self._file}: the disk is full") from exc
            raise
        if self._erase_pending:
            self.finish_erasure()
        if self._reserve.missing:
            self._reserve.keep()

    # -- a full disk, and a registry that is gone --------------------------------------------

    @property
    def reserve_path(self) -> Path | None:
        return self._reserve.path

    def _make_room(self) -> None:
        """The disk is full: empty the write-ahead log into the database. If the checkpoint
        finds no room for the pages it copies, the reserve is given up for it, and taken
        again at once from what is left, so that appending to the log never eats it (the
        checkpoint may stop at another process's snapshot, and its end needs room too)."""
        if self._checkpoint_room() or not self._reserve.give_up():
            return
        try:
            self._checkpoint_room()
        finally:
            self._reserve.keep(now=True)

    def _checkpoint_room(self) -> bool:
        """One checkpoint attempt that never waits; False if it found the disk full."""
        self._db.execute("PRAGMA busy_timeout = 0")  # the one registry thread never waits
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as exc:
            return _code(exc) != "SQLITE_FULL"
        finally:
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return True

    def _stat_identity(self) -> tuple[int, int] | None:
        if self._file is None:
            return None
        st = self._file.stat()
        return (st.st_dev, st.st_ino)

    def check(self) -> None:
        """RegistryGone unless the file at the path is still the one opened: SQLite reads a
        deleted file (or one on a file system unmounted lazily) through its open descriptor,
        so stale answers would go on with no error at all."""
        if self._file is None:
            return
        try:
            identity = self._stat_identity()
        except FileNotFoundError:
            raise RegistryGone(
                f"{self._file}: no such file (deleted, or its file system unmounted)"
            ) from None
        except OSError as exc:
            raise RegistryGone(f"{self._file}: {exc.strerror}") from None
        if identity != self._identity:
            raise RegistryGone(f"{self._file}: another file is at this path now")

    def why_gone(self, error: Exception) -> str | None:
        if not isinstance(error, sqlite3.Error):
            return None
        why = _GONE.get(_code(error))
        return None if why is None else f"{self.path}: {why} ({error})"

    # -- what the shared queries stand on -------------------------------------------------------

    def _read(self, sql: str, parameters: Sequence[Any] = ()) -> Rows:
        return self._db.execute(sql, parameters)

    def wait_change(self, seen: int, timeout_s: float) -> int:
        raise NotImplementedError("SQLite tells no other process of a change: poll")

    def is_unique_violation(self, error: Exception) -> bool:
        return "UNIQUE" in str(error) or "PRIMARY KEY" in str(error)

    # -- erasure -----------------------------------------------------------------------------------

    def _erased(self, *tables: str) -> None:
        """Whatever the tables: secure_delete zeroes deleted rows in the pages it writes,
        but in WAL mode the old page images remain in the write-ahead log until a checkpoint
        truncates it. Another process reading the registry (relayd, ddnsd) may hold a
        snapshot that stops the truncation: then the erasure stays pending and is tried
        again after every later transaction of this process and by `finish_erasure`, never
        waited for here (the one registry thread would wait `busy_timeout` per delete)."""
        self._erase_pending = True
        self.finish_erasure()

    def finish_erasure(self) -> bool:
        """One attempt to truncate the WAL, without waiting for other processes; True once
        no erased page image is left in it."""
        if not self._erase_pending:
            return True
        self._db.execute("PRAGMA busy_timeout = 0")
        try:
            busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.OperationalError:  # locked by a writer of another process
            busy = 1
        finally:
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._erase_pending = bool(busy)
        return not self._erase_pending

    def erasure_pending(self) -> bool:
        return self._erase_pending


def _code(error: sqlite3.Error) -> str:
    """An error's primary result code: SQLITE_READONLY for SQLITE_READONLY_DBMOVED."""
    name = getattr(error, "sqlite_errorname", None) or "SQLITE_ERROR"
    return "_".join(name.split("_")[:2])
