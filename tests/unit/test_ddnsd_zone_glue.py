"""Nameservers inside the zones have addresses (glue) from the config: answered with AA at
their names, in zone transfers, and as additional data with the zones' NS answers."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from config import ConfigError, DdnsdConfig, loads
from ddnsd._answer import Responder
from ddnsd._parts import build_zones
from ddnsd._xfr import _whole_zone
from ddnsd._zone import SoaFields, Zone, ZoneSet

GLUE = {"ns1.dyn.test": ("192.0.2.53", "2001:db8::53"), "ns2.link.test": ("192.0.2.54",)}


def make_zones() -> ZoneSet:
    soa = SoaFields("ns1.dyn.test", "hostmaster.dyn.test")
    nameservers = ("ns1.dyn.test", "ns2.link.test", "ns.elsewhere.example")
    zones = ZoneSet(
        Zone("dyn.test", soa, nameservers),
        Zone("link.test", soa, nameservers),
        ("203.0.113.10",),
        nameserver_addresses=GLUE,
    )
    zones.add_device("nas1")
    return zones


def ask(responder: Responder, name: str, rdtype: str) -> dns.message.Message:
    wire = responder.respond(dns.message.make_query(name, rdtype, use_edns=0).to_wire())
    assert wire is not None
    return dns.message.from_wire(wire)


def addresses(rrsets: list[dns.rrset.RRset]) -> dict[tuple[str, str], set[str]]:
    return {
        (str(r.name), dns.rdatatype.to_text(r.rdtype)): {x.address for x in r}
        for r in rrsets
        if r.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
    }


def test_in_zone_nameservers_answer_their_addresses_with_aa() -> None:
    responder = Responder(make_zones())
    for name, rdtype, want in (
        ("ns1.dyn.test", "A", {"192.0.2.53"}),
        ("NS1.dyn.test", "AAAA", {"2001:db8::53"}),
        ("ns2.link.test", "A", {"192.0.2.54"}),
    ):
        answer = ask(responder, name, rdtype)
        assert answer.rcode() == dns.rcode.NOERROR and answer.flags & dns.flags.AA, name
        assert {x.address for x in answer.answer[0]} == want, name
    nodata = ask(responder, "ns2.link.test", "AAAA")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer


def test_ns_answers_carry_the_glue_of_both_zones_and_no_other() -> None:
    responder = Responder(make_zones())
    for zone in ("dyn.test", "link.test"):
        answer = ask(responder, zone, "NS")
        assert len(answer.answer[0]) == 3
        assert addresses(answer.additional) == {
            ("ns1.dyn.test.", "A"): {"192.0.2.53"},
            ("ns1.dyn.test.", "AAAA"): {"2001:db8::53"},
            ("ns2.link.test.", "A"): {"192.0.2.54"},
        }, zone


def test_zone_transfers_hold_each_zones_own_glue() -> None:
    zones = make_zones()
    device, link = zones.device_zone, zones.link_zone
    assert link is not None
    assert addresses(list(_whole_zone(device))) == {
        ("ns1.dyn.test.", "A"): {"192.0.2.53"},
        ("ns1.dyn.test.", "AAAA"): {"2001:db8::53"},
    }
    assert addresses(list(_whole_zone(link)))[("ns2.link.test.", "A")] == {"192.0.2.54"}
    assert ("ns1.dyn.test.", "A") not in addresses(list(_whole_zone(link)))


def test_a_device_cannot_take_a_nameservers_name() -> None:
    zones = make_zones()
    assert zones.add_device("ns1") == [] and zones.add_device("ns2") == []
    assert zones.remove_device("ns1") == []
    answer = ask(Responder(zones), "ns1.dyn.test", "A")
    assert {x.address for x in answer.answer[0]} == {"192.0.2.53"}


def config_text(addresses: str) -> str:
    return textwrap.dedent(f"""
        [ddnsd]
        state_dir = "state"
        [zone]
        name = "dyn.test"
        primary_ns = "ns1.dyn.test"
        hostmaster = "hostmaster.dyn.test"
        nameservers = ["ns1.dyn.test", "ns2.example.net"]
        link_zone = "link.test"
        [zone.nameserver_addresses]
        {addresses}
        [dns]
        listen = "127.0.0.1:0"
        """)


def load(tmp_path: Path, addresses: str) -> DdnsdConfig:
    return loads(DdnsdConfig, config_text(addresses), base_dir=tmp_path)


def test_the_config_gives_nameservers_their_addresses(tmp_path: Path) -> None:
    config = load(tmp_path, '"ns1.dyn.test" = ["192.0.2.53", "2001:db8::53"]')
    zones = build_zones(config)
    assert set(zones.nameserver_rrsets["ns1.dyn.test"]) == {dns.rdatatype.A, dns.rdatatype.AAAA}


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('"ns3.dyn.test" = ["192.0.2.53"]', "not one of [zone].nameservers"),
        ('"ns2.example.net" = ["192.0.2.53"]', "not inside dyn.test"),
        ('"ns1.dyn.test" = []', "at least one address"),
        ('"ns1.dyn.test" = ["192.0.2.0/24"]', "is not an IP address"),
        ('"ns1.dyn.test" = ["2001:DB8::53"]', "write '2001:DB8::53' as '2001:db8::53'"),
    ],
)
def test_nameserver_addresses_are_checked(tmp_path: Path, line: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load(tmp_path, line)
