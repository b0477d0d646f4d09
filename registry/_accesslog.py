"""The access log: connection records with full client addresses, encrypted at rest.

Each record is AES-256-GCM-encrypted with the key of its month, from a key file only the
operator's tools read; the device name, month and start time are authenticated with it, so a
record that was altered or moved does not decrypt. Keys of months wholly past the retention
period are destroyed, which makes any copy of those records unreadable (privacy rule 3); a
destroyed month's key is never made again, whatever the clock says later. An anonymised copy
for statistics keeps masked addresses only.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "AccessLogKeys",
    "AccessRecord",
    "UnreadableRecord",
    "mask_address",
    "masked_network",
    "month_of",
]


class UnreadableRecord(Exception):
    """The record's key is gone (expired) or the record was tampered with."""


@dataclass(frozen=True, slots=True)
class AccessRecord:
    """Metadata of one browser connection (relayd) or one DNS update (ddnsd); never payload,
    paths, queries or headers."""

    started_at: float
    ended_at: float
    device: str
    client_address: str
    ingress: str  # "https" (passed through), "http" (redirected), "dyndns2", "rfc2136"
    bytes_in: int
    bytes_out: int
    result: str  # "ok", "refused", "redirected"; for updates the DynDNS2 word or the rcode


def month_of(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m")


def month_end(month: str) -> float:
    year, number = (int(part) for part in month.split("-"))
    following = datetime.datetime(year + number // 12, number % 12 + 1, 1, tzinfo=datetime.UTC)
    return following.timestamp()


def masked_network(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The privacy rule's prefix of an address: IPv4 (and IPv4-mapped IPv6) its /24, IPv6 its
    /48. The one place that rule lives; statistics and operational logs both use it."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    bits = 24 if ip.version == 4 else 48
    return ipaddress.ip_network(f"{ip}/{bits}", strict=False)


def mask_address(address: str) -> str:
    """An address as statistics and logs may keep it: its masked network, `a.b.c.0/24`."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "invalid"
    return str(masked_network(ip))


class AccessLogKeys:
    """One AES-256 key per month, in a JSON file of mode 0600, with the last month whose key
    was destroyed: a clock stepped back into it must not make that month's key again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: dict[str, bytes] = {}
        self.destroyed_through: str | None = None  # "YYYY-MM": this month and all before it
        if path.exists():
            data = json.loads(path.read_text())
            self._keys = {m: base64.b64decode(k) for m, k in data.get("keys", {}).items()}
            self.destroyed_through = data.get("destroyed_through")

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            keys = {m: base64.b64encode(k).decode() for m, k in sorted(self._keys.items())}
            state: dict[str, Any] = {"keys": keys}
            if self.destroyed_through is not None:
                state["destroyed_through"] = self.destroyed_through
            json.dump(state, out, indent=2)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)

    def destroyed(self, month: str) -> bool:
        """Whether `month`'s key was destroyed (or would have been, had it existed)."""
        return self.destroyed_through is not None and month <= self.destroyed_through

    def for_writing(self, month: str) -> bytes:
        key = self._keys.get(month)
        if key is None:
            if self.destroyed(month):
                raise UnreadableRecord(f"the key of {month} is destroyed: nothing is sealed now")
            key = self._keys[month] = AESGCM.generate_key(bit_length=256)
            self._save()
        return key

    def months(self) -> list[str]:
        return sorted(self._keys)

    def destroy_before(self, cutoff: float) -> list[str]:
        """Destroy the keys of months that ended before `cutoff`; returns those months."""
        gone = sorted(m for m in self._keys if month_end(m) <= cutoff)
        for month in gone:
            del self._keys[month]
        if gone:
            self.destroyed_through = max(gone[-1], self.destroyed_through or gone[-1])
            self._save()
        return gone

    @staticmethod
    def _aad(month: str, device: str, started_at: float) -> bytes:
        return json.dumps([month, device, started_at]).encode()

    def seal(self, record: AccessRecord) -> tuple[str, bytes, bytes]:
        """(month, nonce, ciphertext) of a record."""
        month = month_of(record.started_at)
        nonce = os.urandom(12)
        aad = self._aad(month, record.device, record.started_at)
        plain = json.dumps(asdict(record)).encode()
        return month, nonce, AESGCM(self.for_writing(month)).encrypt(nonce, plain, aad)

    def open(
        self, month: str, device: str, started_at: float, nonce: bytes, ciphertext: bytes
    ) -> AccessRecord:
        key = self._keys.get(month)
        if key is None:
            raise UnreadableRecord(f"the key of {month} is destroyed or unknown")
        try:
            plain = AESGCM(key).decrypt(nonce, ciphertext, self._aad(month, device, started_at))
        except InvalidTag:
            raise UnreadableRecord("the record does not authenticate: altered or moved") from None
        data: dict[str, Any] = json.loads(plain)
        return AccessRecord(**data)
