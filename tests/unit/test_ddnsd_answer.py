"""ddnsd's responder without sockets: the cache never changes an answer, the rules hold for
every case of letters, and hostile bytes get FORMERR or silence, never an exception."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
from hypothesis import given, settings
from hypothesis import strategies as st

from ddnsd._answer import Responder
from ddnsd._zone import Change, SoaFields, Zone, ZoneSet


def make_zones() -> ZoneSet:
    soa = SoaFields("ns1.dyn.test", "hostmaster.dyn.test")
    zones = ZoneSet(
        Zone("dyn.test", soa, ("ns1.dyn.test",)),
        Zone("link.test", soa, ("ns1.dyn.test",)),
        ("203.0.113.10", "2001:db8::10"),
    )
    for device in ("nas1", "nas2"):
        zones.add_device(device)
    zones.apply(
        [
            Change("nas1", "A", 60, ("198.51.100.4",)),
            Change("nas1", "AAAA", 60, ("2001:db8::4",)),
            Change("_acme-challenge.nas1", "TXT", 60, ("token",)),
        ]
    )
    return zones


def ask(responder: Responder, name: str, rdtype: str, **kw: object) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
    wire = responder.respond(query.to_wire())
    assert wire is not None
    return dns.message.from_wire(wire)


def test_cached_answers_equal_fresh_ones_for_every_letter_case() -> None:
    cached = Responder(make_zones())
    for name in ("nas1.dyn.test", "NAS1.dyn.TEST", "nAs1.DyN.tEsT", "x.NAS1.link.test"):
        for rdtype in ("A", "AAAA", "TXT", "SOA", "MX"):
            query = dns.message.make_query(name, rdtype, use_edns=0)
            first = cached.respond(query.to_wire())
            again = cached.respond(query.to_wire())
            fresh = Responder(make_zones()).respond(query.to_wire())
            assert first == again == fresh, (name, rdtype)
    assert cached.hits > 0


def test_updates_invalidate_cached_answers_and_negative_answers_show_the_new_serial() -> None:
    zones = make_zones()
    responder = Responder(zones)
    assert ask(responder, "nas1.dyn.test", "A").answer[0][0].address == "198.51.100.4"
    before = ask(responder, "nosuch.dyn.test", "A").authority[0][0].serial
    serial, names = zones.apply([Change("nas1", "A", 60, ("198.51.100.5",))])
    responder.invalidate(names, [zones.device_zone])
    assert ask(responder, "NAS1.dyn.test", "A").answer[0][0].address == "198.51.100.5"
    assert ask(responder, "nosuch.dyn.test", "A").authority[0][0].serial == serial > before


def test_the_relays_own_sites_answer_with_the_relay_addresses() -> None:
    responder = Responder(make_zones())
    for name in ("install.link.test", "abcdefgh.install.link.test"):
        assert ask(responder, name, "A").answer[0][0].address == "203.0.113.10", name
        assert ask(responder, name, "AAAA").answer[0][0].address == "2001:db8::10", name
    assert ask(responder, "install.dyn.test", "A").rcode() == dns.rcode.NXDOMAIN


def test_removed_device_answers_nxdomain_everywhere() -> None:
    zones = make_zones()
    responder = Responder(zones)
    assert ask(responder, "a.b.nas1.link.test", "A").rcode() == dns.rcode.NOERROR
    names = zones.remove_device("nas1")
    responder.invalidate(names, zones.zones)
    for name in ("nas1.dyn.test", "_acme-challenge.nas1.dyn.test", "a.b.nas1.link.test"):
        assert ask(responder, name, "A").rcode() == dns.rcode.NXDOMAIN, name


def test_empty_non_terminal_is_nodata() -> None:
    zones = make_zones()
    zones.device_zone.ensure_node("deep.below.nas2")
    response = ask(Responder(zones), "below.nas2.dyn.test", "A")
    assert response.rcode() == dns.rcode.NOERROR and not response.answer


def test_truncation_keeps_the_question_and_sets_tc() -> None:
    zones = make_zones()
    zones.apply(
        [Change("_acme-challenge.nas1", "TXT", 60, tuple(f"{i}" + "x" * 200 for i in range(10)))]
    )
    responder = Responder(zones)
    query = dns.message.make_query("_acme-challenge.nas1.dyn.test", "TXT")  # no EDNS: 512
    response = dns.message.from_wire(responder.respond(query.to_wire()) or b"")
    assert response.flags & dns.flags.TC and not response.answer
    assert response.question[0].name.to_text() == "_acme-challenge.nas1.dyn.test."
    tcp = dns.message.from_wire(responder.respond(query.to_wire(), tcp=True) or b"")
    assert len(tcp.answer[0]) == 10


def test_edns_version_1_is_badvers() -> None:
    query = dns.message.make_query("dyn.test", "SOA", use_edns=1)
    response = dns.message.from_wire(Responder(make_zones()).respond(query.to_wire()) or b"")
    assert response.rcode() == dns.rcode.BADVERS


def test_malformed_messages_get_formerr_or_silence() -> None:
    responder = Responder(make_zones())
    good = dns.message.make_query("nas1.dyn.test", "A").to_wire()
    assert responder.respond(b"") is None
    assert responder.respond(good[:11]) is None  # shorter than a header
    response = responder.respond(good[:14])  # a header and half a question
    assert response is not None and response[3] & 0x0F == dns.rcode.FORMERR
    assert response[:2] == good[:2]
    assert responder.respond(bytes([good[0], good[1], good[2] | 0x80]) + good[3:]) is None  # QR
    # Two questions.
    two = good[:4] + b"\x00\x02" + good[6:] + good[12:]
    assert (responder.respond(two) or b"\x00" * 4)[3] & 0x0F == dns.rcode.FORMERR
    # A compression pointer that points at itself.
    loop = good[:12] + b"\xc0\x0c" + b"\x00\x01\x00\x01"
    answer = responder.respond(loop)
    assert answer is None or answer[3] & 0x0F == dns.rcode.FORMERR


@settings(max_examples=500, deadline=1000)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise(data: bytes) -> None:
    response = Responder(make_zones()).respond(data)
    assert response is None or (len(response) >= 12 and response[:2] == data[:2])


QUERY = dns.message.make_query("NaS1.dyn.test", "A", use_edns=0).to_wire()


@settings(max_examples=500, deadline=1000)
@given(
    st.lists(st.tuples(st.integers(0, len(QUERY) - 1), st.integers(0, 255)), min_size=1, max_size=4)
)
def test_mutated_queries_never_raise_and_keep_their_id(flips: list[tuple[int, int]]) -> None:
    data = bytearray(QUERY)
    for position, value in flips:
        data[position] = value
    responder = Responder(make_zones())
    response = responder.respond(bytes(data))
    if response is not None:
        assert response[:2] == bytes(data[:2])
        assert response[2] & 0x80  # a response, never a query
    # Asking twice (the second time perhaps from the cache) gives the same bytes.
    assert responder.respond(bytes(data)) == response


def test_qclass_any_is_answered_without_aa_and_class_in_with_it() -> None:
    responder = Responder(make_zones())
    for name in ("nas1.dyn.test", "nosuch.dyn.test", "dyn.test"):
        for _ in range(2):  # built, then from the cache
            any_class = ask(responder, name, "A", rdclass="ANY")
            assert not any_class.flags & dns.flags.AA, name
            assert ask(responder, name, "A").flags & dns.flags.AA, name
    assert ask(responder, "nas1.dyn.test", "A", rdclass="ANY").answer[0][0].address == (
        "198.51.100.4"
    )
