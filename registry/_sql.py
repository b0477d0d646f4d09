"""The registry's queries, written once for every SQL engine: SQLite (embedded) and
PostgreSQL (a fleet) differ only in how they connect, run a transaction, name a uniqueness
error and make erased rows leave their files, which each subclass supplies.

Statements use `?` placeholders and SQL that both engines take (`ON CONFLICT`, `IS NOT
DISTINCT FROM`, `excluded.`); the PostgreSQL backend rewrites the placeholders. Write
transactions are serial on both: SQLite has one writer, PostgreSQL a lock every writer takes
first, so that a check and the write it guards (a pairing code taken once, no address for a
device with DDNS off) see what every earlier transaction committed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Final, Protocol

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
    SchemaTooNew,
    Token,
    TokenKind,
    TsigKey,
)
from ._schema import MIGRATIONS

__all__ = ["Rows", "SQLBackend", "Writer"]

#: What turning a device's feature off deletes with it (the device's name the parameter),
#: and the tables whose files it is erased from.
_FEATURE_DATA: Final = {
    "ddns": (
        ("dns_rrsets", "tokens"),
        (
            "DELETE FROM dns_rrsets WHERE device_name = ? AND owner = device_name "
            "AND rrtype IN ('A', 'AAAA')",
            "DELETE FROM tokens WHERE device_name = ? AND kind = 'dyndns2'",
        ),
    ),
    "link": (("devices",), ("UPDATE devices SET last_seen_at = NULL WHERE name = ?",)),
}


class Rows(Protocol):
    """A statement's result: rows to iterate, or to take one or all of."""

    @property
    def rowcount(self) -> int: ...
    def __iter__(self) -> Iterator[Any]: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Writer(Protocol):
    """Statements inside one write transaction."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Rows: ...
    def executemany(self, sql: str, seq: Iterable[Sequence[Any]], /) -> Any: ...


class SQLBackend:
    """The `Backend` queries over an engine's `_read`, `_transaction` and `_erased`."""

    #: The engine's error for a broken constraint; `is_unique_violation` tells which.
    integrity_error: type[Exception] = Exception
    #: Where the registry is, as errors name it (a path, or a connection string without
    #: its password).
    where: str = ""

    # -- what each engine supplies -----------------------------------------------------------

    def _read(self, sql: str, parameters: Sequence[Any] = ()) -> Rows:
        raise NotImplementedError

    def _transaction(self) -> AbstractContextManager[Writer]:
        raise NotImplementedError

    def _erased(self, *tables: str) -> None:
        """Rows of these tables were deleted or overwritten: make them leave every file."""
        raise NotImplementedError

    def is_unique_violation(self, error: Exception) -> bool:
        raise NotImplementedError

    def _changed(self, db: Writer, what: str) -> None:
        """Tell the other processes, at commit, that `what` changed ("devices": a device, its
        access list or its features); nothing where they cannot be told (SQLite: they poll)."""

    def _copied(self, db: Writer) -> None:
        """Rows were copied in with their ids (`copy_registry`): catch up what makes new ids."""

    def _migration_statement(self, statement: str) -> str:
        """A statement of `MIGRATIONS` as this engine writes it."""
        return statement

    # -- the schema ------------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self._transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            current = row[0] if row else 0
            if row is None:
                db.execute("INSERT INTO schema_version VALUES (0)")
            if current > len(MIGRATIONS):
                raise SchemaTooNew(
                    f"{self.where} has schema version {current}, newer than this software "
                    f"({len(MIGRATIONS)}); upgrade nascloud"
                )
            for version, statements in enumerate(MIGRATIONS[current:], start=current + 1):
                for statement in statements:
                    db.execute(self._migration_statement(statement))
                db.execute("UPDATE schema_version SET version = ?", (version,))

    def schema_version(self) -> int:
        return int(self._read("SELECT version FROM schema_version").fetchone()[0])

    # -- accounts ----------------------------------------------------------------------------

    def insert_account(self, account: Account) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO accounts VALUES (?, ?, ?, ?)",
                (account.account_id, account.email, account.display_name, account.created_at),
            )

    def get_account(self, account_id: str) -> Account | None:
        row = self._read("SELECT * FROM accounts WHERE account_id = ?", (account_id,)).fetchone()
        return Account(*row) if row else None

    def list_accounts(self) -> list[Account]:
        rows = self._read("SELECT * FROM accounts ORDER BY created_at, account_id")
        return [Account(*row) for row in rows]

    def update_account(self, account_id: str, email: str, display_name: str) -> bool:
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE accounts SET email = ?, display_name = ? WHERE account_id = ?",
                (email, display_name, account_id),
            )
        self._erased("accounts")  # the values replaced are personal data too
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
        except self.integrity_error as exc:
            if self.is_unique_violation(exc):
                raise Conflict(f"the account name {account_name!r} is taken") from None
            raise

    def find_sign_in(self, account_name: str) -> tuple[str, str] | None:
        row = self._read(
            "SELECT account_id, password_hash FROM sign_ins WHERE account_name = ?",
            (account_name,),
        ).fetchone()
        return (row[0], row[1]) if row else None

    def account_name(self, account_id: str) -> str | None:
        row = self._read(
            "SELECT account_name FROM sign_ins WHERE account_id = ?", (account_id,)
        ).fetchone()
        return row[0] if row else None

    def update_password_hash(self, account_id: str, password_hash: str, now: float) -> bool:
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE sign_ins SET password_hash = ?, changed_at = ? WHERE account_id = ?",
                (password_hash, now, account_id),
            )
        self._erased("sign_ins")
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
        row = self._read(
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
            self._changed(db, "devices")
        self._erased("accounts")
        return names

    # -- devices -------------------------------------------------------------------------------

    def insert_device(self, device: Device) -> None:
        try:
            with self._transaction() as db:
                self._insert_device(db, device)
        except self.integrity_error as exc:
            if self.is_unique_violation(exc):
                raise Conflict(f"the name {device.name!r} is taken") from None
            raise

    def _insert_device(self, db: Writer, device: Device) -> None:
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
        self._changed(db, "devices")

    @staticmethod
    def _write_access_list(db: Writer, name: str, accounts: tuple[str, ...]) -> None:
        db.execute("DELETE FROM device_access WHERE device_name = ?", (name,))
        db.executemany(
            "INSERT INTO device_access VALUES (?, ?)", [(name, account) for account in accounts]
        )

    def _device(self, row: Any) -> Device:
        name, owner_id, public_key, mode, created_at, last_seen_at = row
        access = tuple(
            r[0]
            for r in self._read(
                "SELECT account_id FROM device_access WHERE device_name = ? ORDER BY account_id",
                (name,),
            )
        )
        return Device(
            name, owner_id, bytes(public_key), AccessMode(mode), access, created_at, last_seen_at
        )

    def get_device(self, name: str) -> Device | None:
        row = self._read("SELECT * FROM devices WHERE name = ?", (name,)).fetchone()
        return self._device(row) if row else None

    def device_names(self) -> list[str]:
        return [row[0] for row in self._read("SELECT name FROM devices ORDER BY name")]

    def list_devices(self, owner_id: str | None) -> list[Device]:
        """Two queries however many devices: theirs, and their access lists."""
        if owner_id is None:
            rows = self._read("SELECT * FROM devices ORDER BY name").fetchall()
            grants = self._read(
                "SELECT device_name, account_id FROM device_access ORDER BY account_id"
            )
        else:
            rows = self._read(
                "SELECT * FROM devices WHERE owner_id = ? ORDER BY name", (owner_id,)
            ).fetchall()
            grants = self._read(
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
        rows = self._read(
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
            self._changed(db, "devices")
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
            self._changed(db, "devices")
        self._erased("devices")
        return deleted

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
        row = self._read(
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
        rows = self._read(
            f"SELECT {self._TOKEN_COLUMNS} FROM tokens "
            "WHERE account_id IS NOT DISTINCT FROM ? AND device_name IS NOT DISTINCT FROM ? "
            "ORDER BY created_at, token_id",
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
        except self.integrity_error:
            raise Conflict("this cloud key or install key is registered already") from None

    def find_install(self, key_hash: bytes, now: float) -> InstallRegistration | None:
        row = self._read(
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
        self._erased("install_registrations")
        return cursor.rowcount == 1

    def delete_installs_expired(self, now: float) -> int:
        with self._transaction() as db:
            cursor = db.execute("DELETE FROM install_registrations WHERE expires_at <= ?", (now,))
        if cursor.rowcount:
            self._erased("install_registrations")
        return cursor.rowcount

    def delete_all_installs(self) -> int:
        with self._transaction() as db:
            cursor = db.execute("DELETE FROM install_registrations")
        if cursor.rowcount:
            self._erased("install_registrations")
        return cursor.rowcount

    def device_with_public_key(self, public_key: bytes) -> str | None:
        row = self._read("SELECT name FROM devices WHERE public_key = ?", (public_key,)).fetchone()
        return str(row[0]) if row else None

    # -- features ------------------------------------------------------------------------------

    def set_feature_off(self, device_name: str, feature: str, off: bool, now: float) -> bool:
        tables, statements = _FEATURE_DATA[feature]
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
                for statement in statements:
                    db.execute(statement, (device_name,))
            else:
                db.execute(
                    "DELETE FROM features_off WHERE device_name = ? AND feature = ?",
                    (device_name, feature),
                )
            self._changed(db, "devices")
        if off:
            self._erased(*tables)  # the feature's data is gone from every file too
        return True

    def feature_off(self, device_name: str, feature: str) -> bool:
        row = self._read(
            "SELECT 1 FROM features_off WHERE device_name = ? AND feature = ?",
            (device_name, feature),
        ).fetchone()
        return row is not None

    def tunnel_key(self, device_name: str) -> bytes | None:
        row = self._read(
            "SELECT public_key FROM devices WHERE name = ? AND NOT EXISTS "
            "(SELECT 1 FROM features_off WHERE device_name = name AND feature = 'link')",
            (device_name,),
        ).fetchone()
        return bytes(row[0]) if row else None

    def devices_with_feature_off(self, feature: str) -> list[str]:
        rows = self._read(
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
        self._erased("totp_secrets", "recovery_codes")

    def totp_of(self, account_id: str) -> tuple[bytes, int] | None:
        row = self._read(
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
        self._erased("totp_secrets", "recovery_codes", "trusted_computers")

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
        rows = self._read(
            "SELECT * FROM passkeys WHERE account_id = ? ORDER BY created_at", (account_id,)
        )
        return [self._passkey(row) for row in rows]

    def find_passkey(self, credential_id: bytes) -> Passkey | None:
        row = self._read(
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
        self._erased("passkeys")
        return deleted == 1

    def insert_trusted(self, token_hash: bytes, account_id: str, expires_at: float) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO trusted_computers VALUES (?, ?, ?)",
                (token_hash, account_id, expires_at),
            )

    def trusted(self, token_hash: bytes, account_id: str, now: float) -> bool:
        row = self._read(
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
        except self.integrity_error as exc:
            if self.is_unique_violation(exc):
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
            for owner, rrtype, device, ttl, rdata in self._read(
                "SELECT owner, rrtype, device_name, ttl, rdata FROM dns_rrsets ORDER BY owner"
            )
        ]
        serials = dict(self._read("SELECT zone, serial FROM dns_serials").fetchall())
        return rrsets, serials

    def commit_dns(self, rrsets: list[DnsRRset], serials: dict[str, int]) -> None:
        """Each of the three kinds of statement once over all its rows (`executemany`: on
        PostgreSQL one round trip for the lot, in a pipeline). The RRsets have one entry
        per (owner, type), so their order does not matter."""
        with self._transaction() as db:
            # Never an address of a device with DDNS off: one ddnsd took before it saw the
            # switch is not written back after the switch deleted them.
            db.executemany(
                "INSERT INTO dns_rrsets SELECT ?, ?, name, ?, ? FROM devices "
                "WHERE name = ? AND NOT (? IN ('A', 'AAAA') AND ? = name AND EXISTS "
                "(SELECT 1 FROM features_off WHERE device_name = name "
                "AND feature = 'ddns')) ON CONFLICT (owner, rrtype) DO UPDATE SET "
                "ttl = excluded.ttl, rdata = excluded.rdata",
                [
                    (
                        rrset.owner,
                        rrset.rrtype,
                        rrset.ttl,
                        json.dumps(list(rrset.values)),
                        rrset.device_name,
                        rrset.rrtype,
                        rrset.owner,
                    )
                    for rrset in rrsets
                    if rrset.values
                ],
            )
            db.executemany(
                "DELETE FROM dns_rrsets WHERE owner = ? AND rrtype = ?",
                [(rrset.owner, rrset.rrtype) for rrset in rrsets if not rrset.values],
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
        except self.integrity_error:
            raise Conflict(f"the key name {key.key_name!r} is taken") from None

    def find_tsig_key(self, key_name: str) -> TsigKey | None:
        row = self._read(
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
        rows = self._read(
            "SELECT key_name, device_name, algorithm, secret FROM tsig_keys "
            "WHERE device_name = ? ORDER BY key_name",
            (device_name,),
        )
        return [TsigKey(r[0], r[1], r[2], bytes(r[3])) for r in rows]

    def list_rrsets(self, device_name: str) -> list[DnsRRset]:
        rows = self._read(
            "SELECT owner, rrtype, device_name, ttl, rdata FROM dns_rrsets "
            "WHERE device_name = ? ORDER BY owner, rrtype",
            (device_name,),
        )
        return [DnsRRset(o, t, d, ttl, tuple(json.loads(r))) for o, t, d, ttl, r in rows]

    def list_rrsets_of_owner(self, owner_id: str) -> list[DnsRRset]:
        rows = self._read(
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
            rows = self._read(query + " ORDER BY started_at").fetchall()
        else:
            marks = ",".join("?" * len(devices))
            rows = self._read(
                f"{query} WHERE device_name IN ({marks}) ORDER BY started_at", devices
            ).fetchall()
        return [(m, s, e, d, bytes(n), bytes(c)) for m, s, e, d, n, c in rows]

    def delete_access_before(self, cutoff: float) -> int:
        with self._transaction() as db:
            count = db.execute("DELETE FROM access_log WHERE ended_at < ?", (cutoff,)).rowcount
            db.execute("DELETE FROM access_stats WHERE started_at < ?", (cutoff,))
        if count:
            self._erased("access_log", "access_stats")
        return int(count)
