"""Fuzz ddnsd's RFC 2136 UPDATE handler (`ddnsd._rfc2136.UpdateHandler.handle`) with TSIG.

The first byte picks how the rest is sent: even, as it came (parsing and TSIG checks on
hostile bytes); odd, re-signed with the device's real key when dnspython reads it as an
unsigned UPDATE, so that the zone, prerequisite and rights checks meet fuzzed sections. The
registry and store are stand-ins: the key of device nas1, and a store that builds the
RRsets it is given, as the real one does before it writes them.

Contract: `handle` never raises and never logs an exception (it would answer SERVFAIL for
a client's mistake); every reply is a well-formed response with the query's ID.
"""

from __future__ import annotations

from typing import cast

import dns.message
import dns.name
import dns.tsig
import dns.tsigkeyring
import dns.update

from ddnsd._rfc2136 import UpdateHandler
from ddnsd._store import UpdateResult, ZoneStore
from ddnsd._zone import RECORD_TYPES, Change, RRset
from registry import Registry, TsigKey

from ._dns import ZONES, check_reply
from ._quiet import captured, unexpected

KEY_NAME = "nas1-key"
SECRET = bytes(range(32))
KEYRING = {dns.name.from_text(KEY_NAME): dns.tsig.Key(KEY_NAME, SECRET, dns.tsig.HMAC_SHA256)}


class _Registry:
    async def find_tsig_key(self, key_name: str) -> TsigKey | None:
        if key_name.lower() == KEY_NAME:
            return TsigKey(KEY_NAME, "nas1", "hmac-sha256", SECRET)
        return None


class _Store:
    zones = ZONES  # read, never changed: each input sees the same zones

    async def update(self, device: str, changes: list[Change]) -> UpdateResult:
        for change in changes:
            RRset.build(RECORD_TYPES[change.rrtype], change.ttl, change.values)
        return UpdateResult(True, 2)


def _signed(data: bytes) -> bytes:
    """`data` signed with the device's key, if dnspython reads it as an unsigned UPDATE."""
    try:
        message = dns.message.from_wire(data, keyring=False)
        if not isinstance(message, dns.update.UpdateMessage) or message.had_tsig:
            return data
        message.use_tsig(KEYRING, KEY_NAME)
        wire: bytes = message.to_wire()
    except Exception:  # what dnspython cannot read or write again goes as it came
        return data
    return wire


def one_input(data: bytes) -> None:
    if not data:
        return
    message = _signed(data[1:]) if data[0] & 1 else data[1:]
    handler = UpdateHandler(cast(Registry, _Registry()), cast(ZoneStore, _Store()))
    with captured("ddnsd.update") as records:
        coroutine = handler.handle(message, "192.0.2.1", False)
        try:
            coroutine.send(None)  # the stand-ins never block: the first step finishes it
        except StopIteration as done:
            replies: list[bytes] = done.value
        else:
            coroutine.close()
            raise AssertionError("handle() blocked on a stand-in")
    assert not unexpected(records), unexpected(records)
    assert isinstance(replies, list) and len(replies) <= 1, replies
    for reply in replies:
        check_reply(message, reply)


def main() -> None:
    from ._atheris import fuzz

    fuzz(one_input)


if __name__ == "__main__":
    main()
