"""ZoneStore without a database: what counts as a change (values and TTL), and what is
written and answered."""

from __future__ import annotations

from typing import cast

import dns.update
import pytest
import trio
import trio.testing

from ddnsd._answer import Responder
from ddnsd._rfc2136 import UpdateHandler
from ddnsd._store import RefusedChange, ZoneStore
from ddnsd._zone import Change, SoaFields, Zone, ZoneSet
from registry import DnsRRset, Registry


class FakeRegistry:
    def __init__(self) -> None:
        self.written: list[list[DnsRRset]] = []

    async def commit_dns(self, rrsets: list[DnsRRset], serials: dict[str, int]) -> None:
        self.written.append(rrsets)
        await trio.lowlevel.checkpoint()


def make_store() -> tuple[ZoneStore, FakeRegistry]:
    zones = ZoneSet(Zone("dyn.test", SoaFields("ns1.dyn.test", "hostmaster.dyn.test"), ()))
    zones.add_device("nas1")
    registry = FakeRegistry()
    return ZoneStore(cast(Registry, registry), zones, Responder(zones)), registry


def stored_ttl(store: ZoneStore) -> int:
    node = store.zones.device_zone.nodes["nas1"]
    return next(iter(node.values())).ttl


async def test_a_change_of_ttl_alone_is_a_change() -> None:
    store, registry = make_store()
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        first = await store.update("nas1", [Change("nas1", "A", 60, ("198.51.100.4",))])
        same = await store.update("nas1", [Change("nas1", "A", 60, ("198.51.100.4",))])
        longer = await store.update("nas1", [Change("nas1", "A", 300, ("198.51.100.4",))])
        nursery.cancel_scope.cancel()
    assert (first.changed, same.changed, longer.changed) == (True, False, True)
    assert longer.serial == first.serial + 1
    assert stored_ttl(store) == 300
    assert [[r.ttl for r in batch] for batch in registry.written] == [[60], [300]]


async def test_a_ttl_change_queued_behind_the_same_values_is_not_lost() -> None:
    # The second update is judged against the first, still being written: same values, new
    # TTL, so it must be written too.
    store, registry = make_store()
    results: list[tuple[int, bool]] = []

    async def update(ttl: int) -> None:
        change = Change("nas1", "A", ttl, ("198.51.100.4",))
        results.append((ttl, (await store.update("nas1", [change])).changed))

    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        async with trio.open_nursery() as clients:
            clients.start_soon(update, 60)
            await trio.testing.wait_all_tasks_blocked()
            clients.start_soon(update, 300)
        nursery.cancel_scope.cancel()
    assert sorted(results) == [(60, True), (300, True)]
    assert stored_ttl(store) == 300
    assert [[r.ttl for r in batch] for batch in registry.written] == [[60], [300]]


async def test_deleting_what_is_not_there_is_no_change_whatever_the_ttl() -> None:
    store, registry = make_store()
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        result = await store.update("nas1", [Change("nas1", "AAAA", 300, ())])
        nursery.cancel_scope.cancel()
    assert not result.changed
    assert registry.written == []


def plan(store: ZoneStore, *steps: tuple[object, ...]) -> list[Change]:
    update = dns.update.UpdateMessage("dyn.test")
    for step in steps:
        getattr(update, str(step[0]))(*step[1:])
    return UpdateHandler(cast(Registry, FakeRegistry()), store)._plan(update, "nas1")


async def test_rfc2136_a_replace_with_another_ttl_is_a_change() -> None:
    store, _ = make_store()
    store.zones.apply([Change("nas1", "A", 60, ("198.51.100.4",))])
    assert plan(store, ("replace", "nas1.dyn.test.", 60, "A", "198.51.100.4")) == []
    assert plan(store, ("replace", "nas1.dyn.test.", 300, "A", "198.51.100.4")) == [
        Change("nas1", "A", 300, ("198.51.100.4",))
    ]


async def test_rfc2136_deleting_one_value_keeps_the_ttl_and_deleting_none_is_no_change() -> None:
    store, _ = make_store()
    store.zones.apply([Change("nas1", "A", 300, ("198.51.100.4", "198.51.100.5"))])
    assert plan(store, ("delete", "nas1.dyn.test.", "A", "198.51.100.9")) == []
    assert plan(store, ("delete", "nas1.dyn.test.", "A", "198.51.100.5")) == [
        Change("nas1", "A", 300, ("198.51.100.4",))
    ]


async def test_a_change_the_zone_cannot_hold_is_refused_before_anything_is_written() -> None:
    store, registry = make_store()
    before = store.zones.device_zone.serial
    refused = [
        Change("nas1", "A", 60, ("198.051.100.4",)),  # not canonical
        Change("nas1", "AAAA", 60, ("198.51.100.4",)),  # not of its type
        Change("nas1", "AAAA", 60, ("::ffff:198.51.100.4",)),  # IPv4-mapped
        Change("nas1", "MX", 60, ("mail.example.org",)),  # not served
    ]
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        for change in refused:
            with pytest.raises(RefusedChange):
                # With a good change beside it: the update is refused whole.
                await store.update("nas1", [Change("nas1", "TXT", 60, ("ok",)), change])
        # The store goes on: the next update is written and answered.
        result = await store.update("nas1", [Change("nas1", "A", 60, ("198.51.100.4",))])
        nursery.cancel_scope.cancel()
    assert result.changed and result.serial == before + 1
    assert [[(r.rrtype, r.values) for r in batch] for batch in registry.written] == [
        [("A", ("198.51.100.4",))]
    ]
    assert store.zones.outcome("nas1", "TXT") == ((), None)
    assert store.zones.outcome("nas1", "A") == (("198.51.100.4",), 60)
