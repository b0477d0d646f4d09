"""An UPDATE of the link zone may set the device's challenge name there, and nothing else:
`_acme-challenge.<device>.<link zone>` is a CNAME to the device zone's name, so the TXT is
stored there (certbot's RFC 2136 plugin updates the name it was given, CNAME or not)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import dns.message
import dns.rcode
import dns.tsig
import dns.tsigkeyring
import dns.update
import trio

from ddnsd._answer import Responder
from ddnsd._rfc2136 import UpdateHandler
from ddnsd._store import ZoneStore
from ddnsd._zone import SoaFields, Zone, ZoneSet
from registry import Registry

from .test_ddnsd_tsig import KEY_NAME, SECRET, KeyRegistry


@asynccontextmanager
async def linked() -> AsyncIterator[tuple[UpdateHandler, ZoneSet, Responder]]:
    soa = SoaFields("ns1.dyn.test", "hostmaster.dyn.test")
    zones = ZoneSet(
        Zone("dyn.test", soa, ("ns1.dyn.test",)),
        Zone("link.test", soa, ("ns1.dyn.test",)),
        ("203.0.113.10",),
    )
    for device in ("nas1", "nas2"):
        zones.add_device(device)
    registry = KeyRegistry("hmac-sha256")
    responder = Responder(zones)
    store = ZoneStore(cast(Registry, registry), zones, responder)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        yield UpdateHandler(cast(Registry, registry), store), zones, responder
        nursery.cancel_scope.cancel()


def update_of(zone: str, name: str, rdtype: str, *values: str) -> bytes:
    keyring = dns.tsigkeyring.from_text({KEY_NAME: ("hmac-sha256", _b64(SECRET))})
    update = dns.update.UpdateMessage(zone, keyring=keyring, keyalgorithm=dns.tsig.HMAC_SHA256)
    if values:
        update.replace(name, 60, rdtype, *values)
    else:
        update.delete(name, rdtype)
    wire: bytes = update.to_wire()
    return wire


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def rcode(handler: UpdateHandler, wire: bytes) -> dns.rcode.Rcode:
    [reply] = await handler.handle(wire, "192.0.2.7", True)
    return dns.message.from_wire(reply, keyring=False).rcode()


async def test_the_link_challenge_name_is_set_where_its_cname_points() -> None:
    async with linked() as (handler, zones, responder):
        wire = update_of("link.test", "_acme-challenge.nas1.link.test.", "TXT", '"token-1"')
        assert await rcode(handler, wire) == dns.rcode.NOERROR
        assert zones.current("_acme-challenge.nas1", "TXT") == ("token-1",)
        query = dns.message.make_query("_acme-challenge.nas1.link.test", "TXT")
        answer = dns.message.from_wire(responder.respond(query.to_wire()) or b"")
        assert [r.to_text() for rrset in answer.answer for r in rrset][-1] == '"token-1"'
        # And removed the same way.
        wire = update_of("link.test", "_acme-challenge.nas1.link.test.", "TXT")
        assert await rcode(handler, wire) == dns.rcode.NOERROR
        assert zones.current("_acme-challenge.nas1", "TXT") == ()


async def test_nothing_else_of_the_link_zone_can_be_changed() -> None:
    async with linked() as (handler, zones, _):
        refused = [
            update_of("link.test", "nas1.link.test.", "A", "192.0.2.1"),  # the relay's name
            update_of("link.test", "nas1.link.test.", "TXT", '"x"'),
            update_of("link.test", "_acme-challenge.nas2.link.test.", "TXT", '"x"'),  # another's
            update_of("link.test", "www.nas1.link.test.", "TXT", '"x"'),
            update_of("link.test", "_acme-challenge.nas1.dyn.test.", "TXT", '"x"'),  # other zone
        ]
        codes = [await rcode(handler, wire) for wire in refused]
        assert codes == [dns.rcode.REFUSED] * 4 + [dns.rcode.NOTZONE]
        assert zones.current("nas1", "A") == () and zones.current("nas1", "TXT") == ()
        assert zones.current("_acme-challenge.nas2", "TXT") == ()
        # The device zone is updated as before.
        wire = update_of("dyn.test", "nas1.dyn.test.", "A", "192.0.2.9")
        assert await rcode(handler, wire) == dns.rcode.NOERROR
        assert zones.current("nas1", "A") == ("192.0.2.9",)
