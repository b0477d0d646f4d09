"""The registry's schema as an ordered list of migrations, shared by every backend.

Append, never edit: a deployed database has run the earlier steps. Portable SQL only
(INTEGER, REAL, TEXT, BLOB; the PostgreSQL backend maps INTEGER to BIGINT, REAL to DOUBLE
PRECISION, BLOB to BYTEA and AUTOINCREMENT to an identity column).
"""

from __future__ import annotations

from typing import Final

__all__ = ["MIGRATIONS", "TABLES"]

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    # 1: accounts, devices, access lists, tokens, install registrations.
    (
        """CREATE TABLE accounts (
            account_id TEXT PRIMARY KEY,
            email TEXT NOT NULL,
            display_name TEXT NOT NULL,
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE devices (
            name TEXT PRIMARY KEY,
            owner_id TEXT NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE,
            public_key BLOB NOT NULL,
            access_mode TEXT NOT NULL CHECK (access_mode IN ('public', 'private', 'custom')),
            created_at REAL NOT NULL,
            last_seen_at REAL
        )""",
        "CREATE INDEX devices_by_owner ON devices(owner_id)",
        """CREATE TABLE device_access (
            device_name TEXT NOT NULL REFERENCES devices(name) ON DELETE CASCADE,
            account_id TEXT NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE,
            PRIMARY KEY (device_name, account_id)
        )""",
        "CREATE INDEX device_access_by_account ON device_access(account_id)",
        """CREATE TABLE tokens (
            token_id TEXT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('api', 'dyndns2')),
            secret_hash BLOB NOT NULL UNIQUE,
            account_id TEXT REFERENCES accounts(account_id) ON DELETE CASCADE,
            device_name TEXT REFERENCES devices(name) ON DELETE CASCADE,
            created_at REAL NOT NULL,
            CHECK ((account_id IS NULL) <> (device_name IS NULL))
        )""",
        "CREATE INDEX tokens_by_account ON tokens(account_id)",
        "CREATE INDEX tokens_by_device ON tokens(device_name)",
        """CREATE TABLE install_registrations (
            install_id TEXT PRIMARY KEY,
            key_hash BLOB NOT NULL UNIQUE,
            public_key BLOB NOT NULL UNIQUE,
            lan_addresses TEXT NOT NULL,
            setup_port INTEGER NOT NULL,
            source_address TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL
        )""",
        "CREATE INDEX install_registrations_by_expiry ON install_registrations(expires_at)",
    ),
    # 2: DNS data owned by ddnsd: RRsets under device names, zone serials, TSIG keys.
    (
        """CREATE TABLE dns_rrsets (
            owner TEXT NOT NULL,
            rrtype TEXT NOT NULL CHECK (rrtype IN ('A', 'AAAA', 'TXT')),
            device_name TEXT NOT NULL REFERENCES devices(name) ON DELETE CASCADE,
            ttl INTEGER NOT NULL,
            rdata TEXT NOT NULL,
            PRIMARY KEY (owner, rrtype)
        )""",
        "CREATE INDEX dns_rrsets_by_device ON dns_rrsets(device_name)",
        """CREATE TABLE dns_serials (
            zone TEXT PRIMARY KEY,
            serial INTEGER NOT NULL
        )""",
        """CREATE TABLE tsig_keys (
            key_name TEXT PRIMARY KEY,
            device_name TEXT NOT NULL REFERENCES devices(name) ON DELETE CASCADE,
            algorithm TEXT NOT NULL,
            secret BLOB NOT NULL
        )""",
        "CREATE INDEX tsig_keys_by_device ON tsig_keys(device_name)",
    ),
    # 3: the access log (encrypted records) and its anonymised copy for statistics.
    (
        """CREATE TABLE access_log (
            record_id INTEGER PRIMARY KEY AUTOINCREMENT,
            month TEXT NOT NULL,
            started_at REAL NOT NULL,
            ended_at REAL NOT NULL,
            device_name TEXT NOT NULL,
            nonce BLOB NOT NULL,
            ciphertext BLOB NOT NULL
        )""",
        "CREATE INDEX access_log_by_end ON access_log(ended_at)",
        "CREATE INDEX access_log_by_device ON access_log(device_name)",
        """CREATE TABLE access_stats (
            started_at REAL NOT NULL,
            client_prefix TEXT NOT NULL,
            ingress TEXT NOT NULL,
            bytes_in INTEGER NOT NULL,
            bytes_out INTEGER NOT NULL,
            result TEXT NOT NULL
        )""",
        "CREATE INDEX access_stats_by_start ON access_stats(started_at)",
    ),
    # 4: the scheme of an install's LAN setup URL; devices found by public key (an install
    # tunnel must not present an enrolled device's key).
    (
        "ALTER TABLE install_registrations ADD COLUMN setup_scheme TEXT NOT NULL DEFAULT 'https' "
        "CHECK (setup_scheme IN ('http', 'https'))",
        "CREATE INDEX devices_by_public_key ON devices(public_key)",
    ),
    # 5: CAA RRsets (a device's ACME account record, RFC 8657). A CHECK constraint cannot be
    # altered in SQLite: the table is made again, rows copied.
    (
        """CREATE TABLE dns_rrsets_5 (
            owner TEXT NOT NULL,
            rrtype TEXT NOT NULL CHECK (rrtype IN ('A', 'AAAA', 'TXT', 'CAA')),
            device_name TEXT NOT NULL REFERENCES devices(name) ON DELETE CASCADE,
            ttl INTEGER NOT NULL,
            rdata TEXT NOT NULL,
            PRIMARY KEY (owner, rrtype)
        )""",
        "INSERT INTO dns_rrsets_5 (owner, rrtype, device_name, ttl, rdata) "
        "SELECT owner, rrtype, device_name, ttl, rdata FROM dns_rrsets",
        "DROP TABLE dns_rrsets",
        "ALTER TABLE dns_rrsets_5 RENAME TO dns_rrsets",
        "CREATE INDEX dns_rrsets_by_device ON dns_rrsets(device_name)",
    ),
    # 6: the owners' portal: an account's sign-in name and password hash (argon2id), and
    # its sessions, kept by a one-way hash of their cookie only.
    (
        """CREATE TABLE sign_ins (
            account_id TEXT PRIMARY KEY REFERENCES accounts(account_id) ON DELETE CASCADE,
            account_name TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            changed_at REAL NOT NULL
        )""",
        """CREATE TABLE portal_sessions (
            session_hash BLOB PRIMARY KEY,
            account_id TEXT NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL
        )""",
        "CREATE INDEX portal_sessions_by_account ON portal_sessions(account_id)",
        "CREATE INDEX portal_sessions_by_expiry ON portal_sessions(expires_at)",
    ),
    # 7: pairing codes (RFC 8628's shape): a NAS's device key waiting for an owner to take
    # its code; kept by the code's hash, for ten minutes at most.
    (
        """CREATE TABLE pairings (
            code_hash BLOB PRIMARY KEY,
            public_key BLOB NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL
        )""",
        "CREATE INDEX pairings_by_key ON pairings(public_key)",
        "CREATE INDEX pairings_by_expiry ON pairings(expires_at)",
    ),
    # 8: two-step sign-in: an account's TOTP secret (RFC 6238) and the last time step used
    # (a code works once), its one-time recovery codes by hash, and the computers it trusts
    # for 30 days by the hash of their cookie.
    (
        """CREATE TABLE totp_secrets (
            account_id TEXT PRIMARY KEY REFERENCES accounts(account_id) ON DELETE CASCADE,
            secret BLOB NOT NULL,
            last_step INTEGER NOT NULL,
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE recovery_codes (
            code_hash BLOB PRIMARY KEY,
            account_id TEXT NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE
        )""",
        "CREATE INDEX recovery_codes_by_account ON recovery_codes(account_id)",
        """CREATE TABLE trusted_computers (
            token_hash BLOB PRIMARY KEY,
            account_id TEXT NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE,
            expires_at REAL NOT NULL
        )""",
        "CREATE INDEX trusted_computers_by_account ON trusted_computers(account_id)",
    ),
    # 9: a device's features its owner turned off (today: "link", reaching it through the
    # relay); absent, a feature is on.
    (
        """CREATE TABLE features_off (
            device_name TEXT NOT NULL REFERENCES devices(name) ON DELETE CASCADE,
            feature TEXT NOT NULL CHECK (feature IN ('link')),
            off_since REAL NOT NULL,
            PRIMARY KEY (device_name, feature)
        )""",
    ),
    # 10: an owner's name for each token ("backup script") and when it was last used (kept
    # to the minute: a write per minute at most), so an owner can tell which to revoke.
    (
        "ALTER TABLE tokens ADD COLUMN name TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE tokens ADD COLUMN last_used_at REAL",
    ),
    # 11: DDNS joins Link as a feature its owner may turn off. A CHECK constraint cannot be
    # altered in SQLite: the table is made again, rows copied.
    (
        """CREATE TABLE features_off_11 (
            device_name TEXT NOT NULL REFERENCES devices(name) ON DELETE CASCADE,
            feature TEXT NOT NULL CHECK (feature IN ('link', 'ddns')),
            off_since REAL NOT NULL,
            PRIMARY KEY (device_name, feature)
        )""",
        "INSERT INTO features_off_11 SELECT device_name, feature, off_since FROM features_off",
        "DROP TABLE features_off",
        "ALTER TABLE features_off_11 RENAME TO features_off",
    ),
    # 12: passkeys (WebAuthn): an account's credentials by their id, each with its public
    # key (COSE), its signature counter, the owner's name for it and its last use.
    (
        """CREATE TABLE passkeys (
            credential_id BLOB PRIMARY KEY,
            account_id TEXT NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE,
            public_key BLOB NOT NULL,
            sign_count INTEGER NOT NULL,
            name TEXT NOT NULL,
            created_at REAL NOT NULL,
            last_used_at REAL
        )""",
        "CREATE INDEX passkeys_by_account ON passkeys(account_id)",
    ),
)

#: Every table of the schema, each after the tables it references: the order a copy from
#: one engine to another writes them in (`copy_registry`). A test checks it names them all.
TABLES: Final[tuple[str, ...]] = (
    "accounts",
    "sign_ins",
    "portal_sessions",
    "totp_secrets",
    "recovery_codes",
    "trusted_computers",
    "passkeys",
    "devices",
    "device_access",
    "features_off",
    "tokens",
    "install_registrations",
    "pairings",
    "dns_rrsets",
    "dns_serials",
    "tsig_keys",
    "access_log",
    "access_stats",
)
