"""Persistent state: accounts, devices, access lists, tokens, install registrations.

`Registry` is the async API the daemons use; `Backend` is the storage interface, with SQLite
(WAL, secure_delete, migrations) as the embedded default and PostgreSQL for a fleet.
"""

from ._accesslog import (
    AccessLogKeys,
    AccessRecord,
    UnreadableRecord,
    mask_address,
    masked_network,
    month_of,
)
from ._accesswriter import AccessLogWriter
from ._backend import Backend
from ._copy import copy_registry
from ._export import iso_time
from ._models import (
    AccessMode,
    Account,
    Conflict,
    Device,
    DnsRRset,
    InstallRegistration,
    InvalidValue,
    NotFound,
    Passkey,
    RegistryError,
    RegistryFull,
    RegistryGone,
    SchemaTooNew,
    Token,
    TokenKind,
    TsigKey,
)
from ._postgres import PostgresBackend, is_postgres_url
from ._registry import (
    RESERVED_DEVICE_NAMES,
    Registry,
    hash_secret,
    normalize_cloud_key,
    normalize_pairing_code,
    steady_clock,
)
from ._schema import MIGRATIONS, TABLES
from ._sqlite import SQLiteBackend

__all__ = [
    "MIGRATIONS",
    "RESERVED_DEVICE_NAMES",
    "TABLES",
    "AccessLogKeys",
    "AccessLogWriter",
    "AccessMode",
    "AccessRecord",
    "Account",
    "Backend",
    "Conflict",
    "Device",
    "DnsRRset",
    "InstallRegistration",
    "InvalidValue",
    "NotFound",
    "Passkey",
    "PostgresBackend",
    "Registry",
    "RegistryError",
    "RegistryFull",
    "RegistryGone",
    "SQLiteBackend",
    "SchemaTooNew",
    "Token",
    "TokenKind",
    "TsigKey",
    "UnreadableRecord",
    "copy_registry",
    "hash_secret",
    "is_postgres_url",
    "iso_time",
    "mask_address",
    "masked_network",
    "month_of",
    "normalize_cloud_key",
    "normalize_pairing_code",
    "steady_clock",
]
