"""The relay's own DNS-01 challenge, for its install site's names: set by a service through
the store like any update, answered in the link zone only, never written to the registry,
and nothing else under a reserved name."""

from __future__ import annotations

from typing import cast

import dns.rcode
import trio

from ddnsd._answer import Responder
from ddnsd._store import ZoneStore
from ddnsd._zone import Change
from registry import Registry

from .test_ddnsd_acme_names import rrsets
from .test_ddnsd_answer import ask, make_zones
from .test_ddnsd_store import FakeRegistry

CHALLENGE = "_acme-challenge.install"


async def test_the_relays_challenge_is_answered_in_the_link_zone_and_not_stored() -> None:
    zones = make_zones()
    responder = Responder(zones)
    registry = FakeRegistry()
    store = ZoneStore(cast(Registry, registry), zones, responder)
    assert zones.link_zone is not None
    link_serial = zones.link_zone.serial
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        # Cached before: the site's wildcard answers there (NODATA for TXT).
        assert rrsets(ask(responder, CHALLENGE + ".link.test", "TXT")) == []
        done = await store.update("install", [Change(CHALLENGE, "TXT", 60, ("one", "two"))])
        assert done.changed
        answer = ask(responder, CHALLENGE + ".link.test", "TXT")
        assert rrsets(answer) == [(CHALLENGE + ".link.test.", "TXT", ['"one"', '"two"'])]
        assert zones.link_zone.serial != link_serial
        # Nowhere in the device zone, and nothing of it on disk.
        assert ask(responder, CHALLENGE + ".dyn.test", "TXT").rcode() == dns.rcode.NXDOMAIN
        assert registry.written == [[]]
        # The site itself still answers with the relay.
        [(_, kind, values)] = rrsets(ask(responder, "install.link.test", "A"))
        assert (kind, values) == ("A", ["203.0.113.10"])
        # Emptied once the CA has looked: seen as a change, and gone.
        gone = await store.update("install", [Change(CHALLENGE, "TXT", 60, ())])
        assert gone.changed
        assert rrsets(ask(responder, CHALLENGE + ".link.test", "TXT")) == []
        nursery.cancel_scope.cancel()


def test_nothing_but_the_challenge_under_a_reserved_name() -> None:
    zones = make_zones()
    assert zones.link_zone is not None
    serial = zones.link_zone.serial
    _, changed = zones.apply(
        [Change("install", "A", 60, ("192.0.2.66",)), Change("install", "CAA", 60, ())]
    )
    assert changed == [] and zones.link_zone.serial == serial
    [(_, _, values)] = rrsets(ask(Responder(zones), "install.link.test", "A"))
    assert values == ["203.0.113.10"]
