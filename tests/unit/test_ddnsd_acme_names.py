"""A device's DNS-01 challenge name in the link zone is a CNAME to its name in the device zone:
the one TXT RRset the device sets answers for `<device>.<zone>`, `<device>.<link zone>` and
`*.<device>.<link zone>` at once, and the answer carries the TXT behind the CNAME."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from ddnsd._answer import Responder
from ddnsd._zone import Change, ZoneSet

from .test_ddnsd_answer import ask, make_zones

LINK_CHALLENGE = "_acme-challenge.nas1.link.test"
TARGET = "_acme-challenge.nas1.dyn.test."


def rrsets(message: dns.message.Message) -> list[tuple[str, str, list[str]]]:
    return [
        (str(rrset.name), dns.rdatatype.to_text(rrset.rdtype), sorted(r.to_text() for r in rrset))
        for rrset in message.answer
    ]


def test_the_link_challenge_name_answers_the_device_zones_txt() -> None:
    responder = Responder(make_zones())
    answer = ask(responder, LINK_CHALLENGE, "TXT")
    assert answer.rcode() == dns.rcode.NOERROR and answer.flags & dns.flags.AA
    assert rrsets(answer) == [
        (LINK_CHALLENGE + ".", "CNAME", [TARGET]),
        (TARGET, "TXT", ['"token"']),
    ]
    # Asked for the CNAME itself, or for another type: the CNAME (and NODATA behind it).
    assert rrsets(ask(responder, LINK_CHALLENGE, "CNAME")) == [
        (LINK_CHALLENGE + ".", "CNAME", [TARGET])
    ]
    other = ask(responder, LINK_CHALLENGE, "A")
    assert rrsets(other)[0][1] == "CNAME" and len(other.answer) == 1
    assert str(other.authority[0].name) == "dyn.test."  # the SOA of where the chain ended


def test_no_challenge_set_is_nxdomain_behind_the_cname() -> None:
    responder = Responder(make_zones())
    answer = ask(responder, "_acme-challenge.nas2.link.test", "TXT")
    assert answer.rcode() == dns.rcode.NXDOMAIN  # RFC 6604: the rcode of the last name
    assert rrsets(answer) == [
        ("_acme-challenge.nas2.link.test.", "CNAME", ["_acme-challenge.nas2.dyn.test."])
    ]
    assert str(answer.authority[0].name) == "dyn.test."


def test_a_new_challenge_value_is_answered_at_once_through_the_cname() -> None:
    zones = make_zones()
    responder = Responder(zones)
    for value in ("first", "second"):
        _, names = zones.apply([Change("_acme-challenge.nas1", "TXT", 60, (value, "wild"))])
        responder.invalidate(names, [zones.device_zone])
        for _ in range(2):  # the second time from whatever the responder kept
            txt = rrsets(ask(responder, LINK_CHALLENGE, "TXT"))[1]
            assert txt == (TARGET, "TXT", sorted([f'"{value}"', '"wild"']))


def test_the_relay_still_answers_every_other_name_under_the_device() -> None:
    responder = Responder(make_zones())
    for name in ("nas1.link.test", "files.nas1.link.test"):
        [(_, rdtype, values)] = rrsets(ask(responder, name, "A"))
        assert (rdtype, values) == ("A", ["203.0.113.10"])
    # Below the challenge name there is nothing (the wildcard does not reach past it).
    assert ask(responder, "x._acme-challenge.nas1.link.test", "A").rcode() == dns.rcode.NXDOMAIN


def test_the_cname_is_in_the_link_zone_and_goes_with_its_device() -> None:
    zones: ZoneSet = make_zones()
    link = zones.link_zone
    assert link is not None
    records = [(str(rr.rname), rr.rtype, str(rr.rdata)) for rr in link.records()]
    assert (LINK_CHALLENGE + ".", dns.rdatatype.CNAME, TARGET) in records
    serial = link.serial
    zones.remove_device("nas1")
    assert link.serial != serial
    assert not [rr for rr in link.records() if str(rr.rname).endswith("nas1.link.test.")]
