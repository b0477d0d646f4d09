"""The embedded backend: one SQLite file in WAL mode with secure_delete, migrated on open.

Blocking; used from one worker thread at a time through `Registry`. secure_delete makes
SQLite overwrite deleted rows, so erased data does not linger in the file (privacy rule 5).
A reserve file beside the database is given up when the disk fills, so that the write-ahead
log can still be checkpointed and truncated; errors that cannot heal are `RegistryGone`.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from ._backend import TOKEN_USE_RESOLUTION_S, SealedRow, StatsRow
from ._models import (
    AccessMode,
    Account,
    Conflict,
    Device,
    DnsRRset,
    InstallRegistration,
    NotFound,
    Passkey,
    RegistryFull,
    RegistryGone,
    SchemaTooNew,
    Token,
    TokenKind,
    TsigKey,
)
from ._reserve import Reserve
from ._schema import MIGRATIONS

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
#: What turning a device's feature off deletes with it (the device's name the parameter).
_FEATURE_DATA: Final = {
    "ddns": (
        "DELETE FROM dns_rrsets WHERE device_name = ? AND owner = device_name "
        "AND rrtype IN ('A', 'AAAA')",
        "DELETE FROM tokens WHERE device_name = ? AND kind = 'dyndns2'",
    ),
    "link": ("UPDATE devices SET last_seen_at = NULL WHERE name = ?",),
}

_GONE = {
    "SQLITE_CORRUPT": "the database file is corrupt",
    "SQLITE_NOTADB": "the file is not a SQLite database",
    "SQLITE_CANTOPEN": "the database file cannot be opened",
    "SQLITE_READONLY": "the database cannot be written (moved, deleted or read-only)",
    "SQLITE_IOERR": "the file system failed to read or write it",
    "SQLITE_PERM": "access to the database file is denied",
}


class SQLiteBackend:
    def __init__(
        self, path: Path | str, *, reserve_bytes: int = RESERVE_BYTES, create: bool = True
    ) -> None:
        """Open the registry at `path`; without `create` (the daemons), one that is not there
        is RegistryGone rather than a new, empty one (a restart after an unmount, or a path
        mistyped, must not serve a zone with no devices)."""
        self.path = path
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

    def _migrate(self) -> None:
        with self._transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            current = row[0] if row else 0
            if row is None:
                db.execute("INSERT INTO schema_version VALUES (0)")
            if current > len(MIGRATIONS):
                raise SchemaTooNew(
                    f"{self.path} has schema version {current}, newer than this software "
                    f"({len(MIGRATIONS)}); upgrade nascloud"
                )
            for version, statements in enumerate(MIGRATIONS[current:], start=current + 1):
                for statement in statements:
                    db.execute(statement)
                db.execute("UPDATE schema_version SET version = ?", (version,))

    def schema_version(self) -> int:
        return int(self._db.execute("SELECT version FROM schema_version").fetchone()[0])

    # -- accounts ----------------------------------------------------------------------------

    def insert_account(self, account: Account) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO accounts VALUES (?, ?, ?, ?)",
                (account.account_id, account.email, account.display_name, account.created_at),
            )

    def get_account(self, account_id: str) -> Account | None:
        row = self._db.execute(
            "SELECT * FROM accounts WHERE account_id = ?", (account_id,)
        ).fetchone()
        return Account(*row) if row else None

    def list_accounts(self) -> list[Account]:
        rows = self._db.execute("SELECT * FROM accounts ORDER BY created_at, account_id")
        return [Account(*row) for row in rows]

    def update_account(self, account_id: str, email: str, display_name: str) -> bool:
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE accounts SET email = ?, display_name = ? WHERE account_id = ?",
                (email, display_name, account_id),
            )
        self._erase_history()  # the values replaced are personal data too
        return cursor.rowcount == 1

    def insert_sign_in(self, account: Account, account_name: str, password_hash: str) -> None:
        try:
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO accounts VALUES (?, ?, ?, ?)",
                    (account.account_id, account.email, account.display_name, account.created_at),
                )
                db.execute(
                    "INSERT INTO sign_ins VALUES (?, ?, ?, ?)",
                    (account.account_id, account_name, password_hash, account.created_at),
                )
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc):
                raise Conflict(f"the account name {account_name!r} is taken") from None
            raise

    def find_sign_in(self, account_name: str) -> tuple[str, str] | None:
        row = self._db.execute(
            "SELECT account_id, password_hash FROM sign_ins WHERE account_name = ?",
            (account_name,),
        ).fetchone()
        return (row[0], row[1]) if row else None

    def account_name(self, account_id: str) -> str | None:
        row = self._db.execute(
            "SELECT account_name FROM sign_ins WHERE account_id = ?", (account_id,)
        ).fetchone()
        return row[0] if row else None

    def update_password_hash(self, account_id: str, password_hash: str, now: float) -> bool:
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE sign_ins SET password_hash = ?, changed_at = ? WHERE account_id = ?",
                (password_hash, now, account_id),
            )
        self._erase_history()
        return cursor.rowcount == 1

    def insert_session(
        self, session_hash: bytes, account_id: str, created_at: float, expires_at: float
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO portal_sessions VALUES (?, ?, ?, ?)",
                (session_hash, account_id, created_at, expires_at),
            )

    def find_session(self, session_hash: bytes, now: float) -> str | None:
        row = self._db.execute(
            "SELECT account_id FROM portal_sessions WHERE session_hash = ? AND expires_at > ?",
            (session_hash, now),
        ).fetchone()
        return row[0] if row else None

    def delete_session(self, session_hash: bytes) -> bool:
        with self._transaction() as db:
            cursor = db.execute(
                "DELETE FROM portal_sessions WHERE session_hash = ?", (session_hash,)
            )
        return cursor.rowcount == 1

    def delete_sessions_expired(self, now: float) -> int:
        with self._transaction() as db:
            cursor = db.execute("DELETE FROM portal_sessions WHERE expires_at <= ?", (now,))
            db.execute("DELETE FROM trusted_computers WHERE expires_at <= ?", (now,))
        return cursor.rowcount

    def delete_account(self, account_id: str) -> list[str]:
        with self._transaction() as db:
            names = [
                row[0]
                for row in db.execute(
                    "SELECT name FROM devices WHERE owner_id = ? ORDER BY name", (account_id,)
                )
            ]
            # Foreign keys cascade to devices, their access lists and every token.
            db.execute("DELETE FROM accounts WHERE account_id = ?", (account_id,))
        self._erase_history()
        return names

    # -- devices -------------------------------------------------------------------------------

    def insert_device(self, device: Device) -> None:
        try:
            with self._transaction() as db:
                self._insert_device(db, device)
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc) or "PRIMARY KEY" in str(exc):
                raise Conflict(f"the name {device.name!r} is taken") from None
            raise

    def _insert_device(self, db: sqlite3.Connection, device: Device) -> None:
        db.execute(
            "INSERT INTO devices VALUES (?, ?, ?, ?, ?, ?)",
            (
                device.name,
                device.owner_id,
                device.public_key,
                device.access_mode.value,
                device.created_at,
                device.last_seen_at,
            ),
        )
        self._write_access_list(db, device.name, device.access_list)

    @staticmethod
    def _write_access_list(db: sqlite3.Connection, name: str, accounts: tuple[str, ...]) -> None:
        db.execute("DELETE FROM device_access WHERE device_name = ?", (name,))
        db.executemany(
            "INSERT INTO device_access VALUES (?, ?)", [(name, account) for account in accounts]
        )

    def _device(self, row: Any) -> Device:
        name, owner_id, public_key, mode, created_at, last_seen_at = row
        access = tuple(
            r[0]
            for r in self._db.execute(
                "SELECT account_id FROM device_access WHERE device_name = ? ORDER BY account_id",
                (name,),
            )
        )
        return Device(
            name, owner_id, bytes(public_key), AccessMode(mode), access, created_at, last_seen_at
        )

    def get_device(self, name: str) -> Device | None:
        row = self._db.execute("SELECT * FROM devices WHERE name = ?", (name,)).fetchone()
        return self._device(row) if row else None

    def device_names(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT name FROM devices ORDER BY name")]

    def list_devices(self, owner_id: str | None) -> list[Device]:
        """Two queries however many devices: theirs, and their access lists."""
        if owner_id is None:
            rows = self._db.execute("SELECT * FROM devices ORDER BY name").fetchall()
            grants = self._db.execute(
                "SELECT device_name, account_id FROM device_access ORDER BY account_id"
            )
        else:
            rows = self._db.execute(
                "SELECT * FROM devices WHERE owner_id = ? ORDER BY name", (owner_id,)
            ).fetchall()
            grants = self._db.execute(
                "SELECT a.device_name, a.account_id FROM device_access a "
                "JOIN devices d ON d.name = a.device_name WHERE d.owner_id = ? "
                "ORDER BY a.account_id",
                (owner_id,),
            )
        access: dict[str, list[str]] = {}
        for device_name, account_id in grants:
            access.setdefault(device_name, []).append(account_id)
        return [
            Device(
                name,
                owner,
                bytes(public_key),
                AccessMode(mode),
                tuple(access.get(name, ())),
                created_at,
                last_seen_at,
            )
            for name, owner, public_key, mode, created_at, last_seen_at in rows
        ]

    def devices_granted_to(self, account_id: str) -> list[str]:
        rows = self._db.execute(
            "SELECT device_name FROM device_access WHERE account_id = ? ORDER BY device_name",
            (account_id,),
        )
        return [row[0] for row in rows]

    def set_access(self, name: str, mode: AccessMode, account_ids: tuple[str, ...]) -> bool:
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE devices SET access_mode = ? WHERE name = ?", (mode.value, name)
            )
            if cursor.rowcount != 1:
                return False
            self._write_access_list(db, name, account_ids)
            return True

    def touch_device(self, name: str, seen_at: float) -> bool:
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE devices SET last_seen_at = ? WHERE name = ?", (seen_at, name)
            )
            return cursor.rowcount == 1

    def delete_device(self, name: str) -> bool:
        with self._transaction() as db:
            deleted = db.execute("DELETE FROM devices WHERE name = ?", (name,)).rowcount == 1
        self._erase_history()
        return deleted

    def _erase_history(self) -> None:
        """secure_delete zeroes deleted rows in the pages it writes, but in WAL mode the old
        page images remain in the write-ahead log until a checkpoint truncates it. Another
        process reading the registry (relayd, ddnsd) may hold a snapshot that stops the
        truncation: then the erasure stays pending and is tried again after every later
        transaction of this process and by `finish_erasure`, never waited for here (the one
        registry thread would wait `busy_timeout` per delete)."""
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

    # -- tokens ----------------------------------------------------------------------------------

    def insert_token(self, token: Token, secret_hash: bytes) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO tokens (token_id, kind, secret_hash, account_id, device_name, "
                "created_at, name) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    token.token_id,
                    token.kind.value,
                    secret_hash,
                    token.account_id,
                    token.device_name,
                    token.created_at,
                    token.name,
                ),
            )

    _TOKEN_COLUMNS = "token_id, kind, account_id, device_name, created_at, name, last_used_at"

    @staticmethod
    def _token(row: Any) -> Token:
        token_id, kind, account_id, device_name, created_at, name, last_used_at = row
        return Token(
            token_id, TokenKind(kind), account_id, device_name, created_at, name, last_used_at
        )

    def find_token(self, kind: TokenKind, secret_hash: bytes, now: float) -> Token | None:
        """The token of this secret, its last use recorded if the one kept is a minute old."""
        row = self._db.execute(
            f"SELECT {self._TOKEN_COLUMNS} FROM tokens WHERE secret_hash = ? AND kind = ?",
            (secret_hash, kind.value),
        ).fetchone()
        if row is None:
            return None
        token = self._token(row)
        if token.last_used_at is None or now - token.last_used_at >= TOKEN_USE_RESOLUTION_S:
            with self._transaction() as db:
                db.execute(
                    "UPDATE tokens SET last_used_at = ? WHERE token_id = ?", (now, token.token_id)
                )
        return token

    def list_tokens(self, account_id: str | None, device_name: str | None) -> list[Token]:
        rows = self._db.execute(
            f"SELECT {self._TOKEN_COLUMNS} FROM tokens "
            "WHERE account_id IS ? AND device_name IS ? ORDER BY created_at, token_id",
            (account_id, device_name),
        )
        return [self._token(row) for row in rows]

    def delete_token(self, token_id: str) -> bool:
        with self._transaction() as db:
            return db.execute("DELETE FROM tokens WHERE token_id = ?", (token_id,)).rowcount == 1

    # -- install registrations ------------------------------------------------------------------

    def insert_install(self, registration: InstallRegistration, key_hash: bytes) -> None:
        try:
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO install_registrations (install_id, key_hash, public_key, "
                    "lan_addresses, setup_port, source_address, created_at, expires_at, "
                    "setup_scheme) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        registration.install_id,
                        key_hash,
                        registration.public_key,
                        json.dumps(list(registration.lan_addresses)),
                        registration.setup_port,
                        registration.source_address,
                        registration.created_at,
                        registration.expires_at,
                        registration.setup_scheme,
                    ),
                )
        except sqlite3.IntegrityError:
            raise Conflict("this cloud key or install key is registered already") from None

    def find_install(self, key_hash: bytes, now: float) -> InstallRegistration | None:
        row = self._db.execute(
            "SELECT install_id, public_key, lan_addresses, setup_port, source_address, "
            "created_at, expires_at, setup_scheme FROM install_registrations "
            "WHERE key_hash = ? AND expires_at > ?",
            (key_hash, now),
        ).fetchone()
        if row is None:
            return None
        install_id, public_key, lan, port, source, created_at, expires_at, scheme = row
        return InstallRegistration(
            install_id,
            bytes(public_key),
            tuple(json.loads(lan)),
            port,
            source,
            created_at,
            expires_at,
            scheme,
        )

    def delete_install(self, install_id: str) -> bool:
        with self._transaction() as db:
            cursor = db.execute(
                "DELETE FROM install_registrations WHERE install_id = ?", (install_id,)
            )
        self._erase_history()
        return cursor.rowcount == 1

    def delete_installs_expired(self, now: float) -> int:
        with self._transaction() as db:
            cursor = db.execute("DELETE FROM install_registrations WHERE expires_at <= ?", (now,))
        if cursor.rowcount:
            self._erase_history()
        return cursor.rowcount

    def delete_all_installs(self) -> int:
        with self._transaction() as db:
            cursor = db.execute("DELETE FROM install_registrations")
        if cursor.rowcount:
            self._erase_history()
        return cursor.rowcount

    def device_with_public_key(self, public_key: bytes) -> str | None:
        row = self._db.execute(
            "SELECT name FROM devices WHERE public_key = ?", (public_key,)
        ).fetchone()
        return str(row[0]) if row else None

    # -- features ------------------------------------------------------------------------------

    def set_feature_off(self, device_name: str, feature: str, off: bool, now: float) -> bool:
        with self._transaction() as db:
            if (
                db.execute("SELECT 1 FROM devices WHERE name = ?", (device_name,)).fetchone()
                is None
            ):
                return False
            if off:
                db.execute(
                    "INSERT INTO features_off VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    (device_name, feature, now),
                )
                for statement in _FEATURE_DATA[feature]:
                    db.execute(statement, (device_name,))
            else:
                db.execute(
                    "DELETE FROM features_off WHERE device_name = ? AND feature = ?",
                    (device_name, feature),
                )
        return True

    def feature_off(self, device_name: str, feature: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM features_off WHERE device_name = ? AND feature = ?",
            (device_name, feature),
        ).fetchone()
        return row is not None

    def tunnel_key(self, device_name: str) -> bytes | None:
        row = self._db.execute(
            "SELECT public_key FROM devices WHERE name = ? AND NOT EXISTS "
            "(SELECT 1 FROM features_off WHERE device_name = name AND feature = 'link')",
            (device_name,),
        ).fetchone()
        return bytes(row[0]) if row else None

    def devices_with_feature_off(self, feature: str) -> list[str]:
        rows = self._db.execute(
            "SELECT device_name FROM features_off WHERE feature = ? ORDER BY device_name",
            (feature,),
        )
        return [row[0] for row in rows]

    # -- two-step sign-in ----------------------------------------------------------------------

    def set_totp(
        self, account_id: str, secret: bytes, now: float, recovery_hashes: list[bytes]
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO totp_secrets VALUES (?, ?, 0, ?) ON CONFLICT (account_id) "
                "DO UPDATE SET secret = excluded.secret, last_step = 0, "
                "created_at = excluded.created_at",
                (account_id, secret, now),
            )
            db.execute("DELETE FROM recovery_codes WHERE account_id = ?", (account_id,))
            db.executemany(
                "INSERT INTO recovery_codes VALUES (?, ?)",
                [(code_hash, account_id) for code_hash in recovery_hashes],
            )
        self._erase_history()

    def totp_of(self, account_id: str) -> tuple[bytes, int] | None:
        row = self._db.execute(
            "SELECT secret, last_step FROM totp_secrets WHERE account_id = ?", (account_id,)
        ).fetchone()
        return (bytes(row[0]), int(row[1])) if row else None

    def advance_totp(self, account_id: str, step: int) -> bool:
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE totp_secrets SET last_step = ? WHERE account_id = ? AND last_step < ?",
                (step, account_id, step),
            )
        return cursor.rowcount == 1

    def take_recovery_code(self, account_id: str, code_hash: bytes) -> bool:
        with self._transaction() as db:
            cursor = db.execute(
                "DELETE FROM recovery_codes WHERE account_id = ? AND code_hash = ?",
                (account_id, code_hash),
            )
        return cursor.rowcount == 1

    def delete_totp(self, account_id: str) -> None:
        with self._transaction() as db:
            for table in ("totp_secrets", "recovery_codes", "trusted_computers"):
                db.execute(f"DELETE FROM {table} WHERE account_id = ?", (account_id,))
        self._erase_history()

    # -- passkeys --------------------------------------------------------------------------------

    def insert_passkey(self, passkey: Passkey) -> bool:
        with self._transaction() as db:
            inserted = db.execute(
                "INSERT INTO passkeys VALUES (?, ?, ?, ?, ?, ?, NULL) "
                "ON CONFLICT (credential_id) DO NOTHING",
                (
                    passkey.credential_id,
                    passkey.account_id,
                    passkey.public_key,
                    passkey.sign_count,
                    passkey.name,
                    passkey.created_at,
                ),
            ).rowcount
        return inserted == 1

    @staticmethod
    def _passkey(row: Any) -> Passkey:
        credential_id, account_id, public_key, sign_count, name, created_at, used = row
        return Passkey(
            bytes(credential_id), account_id, bytes(public_key), sign_count, name, created_at, used
        )

    def passkeys_of(self, account_id: str) -> list[Passkey]:
        rows = self._db.execute(
            "SELECT * FROM passkeys WHERE account_id = ? ORDER BY created_at", (account_id,)
        )
        return [self._passkey(row) for row in rows]

    def find_passkey(self, credential_id: bytes) -> Passkey | None:
        row = self._db.execute(
            "SELECT * FROM passkeys WHERE credential_id = ?", (credential_id,)
        ).fetchone()
        return self._passkey(row) if row else None

    def passkey_used(self, credential_id: bytes, sign_count: int, now: float) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE passkeys SET sign_count = ?, last_used_at = ? WHERE credential_id = ?",
                (sign_count, now, credential_id),
            )

    def delete_passkey(self, account_id: str, credential_id: bytes) -> bool:
        with self._transaction() as db:
            deleted = db.execute(
                "DELETE FROM passkeys WHERE account_id = ? AND credential_id = ?",
                (account_id, credential_id),
            ).rowcount
        self._erase_history()
        return deleted == 1

    def insert_trusted(self, token_hash: bytes, account_id: str, expires_at: float) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO trusted_computers VALUES (?, ?, ?)",
                (token_hash, account_id, expires_at),
            )

    def trusted(self, token_hash: bytes, account_id: str, now: float) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM trusted_computers WHERE token_hash = ? AND account_id = ? "
            "AND expires_at > ?",
            (token_hash, account_id, now),
        ).fetchone()
        return row is not None

    # -- pairing -------------------------------------------------------------------------------

    def insert_pairing(
        self, code_hash: bytes, public_key: bytes, created_at: float, expires_at: float
    ) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM pairings WHERE public_key = ?", (public_key,))
            db.execute(
                "INSERT INTO pairings VALUES (?, ?, ?, ?)",
                (code_hash, public_key, created_at, expires_at),
            )

    def complete_pairing(self, code_hash: bytes, now: float, device: Device) -> Device:
        try:
            with self._transaction() as db:
                row = db.execute(
                    "SELECT public_key FROM pairings WHERE code_hash = ? AND expires_at > ?",
                    (code_hash, now),
                ).fetchone()
                if row is None:
                    raise NotFound("no such pairing code, or it has expired")
                key = bytes(row[0])
                if db.execute("SELECT 1 FROM devices WHERE public_key = ?", (key,)).fetchone():
                    raise Conflict("this NAS is paired already")
                paired = dataclasses.replace(device, public_key=key)
                self._insert_device(db, paired)
                db.execute("DELETE FROM pairings WHERE public_key = ?", (key,))
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc) or "PRIMARY KEY" in str(exc):
                raise Conflict(f"the name {device.name!r} is taken") from None
            raise
        return paired

    def delete_pairings_expired(self, now: float) -> int:
        with self._transaction() as db:
            cursor = db.execute("DELETE FROM pairings WHERE expires_at <= ?", (now,))
        return cursor.rowcount

    # -- DNS data ------------------------------------------------------------------------------

    def load_dns(self) -> tuple[list[DnsRRset], dict[str, int]]:
        rrsets = [
            DnsRRset(owner, rrtype, device, ttl, tuple(json.loads(rdata)))
            for owner, rrtype, device, ttl, rdata in self._db.execute(
                "SELECT owner, rrtype, device_name, ttl, rdata FROM dns_rrsets ORDER BY owner"
            )
        ]
        serials = dict(self._db.execute("SELECT zone, serial FROM dns_serials").fetchall())
        return rrsets, serials

    def commit_dns(self, rrsets: list[DnsRRset], serials: dict[str, int]) -> None:
        with self._transaction() as db:
            for rrset in rrsets:
                if rrset.values:
                    # Never an address of a device with DDNS off: one ddnsd took before it
                    # saw the switch is not written back after the switch deleted them.
                    db.execute(
                        "INSERT INTO dns_rrsets SELECT ?, ?, name, ?, ? FROM devices "
                        "WHERE name = ? AND NOT (? IN ('A', 'AAAA') AND ? = name AND EXISTS "
                        "(SELECT 1 FROM features_off WHERE device_name = name "
                        "AND feature = 'ddns')) ON CONFLICT (owner, rrtype) DO UPDATE SET "
                        "ttl = excluded.ttl, rdata = excluded.rdata",
                        (
                            rrset.owner,
                            rrset.rrtype,
                            rrset.ttl,
                            json.dumps(list(rrset.values)),
                            rrset.device_name,
                            rrset.rrtype,
                            rrset.owner,
                        ),
                    )
                else:
                    db.execute(
                        "DELETE FROM dns_rrsets WHERE owner = ? AND rrtype = ?",
                        (rrset.owner, rrset.rrtype),
                    )
            db.executemany(
                "INSERT INTO dns_serials VALUES (?, ?) "
                "ON CONFLICT (zone) DO UPDATE SET serial = excluded.serial",
                list(serials.items()),
            )

    def insert_tsig_key(self, key: TsigKey) -> None:
        try:
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO tsig_keys VALUES (?, ?, ?, ?)",
                    (key.key_name, key.device_name, key.algorithm, key.secret),
                )
        except sqlite3.IntegrityError:
            raise Conflict(f"the key name {key.key_name!r} is taken") from None

    def find_tsig_key(self, key_name: str) -> TsigKey | None:
        row = self._db.execute(
            "SELECT key_name, device_name, algorithm, secret FROM tsig_keys WHERE key_name = ?",
            (key_name,),
        ).fetchone()
        return TsigKey(row[0], row[1], row[2], bytes(row[3])) if row else None

    def delete_tsig_key(self, device_name: str, key_name: str) -> bool:
        with self._transaction() as db:
            return (
                db.execute(
                    "DELETE FROM tsig_keys WHERE key_name = ? AND device_name = ?",
                    (key_name, device_name),
                ).rowcount
                == 1
            )

    def list_tsig_keys(self, device_name: str) -> list[TsigKey]:
        rows = self._db.execute(
            "SELECT key_name, device_name, algorithm, secret FROM tsig_keys "
            "WHERE device_name = ? ORDER BY key_name",
            (device_name,),
        )
        return [TsigKey(r[0], r[1], r[2], bytes(r[3])) for r in rows]

    def list_rrsets(self, device_name: str) -> list[DnsRRset]:
        rows = self._db.execute(
            "SELECT owner, rrtype, device_name, ttl, rdata FROM dns_rrsets "
            "WHERE device_name = ? ORDER BY owner, rrtype",
            (device_name,),
        )
        return [DnsRRset(o, t, d, ttl, tuple(json.loads(r))) for o, t, d, ttl, r in rows]

    def list_rrsets_of_owner(self, owner_id: str) -> list[DnsRRset]:
        rows = self._db.execute(
            "SELECT r.owner, r.rrtype, r.device_name, r.ttl, r.rdata FROM dns_rrsets r "
            "JOIN devices d ON d.name = r.device_name WHERE d.owner_id = ? "
            "ORDER BY r.owner, r.rrtype",
            (owner_id,),
        )
        return [DnsRRset(o, t, d, ttl, tuple(json.loads(r))) for o, t, d, ttl, r in rows]

    # -- the access log --------------------------------------------------------------------------

    def insert_access(self, sealed: list[SealedRow], stats: list[StatsRow]) -> None:
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO access_log (month, started_at, ended_at, device_name, nonce, "
                "ciphertext) VALUES (?, ?, ?, ?, ?, ?)",
                sealed,
            )
            db.executemany("INSERT INTO access_stats VALUES (?, ?, ?, ?, ?, ?)", stats)

    def read_access(self, devices: list[str] | None) -> list[SealedRow]:
        query = "SELECT month, started_at, ended_at, device_name, nonce, ciphertext FROM access_log"
        if devices is None:
            rows = self._db.execute(query + " ORDER BY started_at").fetchall()
        else:
            marks = ",".join("?" * len(devices))
            rows = self._db.execute(
                f"{query} WHERE device_name IN ({marks}) ORDER BY started_at", devices
            ).fetchall()
        return [(m, s, e, d, bytes(n), bytes(c)) for m, s, e, d, n, c in rows]

    def delete_access_before(self, cutoff: float) -> int:
        with self._transaction() as db:
            count = db.execute("DELETE FROM access_log WHERE ended_at < ?", (cutoff,)).rowcount
            db.execute("DELETE FROM access_stats WHERE started_at < ?", (cutoff,))
        if count:
            self._erase_history()
        return int(count)


def _code(error: sqlite3.Error) -> str:
    """An error's primary result code: SQLITE_READONLY for SQLITE_READONLY_DBMOVED."""
    name = getattr(error, "sqlite_errorname", None) or "SQLITE_ERROR"
    return "_".join(name.split("_")[:2])
