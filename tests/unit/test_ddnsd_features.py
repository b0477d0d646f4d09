"""A device's owner turns DDNS or Link off: the registry deletes that feature's data in the
switch's transaction, ddnsd follows at its next registry poll (its link names go, its
addresses go and none is taken), and turning it on again brings back what is not data."""

from __future__ import annotations

import dns.rcode
import pytest
import trio

from ddnsd._answer import Responder
from ddnsd._store import FeatureOff, ZoneStore
from ddnsd._zone import Change, SoaFields, Zone, ZoneSet
from registry import Conflict, Registry, TokenKind

from .test_ddnsd_acme_names import rrsets
from .test_ddnsd_answer import ask

KEY = bytes(range(32))
ACCOUNT = '0 issue "pebble.test; accounturi=https://ca.test/my-account/7"'


def zone_set() -> ZoneSet:
    soa = SoaFields("ns1.dyn.test", "hostmaster.dyn.test")
    return ZoneSet(
        Zone("dyn.test", soa, ("ns1.dyn.test",)),
        Zone("link.test", soa, ("ns1.dyn.test",)),
        ("203.0.113.10",),
    )


async def enrolled(registry: Registry) -> ZoneStore:
    owner = await registry.create_account("olga@example.org", "Olga")
    await registry.enrol_device(owner.account_id, "nas1", KEY)
    zones = zone_set()
    store = ZoneStore(registry, zones, Responder(zones))
    await store.load()
    return store


def answer(store: ZoneStore, name: str, rrtype: str) -> tuple[str, list[list[str]]]:
    store.responder.clear()
    message = ask(store.responder, name, rrtype)
    return dns.rcode.to_text(message.rcode()), [r[2] for r in rrsets(message) if r[1] == rrtype]


async def test_ddns_off_deletes_the_addresses_and_passwords_and_takes_no_other(
    registry: Registry,
) -> None:
    store = await enrolled(registry)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        await store.update(
            "nas1",
            [
                Change("nas1", "A", 60, ("198.51.100.4",)),
                Change("nas1", "AAAA", 60, ("2001:db8::4",)),
                Change("nas1", "CAA", 300, (ACCOUNT,)),
            ],
        )
        await registry.create_token(TokenKind.DYNDNS2, device_name="nas1")
        await registry.set_feature("nas1", "ddns", False)
        # The switch's transaction took the addresses and the passwords; the CAA record
        # (the device's certificates, not its addresses) stays.
        assert {r.rrtype for r in await registry.list_rrsets("nas1")} == {"CAA"}
        assert await registry.list_tokens(device_name="nas1") == []
        with pytest.raises(Conflict):
            await registry.create_token(TokenKind.DYNDNS2, device_name="nas1")
        # Before ddnsd's poll sees it, an address it takes is still not written back.
        await store.update("nas1", [Change("nas1", "A", 60, ("198.51.100.5",))])
        assert {r.rrtype for r in await registry.list_rrsets("nas1")} == {"CAA"}
        await store.sync_devices()
        assert answer(store, "nas1.dyn.test", "A") == ("NOERROR", [])
        assert answer(store, "nas1.dyn.test", "AAAA") == ("NOERROR", [])
        assert answer(store, "nas1.dyn.test", "CAA") == ("NOERROR", [[ACCOUNT]])
        with pytest.raises(FeatureOff):
            await store.update("nas1", [Change("nas1", "A", 60, ("198.51.100.6",))])
        # A challenge for its certificates is no address: still taken.
        await store.update("nas1", [Change("_acme-challenge.nas1", "TXT", 60, ("token",))])
        await registry.set_feature("nas1", "ddns", True)
        await store.sync_devices()
        result = await store.update("nas1", [Change("nas1", "A", 60, ("198.51.100.7",))])
        assert result.changed
        assert answer(store, "nas1.dyn.test", "A") == ("NOERROR", [["198.51.100.7"]])
        nursery.cancel_scope.cancel()


async def test_link_off_takes_the_link_names_and_on_brings_them_back(registry: Registry) -> None:
    store = await enrolled(registry)
    await registry.device_seen("nas1")
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        await store.update("nas1", [Change("nas1", "CAA", 300, (ACCOUNT,))])
        assert answer(store, "nas1.link.test", "A") == ("NOERROR", [["203.0.113.10"]])
        link_serial = store.zones.link_zone.serial if store.zones.link_zone else 0
        await registry.set_feature("nas1", "link", False)
        device = await registry.get_device("nas1")
        assert device is not None and device.last_seen_at is None  # the relay's data, gone
        await store.sync_devices()
        for name in ("nas1.link.test", "www.nas1.link.test", "_acme-challenge.nas1.link.test"):
            assert answer(store, name, "A")[0] == "NXDOMAIN", name
        assert store.zones.link_zone is not None and store.zones.link_zone.serial != link_serial
        assert answer(store, "nas1.dyn.test", "CAA") == ("NOERROR", [[ACCOUNT]])  # not Link's
        # The workers are told with the device list.
        assert store.device_message().link_off == ("nas1",)
        await registry.set_feature("nas1", "link", True)
        await store.sync_devices()
        assert answer(store, "nas1.link.test", "A") == ("NOERROR", [["203.0.113.10"]])
        assert answer(store, "nas1.link.test", "CAA") == ("NOERROR", [[ACCOUNT]])
        nursery.cancel_scope.cancel()


async def test_a_device_with_link_off_has_no_link_names_after_a_restart(
    registry: Registry,
) -> None:
    store = await enrolled(registry)
    await registry.set_feature("nas1", "link", False)
    await registry.set_feature("nas1", "ddns", False)
    again = ZoneStore(registry, zone_set(), store.responder)
    again.responder = Responder(again.zones)
    await again.load()
    assert answer(again, "nas1.link.test", "A")[0] == "NXDOMAIN"
    assert answer(again, "nas1.dyn.test", "A") == ("NOERROR", [])
    with pytest.raises(FeatureOff):
        await again.update("nas1", [Change("nas1", "A", 60, ("198.51.100.6",))])
