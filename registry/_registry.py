"""The registry as the daemons use it: async, validating, generating ids and secrets.

Blocking backend calls run in a worker thread, one at a time (`_core.py`); the records that
sign an owner in besides the password are in `_signins.py`. Secrets are returned once and
stored only as hashes.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from protocol import PAIRING_CODE_ALPHABET, validate_label

from ._accesslog import AccessLogKeys, AccessRecord, UnreadableRecord, mask_address
from ._copy import copy_registry
from ._export import export_account
from ._models import (
    AccessMode,
    Account,
    Conflict,
    Device,
    DnsRRset,
    InstallRegistration,
    InvalidValue,
    NotFound,
    Token,
    TokenKind,
    TsigKey,
    check_label,
)
from ._postgres import PostgresBackend, is_postgres_url
from ._signins import SignInRecords
from ._sql import SQLBackend
from ._sqlite import SQLiteBackend

__all__ = [
    "RESERVED_DEVICE_NAMES",
    "Registry",
    "hash_secret",
    "normalize_cloud_key",
    "steady_clock",
]


#: 256 bits of randomness per token: far beyond the 128 the design asks for.
TOKEN_BYTES = 32
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,253}\.[^@\s.]{1,63}")


def steady_clock(
    wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic
) -> Callable[[], float]:
    """Wall-clock seconds as read now, carried on by the monotonic clock: what a process
    dates lifetimes with (24-hour installs, 180-day retention), so that a step of the wall
    clock while it runs neither lengthens nor shortens one. A restart reads the wall again."""
    wall_at_start, monotonic_at_start = wall(), monotonic()
    return lambda: wall_at_start + (monotonic() - monotonic_at_start)


def hash_secret(secret: str) -> bytes:
    """Tokens are random, so one fast hash suffices: no dictionary to defend against."""
    return hashlib.sha256(secret.encode()).digest()


def normalize_cloud_key(cloud_key: str) -> str:
    """Cloud keys are typed by people: ignore case, spaces and dashes."""
    key = re.sub(r"[\s-]", "", cloud_key).upper()
    if not re.fullmatch(r"[A-Z0-9]{8,64}", key):
        raise InvalidValue("a cloud key is 8 to 64 letters and digits (dashes are ignored)")
    return key


def _check_email(email: str) -> str:
    if not isinstance(email, str) or len(email) > 254 or not _EMAIL.fullmatch(email):
        raise InvalidValue(f"{email!r} is not an e-mail address")
    return email


def _check_display_name(name: str) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= 100:
        raise InvalidValue("a display name is 1 to 100 characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidValue("a display name may not contain control characters")
    return name


#: An owner's sign-in name: what they type, shown to others they share a device with.
_ACCOUNT_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{2,31}")


def _check_account_name(name: str) -> str:
    if not isinstance(name, str) or not _ACCOUNT_NAME.fullmatch(name):
        raise InvalidValue(
            "an account name is 3 to 32 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or a digit"
        )
    return name


def normalize_pairing_code(code: str) -> str:
    """What an owner typed, as issued: upper case, no spaces, the dash where it goes, and
    the letters Crockford's base32 reads as digits (O, I, L) read so."""
    cleaned = "".join(c for c in code.upper() if c.isalnum())
    cleaned = cleaned.translate(str.maketrans("OIL", "011"))
    return cleaned[:4] + "-" + cleaned[4:] if len(cleaned) == 8 else cleaned


def _pairing_hash(code: str) -> bytes:
    return hashlib.sha256(normalize_pairing_code(code).encode()).digest()


#: What a device's owner may turn off (the schema's features_off holds the list too): "link",
#: reaching it through the relay, and "ddns", its published addresses.
FEATURES: Final = ("link", "ddns")


# Names the relay serves itself under the link zone: no device may take them.
RESERVED_DEVICE_NAMES: Final = frozenset({"install"})


def _check_device_name(name: str) -> str:
    try:
        validate_label(name, "device name")
    except ValueError as exc:
        raise InvalidValue(str(exc)) from None
    if name in RESERVED_DEVICE_NAMES:
        raise InvalidValue(f"{name!r} is reserved for the relay's own site")
    return name


def _check_public_key(key: bytes) -> bytes:
    if not isinstance(key, bytes) or len(key) != 32:
        raise InvalidValue("a public key is 32 bytes of raw Ed25519")
    return key


class Registry(SignInRecords):
    """Accounts, devices, access lists, tokens and install registrations."""

    @classmethod
    def open_sqlite(
        cls, path: Path | str, *, clock: Callable[[], float] = time.time, create: bool = True
    ) -> Registry:
        """Open (migrating if needed) a SQLite registry; blocking, for start-up. The daemons
        pass `create=False`: a registry that is not there is RegistryGone, not a new one."""
        return cls(SQLiteBackend(path, create=create), clock=clock)

    @classmethod
    def open(
        cls, location: Path | str, *, clock: Callable[[], float] = time.time, create: bool = True
    ) -> Registry:
        """Open the registry at `location`: a `postgresql://` URI (a fleet) or a SQLite file."""
        if is_postgres_url(location):
            return cls(PostgresBackend(str(location), create=create), clock=clock)
        return cls.open_sqlite(location, clock=clock, create=create)

    async def copy_to(self, target: Registry) -> dict[str, int]:
        """Copy every row into `target`, an empty registry (on another engine, say); return
        the rows per table. Nothing else should write either while it runs."""
        source, into = self.backend, target.backend
        if not isinstance(source, SQLBackend) or not isinstance(into, SQLBackend):
            raise InvalidValue("only SQL registries can be copied")
        return await self._run(copy_registry, source, into)

    # -- accounts ----------------------------------------------------------------------------

    async def create_account(self, email: str, display_name: str) -> Account:
        account = Account(
            "acc_" + secrets.token_hex(8),
            _check_email(email),
            _check_display_name(display_name),
            self._clock(),
        )
        await self._run(self.backend.insert_account, account)
        return account

    async def create_owner(
        self, account_name: str, password_hash: str, display_name: str, email: str | None = None
    ) -> Account:
        """An account that signs in to the portal by name and password (its hash: the
        registry never sees a password). No e-mail unless the owner gives one."""
        account = Account(
            "acc_" + secrets.token_hex(8),
            "" if email is None else _check_email(email),
            _check_display_name(display_name),
            self._clock(),
        )
        name = _check_account_name(account_name)
        await self._run(self.backend.insert_sign_in, account, name, password_hash)
        return account

    async def find_sign_in(self, account_name: str) -> tuple[str, str] | None:
        """(account id, password hash) of an account name, or None."""
        return await self._run(self.backend.find_sign_in, account_name)

    async def account_name(self, account_id: str) -> str | None:
        return await self._run(self.backend.account_name, account_id)

    async def update_password_hash(self, account_id: str, password_hash: str) -> bool:
        return await self._run(
            self.backend.update_password_hash, account_id, password_hash, self._clock()
        )

    async def create_session(self, session_hash: bytes, account_id: str, lifetime_s: float) -> None:
        now = self._clock()
        await self._run(
            self.backend.insert_session, session_hash, account_id, now, now + lifetime_s
        )

    async def session_account(self, session_hash: bytes) -> str | None:
        """The account a live session belongs to, or None (unknown, ended or expired)."""
        return await self._run(self.backend.find_session, session_hash, self._clock())

    async def end_session(self, session_hash: bytes) -> bool:
        return await self._run(self.backend.delete_session, session_hash)

    async def purge_expired_sessions(self) -> int:
        return await self._run(self.backend.delete_sessions_expired, self._clock())

    async def get_account(self, account_id: str) -> Account:
        account = await self._run(self.backend.get_account, account_id)
        if account is None:
            raise NotFound(f"no account {account_id!r}")
        return account

    async def list_accounts(self) -> list[Account]:
        return await self._run(self.backend.list_accounts)

    async def correct_account(
        self, account_id: str, *, email: str | None = None, display_name: str | None = None
    ) -> Account:
        """Rectify the profile fields we keep (an e-mail of "" removes it)."""
        current = await self.get_account(account_id)
        new_email = current.email
        if email is not None:  # an empty one removes it
            new_email = _check_email(email) if email else ""
        new_name = (
            _check_display_name(display_name) if display_name is not None else current.display_name
        )
        if not await self._run(self.backend.update_account, account_id, new_email, new_name):
            raise NotFound(f"no account {account_id!r}")
        return await self.get_account(account_id)

    async def export_account(
        self, account_id: str, keys: Sequence[AccessLogKeys] = ()
    ) -> dict[str, Any]:
        """Everything held about the account and its devices, JSON-ready (the right of
        access); with the access-log keys, its devices' connection records decrypted."""
        return await export_account(self, account_id, keys, self._clock())

    async def devices_granted_to(self, account_id: str) -> list[str]:
        """Devices of other owners whose custom access list holds this account."""
        return await self._run(self.backend.devices_granted_to, account_id)

    async def delete_account(self, account_id: str) -> list[str]:
        """Delete the account, its devices and everything hanging off them; returns the
        names of the deleted devices so callers can close tunnels and drop DNS records."""
        await self.get_account(account_id)
        return await self._run(self.backend.delete_account, account_id)

    # -- devices -------------------------------------------------------------------------------

    async def enrol_device(
        self,
        owner_id: str,
        name: str,
        public_key: bytes,
        access_mode: AccessMode = AccessMode.PRIVATE,
    ) -> Device:
        await self.get_account(owner_id)
        device = Device(
            _check_device_name(name),
            owner_id,
            _check_public_key(public_key),
            access_mode,
            (),
            self._clock(),
            None,
        )
        await self._run(self.backend.insert_device, device)
        return device

    # -- features a device's owner may turn off -------------------------------------------------

    async def set_feature(self, device_name: str, feature: str, on: bool) -> None:
        """Turn a feature of the device on or off. Off deletes that feature's data in the same
        transaction (the policy: turning a feature off deletes its data): for "ddns" the
        device's published addresses and its DynDNS2 passwords, for "link" when the relay last
        saw it. The daemons follow within their registry poll (two seconds)."""
        if feature not in FEATURES:
            raise InvalidValue(f"no feature {feature!r} (there are: {', '.join(FEATURES)})")
        if not await self._run(
            self.backend.set_feature_off, device_name, feature, not on, self._clock()
        ):
            raise NotFound(f"no device {device_name!r}")

    async def devices_with_feature_off(self, feature: str) -> list[str]:
        return await self._run(self.backend.devices_with_feature_off, feature)

    async def feature_off(self, device_name: str, feature: str) -> bool:
        """Whether the device's owner turned this feature off (one row looked up)."""
        return await self._run(self.backend.feature_off, device_name, feature)

    async def tunnel_key(self, device_name: str) -> bytes | None:
        """The public key a device's tunnel authenticates with; None if there is no such
        device or its owner turned Link off (one query: relayd asks at every tunnel)."""
        return await self._run(self.backend.tunnel_key, device_name)

    # -- pairing (a NAS's key enrolled by the owner who types its code) ------------------------

    async def create_pairing(self, public_key: bytes, lifetime_s: float) -> str:
        """A new code for this device key (its earlier ones end): `XXXX-XXXX`, 40 random
        bits, single use; the registry keeps only its hash."""
        code = "".join(secrets.choice(PAIRING_CODE_ALPHABET) for _ in range(8))
        code = code[:4] + "-" + code[4:]
        now = self._clock()
        await self._run(
            self.backend.insert_pairing,
            _pairing_hash(code),
            _check_public_key(public_key),
            now,
            now + lifetime_s,
        )
        return code

    async def complete_pairing(
        self, code: str, owner_id: str, name: str, access_mode: AccessMode = AccessMode.PRIVATE
    ) -> Device:
        """The NAS whose live code this is becomes the device `name` of the account.
        NotFound if no live code matches; Conflict if the name or the NAS is taken."""
        await self.get_account(owner_id)
        device = Device(
            _check_device_name(name), owner_id, bytes(32), access_mode, (), self._clock(), None
        )
        return await self._run(
            self.backend.complete_pairing, _pairing_hash(code), self._clock(), device
        )

    async def paired_device(self, public_key: bytes) -> str | None:
        """The device enrolled with this key, if any."""
        return await self._run(self.backend.device_with_public_key, public_key)

    async def purge_expired_pairings(self) -> int:
        return await self._run(self.backend.delete_pairings_expired, self._clock())

    async def get_device(self, name: str) -> Device | None:
        return await self._run(self.backend.get_device, name)

    async def device_names(self) -> list[str]:
        return await self._run(self.backend.device_names)

    async def list_devices(self, owner_id: str | None = None) -> list[Device]:
        return await self._run(self.backend.list_devices, owner_id)

    async def set_access(
        self, name: str, mode: AccessMode, account_ids: tuple[str, ...] = ()
    ) -> Device:
        if mode is not AccessMode.CUSTOM and account_ids:
            raise InvalidValue(f"an access list only applies to the {AccessMode.CUSTOM.value} mode")
        for account_id in account_ids:
            await self.get_account(account_id)
        if not await self._run(
            self.backend.set_access, name, mode, tuple(sorted(set(account_ids)))
        ):
            raise NotFound(f"no device {name!r}")
        device = await self.get_device(name)
        assert device is not None
        return device

    async def device_seen(self, name: str) -> None:
        await self._run(self.backend.touch_device, name, self._clock())

    async def delete_device(self, name: str) -> bool:
        """Unregister a device: its tokens and access list go with it (privacy rule 5)."""
        return await self._run(self.backend.delete_device, name)

    # -- tokens ----------------------------------------------------------------------------------

    async def create_token(
        self,
        kind: TokenKind,
        *,
        account_id: str | None = None,
        device_name: str | None = None,
        name: str = "",
    ) -> tuple[Token, str]:
        """A new token and its secret. The secret is not stored and cannot be shown again.
        `name` is the owner's, to tell tokens apart (64 characters at most)."""
        name = check_label(name)
        if kind is TokenKind.API:
            if account_id is None or device_name is not None:
                raise InvalidValue("an API token belongs to an account")
            await self.get_account(account_id)
        else:
            if device_name is None or account_id is not None:
                raise InvalidValue("a DynDNS2 token belongs to a device")
            if await self.get_device(device_name) is None:
                raise NotFound(f"no device {device_name!r}")
            if await self.feature_off(device_name, "ddns"):
                raise Conflict(f"DDNS is off for {device_name!r}: turn it on first")
        secret = secrets.token_urlsafe(TOKEN_BYTES)
        token = Token(
            "tok_" + secrets.token_hex(8), kind, account_id, device_name, self._clock(), name
        )
        await self._run(self.backend.insert_token, token, hash_secret(secret))
        return token, secret

    async def verify_token(self, kind: TokenKind, secret: str) -> Token | None:
        if not isinstance(secret, str) or not 16 <= len(secret) <= 256:
            return None
        return await self._run(self.backend.find_token, kind, hash_secret(secret), self._clock())

    async def list_tokens(
        self, *, account_id: str | None = None, device_name: str | None = None
    ) -> list[Token]:
        return await self._run(self.backend.list_tokens, account_id, device_name)

    async def revoke_token(self, token_id: str) -> bool:
        return await self._run(self.backend.delete_token, token_id)

    # -- install registrations ------------------------------------------------------------------

    async def register_install(
        self,
        cloud_key: str,
        public_key: bytes,
        lan_addresses: tuple[str, ...],
        setup_port: int,
        source_address: str,
        lifetime_s: float,
        setup_scheme: str = "https",
    ) -> InstallRegistration:
        """Record an uninitialised NAS for at most `lifetime_s` (privacy rule 4). Conflict if
        the cloud key or the install key is registered already, or the install key is an
        enrolled device's: a NAS that has an identity is not uninitialised."""
        key = normalize_cloud_key(cloud_key)
        if setup_scheme not in ("http", "https"):
            raise InvalidValue("the setup scheme is http or https")
        for address in (*lan_addresses, source_address):
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise InvalidValue(f"{address!r} is not an IP address") from None
        if not 1 <= setup_port <= 65535:
            raise InvalidValue(f"port {setup_port} is out of range")
        if not 0 < lifetime_s <= 86400:
            raise InvalidValue("an install registration lives at most 24 hours")
        now = self._clock()
        registration = InstallRegistration(
            secrets.token_hex(16),
            _check_public_key(public_key),
            tuple(lan_addresses),
            setup_port,
            source_address,
            now,
            now + lifetime_s,
            setup_scheme,
        )
        if await self._run(self.backend.device_with_public_key, public_key) is not None:
            raise Conflict("this key belongs to an enrolled device, not to a NAS being installed")
        await self._run(self.backend.insert_install, registration, hash_secret(key))
        return registration

    async def find_install(self, cloud_key: str) -> InstallRegistration | None:
        """The live registration for this key. The lookup goes by the key's hash, so its
        time does not depend on how close a wrong key was."""
        try:
            key = normalize_cloud_key(cloud_key)
        except InvalidValue:
            return None
        return await self._run(self.backend.find_install, hash_secret(key), self._clock())

    async def delete_install(self, install_id: str) -> bool:
        return await self._run(self.backend.delete_install, install_id)

    async def purge_expired_installs(self) -> int:
        return await self._run(self.backend.delete_installs_expired, self._clock())

    async def delete_all_installs(self) -> int:
        """Forget every install registration: a relay that starts holds no install tunnel,
        and a registration lives only as long as its tunnel."""
        return await self._run(self.backend.delete_all_installs)

    # -- DNS data (ddnsd) ------------------------------------------------------------------------

    async def load_dns(self) -> tuple[list[DnsRRset], dict[str, int]]:
        return await self._run(self.backend.load_dns)

    async def commit_dns(self, rrsets: list[DnsRRset], serials: dict[str, int]) -> None:
        await self._run(self.backend.commit_dns, rrsets, serials)

    async def create_tsig_key(
        self, device_name: str, key_name: str, algorithm: str = "hmac-sha256"
    ) -> TsigKey:
        """A new RFC 2136 key for a device, restricted by ddnsd to the device's own names."""
        if await self.get_device(device_name) is None:
            raise NotFound(f"no device {device_name!r}")
        if algorithm not in {"hmac-sha256", "hmac-sha512"}:
            raise InvalidValue("TSIG algorithm must be hmac-sha256 or hmac-sha512")
        name = key_name.lower().rstrip(".")
        if not name or len(name) > 253:
            raise InvalidValue("a TSIG key name is a DNS name of 1 to 253 characters")
        for label in name.split("."):
            _check_device_name(label)
        key = TsigKey(name, device_name, algorithm, secrets.token_bytes(32))
        await self._run(self.backend.insert_tsig_key, key)
        return key

    async def list_tsig_keys(self, device_name: str) -> list[TsigKey]:
        return await self._run(self.backend.list_tsig_keys, device_name)

    async def list_rrsets(self, device_name: str) -> list[DnsRRset]:
        return await self._run(self.backend.list_rrsets, device_name)

    async def list_rrsets_of_owner(self, owner_id: str) -> list[DnsRRset]:
        """Every RRset of every device the account owns, in one query."""
        return await self._run(self.backend.list_rrsets_of_owner, owner_id)

    async def revoke_tsig_key(self, device_name: str, key_name: str) -> bool:
        """Delete one of a device's RFC 2136 keys. False if the device has no key by that name
        (another device's key is never touched). A running ddnsd keeps the keys it has used
        in memory, so it refuses this one once restarted."""
        return await self._run(
            self.backend.delete_tsig_key, device_name, key_name.lower().rstrip(".")
        )

    async def find_tsig_key(self, key_name: str) -> TsigKey | None:
        return await self._run(self.backend.find_tsig_key, key_name.lower().rstrip("."))

    # -- the access log (privacy rule 3) -----------------------------------------------------------

    async def log_access(self, records: list[AccessRecord], keys: AccessLogKeys) -> None:
        """Store connection records encrypted, and their anonymised copy, in one commit."""
        sealed = []
        stats = []
        for record in records:
            month, nonce, ciphertext = keys.seal(record)
            sealed.append(
                (month, record.started_at, record.ended_at, record.device, nonce, ciphertext)
            )
            stats.append(
                (
                    record.started_at,
                    mask_address(record.client_address),
                    record.ingress,
                    record.bytes_in,
                    record.bytes_out,
                    record.result,
                )
            )
        await self._run(self.backend.insert_access, sealed, stats)

    async def read_access(
        self, keys: AccessLogKeys | Sequence[AccessLogKeys], devices: list[str] | None = None
    ) -> list[AccessRecord | UnreadableRecord]:
        """Decrypt the records (of these devices); each daemon seals with its own key file,
        so a record is tried with every key file given."""
        keyrings = [keys] if isinstance(keys, AccessLogKeys) else list(keys)
        rows = await self._run(self.backend.read_access, devices)
        out: list[AccessRecord | UnreadableRecord] = []
        for month, started_at, _, device, nonce, ciphertext in rows:
            result: AccessRecord | UnreadableRecord = UnreadableRecord("no key file given")
            for keyring in keyrings:
                try:
                    result = keyring.open(month, device, started_at, nonce, ciphertext)
                    break
                except UnreadableRecord as exc:
                    result = exc
            out.append(result)
        return out

    async def purge_access(
        self, keys: AccessLogKeys, retention_s: float, *, now: float | None = None
    ) -> tuple[int, list[str]]:
        """Delete records older than the retention period and destroy the keys of months
        wholly past it, as of `now` (the registry's clock if None). Returns (records
        deleted, months whose keys were destroyed)."""
        cutoff = (self._clock() if now is None else now) - retention_s
        deleted = await self._run(self.backend.delete_access_before, cutoff)
        return deleted, keys.destroy_before(cutoff)
