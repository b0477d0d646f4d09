"""RFC 2136 UPDATE under TSIG (RFC 8945) as the docs promise it: HMAC-SHA256 and HMAC-SHA512
keys accepted, a wrong secret or key refused with NOTAUTH and the TSIG error (BADSIG, BADKEY:
unsigned), and the time check under a clock step: 301 s away from the signer's clock (fudge
300) is BADTIME, signed, with our clock in Other Data; 300 s is still accepted.

The real UpdateHandler and ZoneStore; the registry is a stand-in. "The clock" is `time.time`,
which dnspython reads both when signing and when checking a request."""

from __future__ import annotations

import struct
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import cast

import dns.message
import dns.name
import dns.rcode
import dns.rdtypes.ANY.TSIG
import dns.tsig
import dns.update
import pytest
import trio

from ddnsd._answer import Responder
from ddnsd._rfc2136 import UpdateHandler
from ddnsd._store import ZoneStore
from ddnsd._zone import SoaFields, Zone, ZoneSet
from registry import DnsRRset, Registry, TsigKey

KEY_NAME = "nas1.dyn.test"
SECRET = bytes(range(64))
ALGORITHMS = {"hmac-sha256": dns.tsig.HMAC_SHA256, "hmac-sha512": dns.tsig.HMAC_SHA512}
T0 = 1_800_000_000  # the signer's clock, in seconds since the epoch


class KeyRegistry:
    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self.written = 0

    async def find_tsig_key(self, key_name: str) -> TsigKey | None:
        await trio.lowlevel.checkpoint()
        if key_name == KEY_NAME:
            return TsigKey(KEY_NAME, "nas1", self.algorithm, SECRET)
        return None

    async def commit_dns(self, rrsets: list[DnsRRset], serials: dict[str, int]) -> None:
        await trio.lowlevel.checkpoint()
        self.written += 1


@asynccontextmanager
async def handler(algorithm: str) -> AsyncIterator[tuple[UpdateHandler, KeyRegistry]]:
    zones = ZoneSet(Zone("dyn.test", SoaFields("ns1.dyn.test", "hostmaster.dyn.test"), ()))
    zones.add_device("nas1")
    registry = KeyRegistry(algorithm)
    store = ZoneStore(cast(Registry, registry), zones, Responder(zones))
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        yield UpdateHandler(cast(Registry, registry), store), registry
        nursery.cancel_scope.cancel()


@contextmanager
def clock_at(monkeypatch: pytest.MonkeyPatch, now: float) -> Iterator[None]:
    with monkeypatch.context() as patch:
        patch.setattr(time, "time", lambda: now)
        yield


def signed_update(
    monkeypatch: pytest.MonkeyPatch,
    algorithm: dns.name.Name,
    secret: bytes = SECRET,
    key_name: str = KEY_NAME,
    address: str = "192.0.2.1",
) -> dns.update.UpdateMessage:
    update = dns.update.UpdateMessage("dyn.test")
    update.replace("nas1", 60, "A", address)
    key = dns.tsig.Key(key_name, secret, algorithm)
    update.use_tsig({key.name: key}, keyname=key.name, fudge=300, algorithm=algorithm)
    with clock_at(monkeypatch, T0):
        update.to_wire()  # signs at T0; the wire and MAC are kept on the message
    return update


async def send(
    update_handler: UpdateHandler,
    update: dns.update.UpdateMessage,
    monkeypatch: pytest.MonkeyPatch,
    step_s: float = 0,
) -> dns.message.Message:
    """The one reply to `update`, received while our clock is `step_s` from the signer's."""
    assert update.wire is not None
    with clock_at(monkeypatch, T0 + step_s):
        [reply] = await update_handler.handle(update.wire, "192.0.2.9", False)
    response = dns.message.from_wire(reply, keyring=False)
    assert response.id == update.id
    return response


def tsig_of(response: dns.message.Message) -> dns.rdtypes.ANY.TSIG.TSIG:
    assert response.tsig is not None, "no TSIG in the response"
    return cast(dns.rdtypes.ANY.TSIG.TSIG, response.tsig[0])


def verifies(response: dns.message.Message, update: dns.message.Message, secret: bytes) -> bool:
    """Whether the response's MAC is the one the key gives over the response and the
    request's MAC (RFC 8945 section 5.3), whatever TSIG error it carries."""
    theirs = tsig_of(response)
    key = dns.tsig.Key(KEY_NAME, secret, theirs.algorithm)
    bare = dns.message.from_wire(response.to_wire(), keyring=False)
    bare.tsig = None
    expected, _ = dns.tsig.sign(  # type: ignore[no-untyped-call]
        bare.to_wire(), key, theirs.replace(mac=b""), theirs.time_signed, update.mac
    )
    return bool(expected.mac == theirs.mac)


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
async def test_an_update_signed_with_the_right_key_is_applied_and_the_answer_signed(
    algorithm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with handler(algorithm) as (update_handler, registry):
        update = signed_update(monkeypatch, ALGORITHMS[algorithm])
        response = await send(update_handler, update, monkeypatch)
        assert response.rcode() == dns.rcode.NOERROR
        assert tsig_of(response).algorithm == ALGORITHMS[algorithm]
        assert tsig_of(response).error == 0
        assert verifies(response, update, SECRET)
        assert update_handler.store.zones.current("nas1", "A") == ("192.0.2.1",)
        assert registry.written == 1


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
async def test_a_wrong_secret_is_notauth_badsig_unsigned_and_changes_nothing(
    algorithm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with handler(algorithm) as (update_handler, registry):
        update = signed_update(monkeypatch, ALGORITHMS[algorithm], secret=b"\x01" * 64)
        response = await send(update_handler, update, monkeypatch)
        assert response.rcode() == dns.rcode.NOTAUTH
        assert (tsig_of(response).error, tsig_of(response).mac) == (dns.rcode.BADSIG, b"")
        # What a client with the key makes of it: the server says BADSIG.
        with pytest.raises(dns.tsig.PeerBadSignature):
            dns.message.from_wire(
                response.to_wire(), keyring=update.keyring, request_mac=update.mac
            )
        assert update_handler.store.zones.current("nas1", "A") == ()
        assert registry.written == 0
        assert update_handler.counts == {"badsig": 1}


async def test_an_unknown_key_or_another_algorithm_is_notauth_badkey(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for first in ("another algorithm", "a good update"):  # the key looked up, then cached
        async with handler("hmac-sha512") as (update_handler, registry):
            if first == "a good update":
                good = signed_update(monkeypatch, dns.tsig.HMAC_SHA512, address="192.0.2.9")
                assert (await send(update_handler, good, monkeypatch)).rcode() == 0
            for update in (
                signed_update(monkeypatch, dns.tsig.HMAC_SHA256),  # the right name and secret
                signed_update(monkeypatch, dns.tsig.HMAC_SHA512, key_name="stranger.dyn.test"),
            ):
                response = await send(update_handler, update, monkeypatch)
                assert response.rcode() == dns.rcode.NOTAUTH, first
                assert (tsig_of(response).error, tsig_of(response).mac) == (
                    dns.rcode.BADKEY,
                    b"",
                ), first
            assert update_handler.store.zones.current("nas1", "A") in ((), ("192.0.2.9",))
            assert update_handler.counts["badkey"] == 2
            assert registry.written == (first == "a good update")


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
@pytest.mark.parametrize("step_s", [-301, 301, -3600, 86400])
async def test_a_clock_stepped_past_the_fudge_is_badtime_signed_with_our_time(
    algorithm: str, step_s: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with handler(algorithm) as (update_handler, registry):
        update = signed_update(monkeypatch, ALGORITHMS[algorithm])
        response = await send(update_handler, update, monkeypatch, step_s)
        assert response.rcode() == dns.rcode.NOTAUTH
        tsig = tsig_of(response)
        assert tsig.error == dns.rcode.BADTIME
        assert tsig.time_signed == T0  # the request's, as RFC 8945 section 5.2.3 has it
        assert tsig.other == struct.pack("!HI", 0, T0 + step_s)  # our clock
        assert verifies(response, update, SECRET)  # signed: the client can trust the times
        assert update_handler.store.zones.current("nas1", "A") == ()
        assert registry.written == 0
        assert update_handler.counts == {"badtime": 1}


@pytest.mark.parametrize("step_s", [-300, -1, 0, 1, 300])
async def test_a_clock_within_the_fudge_is_accepted(
    step_s: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with handler("hmac-sha512") as (update_handler, registry):
        update = signed_update(monkeypatch, dns.tsig.HMAC_SHA512)
        response = await send(update_handler, update, monkeypatch, step_s)
        assert response.rcode() == dns.rcode.NOERROR
        assert tsig_of(response).error == 0
        assert update_handler.store.zones.current("nas1", "A") == ("192.0.2.1",)
        assert registry.written == 1


async def test_the_clock_stepping_back_and_forth_between_updates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One client with a good clock; ours steps forward an hour, then back: refused while it
    # is off, accepted again once it is back, with nothing left over from the refusal.
    async with handler("hmac-sha256") as (update_handler, registry):
        results = []
        for step_s, address in ((0, "192.0.2.1"), (3600, "192.0.2.2"), (0, "192.0.2.3")):
            update = signed_update(monkeypatch, dns.tsig.HMAC_SHA256, address=address)
            response = await send(update_handler, update, monkeypatch, step_s)
            results.append((response.rcode(), tsig_of(response).error))
        assert results == [
            (dns.rcode.NOERROR, 0),
            (dns.rcode.NOTAUTH, dns.rcode.BADTIME),
            (dns.rcode.NOERROR, 0),
        ]
        assert update_handler.store.zones.current("nas1", "A") == ("192.0.2.3",)
        assert registry.written == 2
