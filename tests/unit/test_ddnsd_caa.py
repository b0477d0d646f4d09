"""CAA (RFC 8659, 8657): a device's record names its CA and its NAS's ACME account, for its
names in both zones; the zones' default sits at their apex; what no device may set is refused
before it reaches the zone."""

from __future__ import annotations

import dns.message
import dns.rcode
import pytest

import protocol
from ddnsd._answer import Responder
from ddnsd._zone import Change, SoaFields, Zone, ZoneSet

from .test_ddnsd_acme_names import rrsets
from .test_ddnsd_answer import ask

ACCOUNT = '0 issue "pebble.test; accounturi=https://ca.test/my-account/7"'
DEFAULT = '0 issue "letsencrypt.org"'


def zones_with_default() -> ZoneSet:
    soa = SoaFields("ns1.dyn.test", "hostmaster.dyn.test")
    zones = ZoneSet(
        Zone("dyn.test", soa, ("ns1.dyn.test",)),
        Zone("link.test", soa, ("ns1.dyn.test",)),
        ("203.0.113.10",),
        caa=(DEFAULT,),
    )
    zones.add_device("nas1")
    return zones


def caa(message: dns.message.Message) -> list[tuple[str, str, list[str]]]:
    return [r for r in rrsets(message) if r[1] == "CAA"]


def test_a_devices_account_record_answers_in_both_zones_and_goes_when_deleted() -> None:
    zones = zones_with_default()
    responder = Responder(zones)
    link_serial = zones.link_zone.serial if zones.link_zone else 0
    _, names = zones.apply([Change("nas1", "CAA", 300, (ACCOUNT,))])
    assert "nas1.link.test" in {n.rstrip(".") for n in names}
    responder.invalidate(names, zones.zones)
    for name in ("nas1.dyn.test", "nas1.link.test"):
        assert caa(ask(responder, name, "CAA")) == [(name + ".", "CAA", [ACCOUNT])]
    assert zones.link_zone is not None and zones.link_zone.serial != link_serial
    # Asked at a name below the device (a wildcard's visitor name): NODATA, and the CA
    # climbs (RFC 8659 section 3) to the device's record.
    below = ask(responder, "files.nas1.link.test", "CAA")
    assert below.rcode() == dns.rcode.NOERROR and caa(below) == []
    # The apex keeps the operator's default for devices without a record.
    for apex in ("dyn.test", "link.test"):
        assert caa(ask(responder, apex, "CAA")) == [(apex + ".", "CAA", [DEFAULT])]
    _, names = zones.apply([Change("nas1", "CAA", 300, ())])
    responder.invalidate(names, zones.zones)
    for name in ("nas1.dyn.test", "nas1.link.test"):
        assert caa(ask(responder, name, "CAA")) == []


def test_the_link_zone_transfer_carries_the_device_record() -> None:
    zones = zones_with_default()
    zones.apply([Change("nas1", "CAA", 300, (ACCOUNT,))])
    assert zones.link_zone is not None
    records = [(str(rr.rname), str(rr.rdata)) for rr in zones.link_zone.records()]
    assert ("nas1.link.test.", ACCOUNT) in records
    zones.remove_device("nas1")
    records = [(str(rr.rname), str(rr.rdata)) for rr in zones.link_zone.records()]
    assert all(not name.startswith("nas1.") for name, _ in records)


@pytest.mark.parametrize(
    "value",
    [
        '0 issue "letsencrypt.org"',  # no account: any account of that CA
        '0 issuewild "pebble.test; accounturi=https://ca.test/a/1"',
        '128 issue "pebble.test; accounturi=https://ca.test/a/1"',
        '0 issue "pebble.test; accounturi=http://ca.test/a/1"',
        '0 issue "pebble.test; accounturi=https://ca.test/a;b"',
        '0 issue "pebble.test; accounturi=https://ca.test/a/1" ',
        '0 iodef "mailto:someone@example.org"',
        "",
    ],
)
def test_a_device_sets_only_its_own_accounts_record(value: str) -> None:
    with pytest.raises(protocol.LocalProtocolError):
        protocol.DdnsUpdate(1, "nas1", "nas1", "CAA", (value,))


def test_caa_only_at_the_device_name() -> None:
    with pytest.raises(protocol.LocalProtocolError):
        protocol.DdnsUpdate(1, "nas1", "_acme-challenge.nas1", "CAA", (ACCOUNT,))
    assert protocol.DdnsUpdate(1, "nas1", "nas1", "CAA", (ACCOUNT,)).values == (ACCOUNT,)
