"""The user's right of access: everything the registry holds about one account, as JSON.

The export names what it leaves out and why, so a reader can tell an omission from a gap:
token secrets exist only as hashes, TSIG secrets are credentials the owner already holds.
Access-log records are decrypted for the account's own devices only. Knows `Registry` only
as `AccountData`, the queries it reads through.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, Protocol

from ._accesslog import AccessLogKeys, AccessRecord, UnreadableRecord
from ._models import Account, Device, DnsRRset, Passkey, Token, TsigKey

__all__ = ["AccountData", "export_account", "iso_time"]

NOT_INCLUDED = [
    "token secrets: only a one-way hash of each is stored, the secret itself is not kept",
    "TSIG key secrets: credentials the device already holds; to rotate, create a new key and "
    "revoke the old one",
    "operational logs: they hold no account data (addresses masked, e-mails removed)",
    "the portal password: only its argon2id hash is stored; portal sessions, recovery codes "
    "and trusted computers: only a one-way hash of each, for at most its lifetime",
    "the two-step sign-in key: a credential the owner's app already holds",
]


class AccountData(Protocol):
    """The queries the export reads through: `Registry` has them, and the export needs no
    more of it (so it does not import the module that calls it)."""

    async def get_account(self, account_id: str) -> Account: ...

    async def list_devices(self, owner_id: str | None = None) -> list[Device]: ...

    async def list_tokens(
        self, *, account_id: str | None = None, device_name: str | None = None
    ) -> list[Token]: ...

    async def list_tsig_keys(self, device_name: str) -> list[TsigKey]: ...

    async def list_rrsets(self, device_name: str) -> list[DnsRRset]: ...

    async def read_access(
        self, keys: AccessLogKeys | Sequence[AccessLogKeys], devices: list[str] | None = None
    ) -> list[AccessRecord | UnreadableRecord]: ...

    async def devices_granted_to(self, account_id: str) -> list[str]: ...

    async def account_name(self, account_id: str) -> str | None: ...

    async def totp_of(self, account_id: str) -> tuple[bytes, int] | None: ...

    async def passkeys_of(self, account_id: str) -> list[Passkey]: ...


def iso_time(timestamp: float | None) -> str | None:
    """A registry time (Unix seconds) as ISO 8601 in UTC, as every output of it shows it:
    `2026-12-02T02:20:18.123456+00:00`; None stays None (never seen, say)."""
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat()


async def export_account(
    registry: AccountData, account_id: str, keys: Sequence[AccessLogKeys], now: float
) -> dict[str, Any]:
    account = await registry.get_account(account_id)
    devices_out = []
    for device in await registry.list_devices(account_id):
        tokens = await registry.list_tokens(device_name=device.name)
        tsig = await registry.list_tsig_keys(device.name)
        rrsets = await registry.list_rrsets(device.name)
        entry: dict[str, Any] = {
            "name": device.name,
            "public_key": base64.b64encode(device.public_key).decode(),
            "access_mode": device.access_mode.value,
            "access_list": list(device.access_list),
            "created_at": iso_time(device.created_at),
            "last_seen_at": iso_time(device.last_seen_at),
            "dyndns2_tokens": [_token(t) for t in tokens],
            "tsig_keys": [{"key_name": k.key_name, "algorithm": k.algorithm} for k in tsig],
            "dns_records": [
                {"owner": r.owner, "type": r.rrtype, "ttl": r.ttl, "values": list(r.values)}
                for r in rrsets
            ],
        }
        if keys:
            records = await registry.read_access(keys, [device.name])
            readable = [r for r in records if isinstance(r, AccessRecord)]
            entry["access_log"] = [
                {
                    **asdict(r),
                    "started_at": iso_time(r.started_at),
                    "ended_at": iso_time(r.ended_at),
                }
                for r in readable
            ]
            entry["access_log_unreadable"] = len(records) - len(readable)
        devices_out.append(entry)
    api_tokens = await registry.list_tokens(account_id=account_id)
    not_included = list(NOT_INCLUDED)
    if not keys:
        not_included.append("access log: exported without the access-log key file")
    return {
        "exported_at": iso_time(now),
        "account": {
            "account_id": account.account_id,
            "email": account.email,
            "display_name": account.display_name,
            "created_at": iso_time(account.created_at),
            "account_name": await registry.account_name(account_id),
            "two_step_sign_in": await registry.totp_of(account_id) is not None,
        },
        "passkeys": [
            {
                "credential_id": base64.urlsafe_b64encode(k.credential_id).decode().rstrip("="),
                "name": k.name,
                "created_at": iso_time(k.created_at),
                "last_used_at": iso_time(k.last_used_at),
            }
            for k in await registry.passkeys_of(account_id)
        ],
        "api_tokens": [_token(t) for t in api_tokens],
        "devices": devices_out,
        "granted_access_to": await registry.devices_granted_to(account_id),
        "not_included": not_included,
    }


def _token(token: Token) -> dict[str, Any]:
    return {
        "token_id": token.token_id,
        "name": token.name,
        "created_at": iso_time(token.created_at),
        "last_used_at": iso_time(token.last_used_at),
    }
