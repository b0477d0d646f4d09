"""The registry's records and errors: what is stored, never how.

Records are frozen dataclasses; times are Unix seconds as floats. Knows no SQL and no Trio.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "AccessMode",
    "Account",
    "Conflict",
    "Device",
    "DnsRRset",
    "InstallRegistration",
    "InvalidValue",
    "NotFound",
    "RegistryError",
    "RegistryGone",
    "SchemaTooNew",
    "Token",
    "TokenKind",
    "TsigKey",
]


class RegistryError(Exception):
    """Root of the registry's errors."""


class NotFound(RegistryError):
    """No such account, device, token or install registration."""


class Conflict(RegistryError):
    """The name or key is already taken."""


class InvalidValue(RegistryError, ValueError):
    """A value the registry will not store; the message says why."""


def check_label(name: str) -> str:
    """An owner's name for something of theirs (a token, a passkey): 64 printable characters
    at most, spaces around it dropped; else InvalidValue."""
    name = name.strip()
    if len(name) > 64 or any(not c.isprintable() for c in name):
        raise InvalidValue("a name is 64 printable characters at most")
    return name


class RegistryFull(RegistryError):
    """The storage's disk is full: nothing of this write was stored. It heals by itself (the
    registry gives up its reserve to make room), so the next write may succeed."""


class SchemaTooNew(RegistryError, RuntimeError):
    """The database was migrated by newer software: this one cannot read it (migrations only go
    forward). Upgrade, or restore a backup taken before the upgrade."""


class RegistryGone(RegistryError):
    """The storage itself is gone and cannot come back by itself: its file deleted, replaced
    or unmounted, unreadable, corrupt or read-only. A daemon ends on it (systemd restarts it);
    a full disk or another process's lock are not this: they heal, and are raised as they are.
    """


class AccessMode(enum.Enum):
    """Who may look a device up and reach it through the relay (privacy rule 7)."""

    PUBLIC = "public"  # any authenticated account
    PRIVATE = "private"  # the owner only
    CUSTOM = "custom"  # the owner and the listed accounts


class TokenKind(enum.Enum):
    API = "api"  # an account's bearer token for the lookup API
    DYNDNS2 = "dyndns2"  # a device's password for /nic/update


@dataclass(frozen=True, slots=True)
class Account:
    account_id: str
    email: str
    display_name: str
    created_at: float


@dataclass(frozen=True, slots=True)
class Device:
    name: str
    owner_id: str
    public_key: bytes
    access_mode: AccessMode
    access_list: tuple[str, ...]
    created_at: float
    last_seen_at: float | None

    def may_be_used_by(self, account_id: str) -> bool:
        """Privacy rule 7: may this account look the device up and reach it?"""
        if account_id == self.owner_id or self.access_mode is AccessMode.PUBLIC:
            return True
        return self.access_mode is AccessMode.CUSTOM and account_id in self.access_list


@dataclass(frozen=True, slots=True)
class Token:
    token_id: str
    kind: TokenKind
    account_id: str | None
    device_name: str | None
    created_at: float
    name: str = ""  # the owner's, to tell tokens apart
    last_used_at: float | None = None  # to the minute


@dataclass(frozen=True, slots=True)
class Passkey:
    """A WebAuthn credential an account signs in with."""

    credential_id: bytes
    account_id: str
    public_key: bytes  # COSE_Key, as the authenticator gave it
    sign_count: int
    name: str
    created_at: float
    last_used_at: float | None = None


@dataclass(frozen=True, slots=True)
class InstallRegistration:
    install_id: str
    public_key: bytes
    lan_addresses: tuple[str, ...]
    setup_port: int
    source_address: str
    created_at: float
    expires_at: float
    setup_scheme: str = "https"

    @property
    def lan_urls(self) -> tuple[str, ...]:
        """The setup URLs on the NAS's own network, built from what the NAS registered only."""
        urls = []
        for address in self.lan_addresses:
            host = f"[{address}]" if ":" in address else address
            default = 443 if self.setup_scheme == "https" else 80
            port = "" if self.setup_port == default else f":{self.setup_port}"
            urls.append(f"{self.setup_scheme}://{host}{port}/")
        return tuple(urls)


@dataclass(frozen=True, slots=True)
class DnsRRset:
    """One RRset of a device's names, as ddnsd stores it; no values means deleted."""

    owner: str  # relative to the device zone: "<device>" or "_acme-challenge.<device>"
    rrtype: str
    device_name: str
    ttl: int
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TsigKey:
    """A device's key for RFC 2136 updates. The secret must be kept: HMAC needs it."""

    key_name: str
    device_name: str
    algorithm: str
    secret: bytes
