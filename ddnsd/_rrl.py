"""Response rate limiting per client prefix, as NSD and Knot do it.

Each prefix (a /24 or /56 by default) has a token bucket of `responses_per_second`; past it,
responses are dropped, except every `slip`-th one, which goes out truncated (TC, no records)
so that a real client behind a spoofed flood can still get its answer over TCP. Sans-IO: the
caller passes the time.
"""

from __future__ import annotations

import enum
import ipaddress
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from config.ddnsd import RrlSection

__all__ = ["RateLimiter", "Verdict", "truncated"]

MAX_TRACKED: Final = 100_000  # prefixes; idle ones are forgotten when this is reached


class Verdict(enum.Enum):
    SEND = "send"
    DROP = "drop"
    SLIP = "slip"


class RateLimiter:
    def __init__(
        self,
        responses_per_second: int = 200,
        slip: int = 2,
        ipv4_prefix: int = 24,
        ipv6_prefix: int = 56,
    ) -> None:
        self.rate = float(responses_per_second)
        self.slip = slip
        self.ipv4_prefix = ipv4_prefix
        self.ipv6_prefix = ipv6_prefix
        self._buckets: dict[str, list[float]] = {}  # prefix -> [tokens, last time, dropped]
        self.dropped = 0
        self.slipped = 0

    @classmethod
    def from_config(cls, rrl: RrlSection) -> RateLimiter:
        """The limiter `[rrl]` describes: at start, in every worker, and on reload."""
        return cls(rrl.responses_per_second, rrl.slip, rrl.ipv4_prefix, rrl.ipv6_prefix)

    def prefix(self, address: str) -> str:
        if self.ipv4_prefix == 24 and address.count(".") == 3 and ":" not in address:
            return address.rsplit(".", 1)[0]
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return address
        bits = self.ipv4_prefix if ip.version == 4 else self.ipv6_prefix
        return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False).network_address)

    def check(self, address: str, now: float) -> Verdict:
        if self.rate <= 0:
            return Verdict.SEND
        key = self.prefix(address)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED:
                self._forget_idle(now)
            self._buckets[key] = [self.rate - 1, now, 0]
            return Verdict.SEND
        tokens = min(self.rate, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1:
            bucket[0] = tokens - 1
            return Verdict.SEND
        bucket[0] = tokens
        bucket[2] += 1
        if self.slip and bucket[2] % self.slip == 0:
            self.slipped += 1
            return Verdict.SLIP
        self.dropped += 1
        return Verdict.DROP

    def _forget_idle(self, now: float) -> None:
        # Anyone idle for a second has a full bucket again: the entry carries nothing.
        idle = [k for k, b in self._buckets.items() if now - b[1] >= 1.0]
        for key in idle:
            del self._buckets[key]
        if len(self._buckets) >= MAX_TRACKED:
            self._buckets.clear()


def truncated(response: bytes) -> bytes:
    """The slip answer: the same header with TC set and no records (the question stays)."""
    if len(response) < 12:
        return response
    qdcount = int.from_bytes(response[4:6], "big")
    pos = 12
    for _ in range(qdcount):
        while pos < len(response) and response[pos] != 0:
            if response[pos] >= 0xC0:
                pos += 1
                break
            pos += response[pos] + 1
        pos += 5
    return (
        response[:2]
        + bytes([response[2] | 0x02, response[3]])
        + response[4:6]
        + b"\x00\x00\x00\x00\x00\x00"
        + response[12:pos]
    )
