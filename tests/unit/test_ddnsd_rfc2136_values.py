"""RFC 2136 UPDATE values that the zone cannot store are refused as the client's mistake
(FORMERR), not failed as the server's (SERVFAIL). Found by tests/fuzz/fuzz_rfc2136.py."""

from __future__ import annotations

import struct
from typing import cast

import dns.message
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.update
import pytest

from ddnsd._answer import Responder
from ddnsd._rfc2136 import UpdateHandler, _Refusal, _value
from ddnsd._store import ZoneStore
from ddnsd._zone import SoaFields, Zone, ZoneSet
from registry import Registry


def _rdata(rdtype: dns.rdatatype.RdataType, text: str) -> dns.rdata.Rdata:
    if text == "":  # what dnspython reads from an RR with no rdata at all
        return dns.rdata.GenericRdata(dns.rdataclass.IN, rdtype, b"")
    return dns.rdata.from_text(dns.rdataclass.IN, rdtype, text)


@pytest.mark.parametrize(
    ("rdtype", "text"),
    [
        (dns.rdatatype.A, ""),  # empty rdata, as a delete of single RRs may carry
        (dns.rdatatype.AAAA, ""),
        (dns.rdatatype.AAAA, "::ffff:192.0.2.1"),  # IPv4-mapped: the zone keeps it as IPv4
    ],
)
def test_values_the_zone_cannot_store_are_formerr(
    rdtype: dns.rdatatype.RdataType, text: str
) -> None:
    with pytest.raises(_Refusal) as refused:
        _value(_rdata(rdtype, text))
    assert refused.value.rcode == dns.rcode.FORMERR


def test_addresses_are_stored_in_canonical_text() -> None:
    assert _value(_rdata(dns.rdatatype.A, "192.0.2.1")) == "192.0.2.1"
    assert _value(_rdata(dns.rdatatype.AAAA, "2001:DB8:0::1")) == "2001:db8::1"


# Update RRs that RFC 2136 section 3.4.1.2 calls a format error, encoded by hand (dnspython
# would not write some of them). Found by tests/fuzz/fuzz_rfc2136.py: an add of type ANY
# raised KeyError in the plan and was answered SERVFAIL with an ERROR in the log.


def _update_wire(rrtype: int, rrclass: int, ttl: int = 0, rdata: bytes = b"") -> bytes:
    header = struct.pack("!HHHHHH", 0x4242, 0x2800, 1, 0, 1, 0)  # opcode UPDATE
    zone = b"\x03dyn\x04test\x00" + struct.pack("!HH", dns.rdatatype.SOA, dns.rdataclass.IN)
    owner = b"\x04nas1\xc0\x0c"
    rr = owner + struct.pack("!HHIH", rrtype, rrclass, ttl, len(rdata)) + rdata
    return header + zone + rr


@pytest.mark.parametrize(
    ("rrtype", "rrclass", "rdata"),
    [
        (dns.rdatatype.ANY, dns.rdataclass.IN, b""),  # an add of type ANY
        (dns.rdatatype.ANY, 9471, b""),  # the fuzzer's: of no class at all
        (dns.rdatatype.TXT, dns.rdataclass.CH, b"\x01x"),  # an add of another class
        (dns.rdatatype.ANY, dns.rdataclass.NONE, b""),  # a delete of single RRs of type ANY
    ],
)
def test_update_rrs_rfc_2136_calls_format_errors_are_formerr(
    rrtype: int, rrclass: int, rdata: bytes
) -> None:
    zones = ZoneSet(Zone("dyn.test", SoaFields("ns1.dyn.test", "hostmaster.dyn.test"), ()))
    zones.add_device("nas1")
    store = ZoneStore(cast(Registry, object()), zones, Responder(zones))
    update = dns.message.from_wire(_update_wire(rrtype, rrclass, rdata=rdata), keyring=False)
    assert isinstance(update, dns.update.UpdateMessage)
    with pytest.raises(_Refusal) as refused:
        UpdateHandler(cast(Registry, object()), store)._plan(update, "nas1")
    assert refused.value.rcode == dns.rcode.FORMERR


def test_an_add_of_class_in_and_a_real_type_is_planned() -> None:
    zones = ZoneSet(Zone("dyn.test", SoaFields("ns1.dyn.test", "hostmaster.dyn.test"), ()))
    zones.add_device("nas1")
    store = ZoneStore(cast(Registry, object()), zones, Responder(zones))
    wire = _update_wire(dns.rdatatype.A, dns.rdataclass.IN, 60, b"\xc0\x00\x02\x01")
    update = dns.message.from_wire(wire, keyring=False)
    assert isinstance(update, dns.update.UpdateMessage)
    [change] = UpdateHandler(cast(Registry, object()), store)._plan(update, "nas1")
    assert (change.owner, change.rrtype, change.values) == ("nas1", "A", ("192.0.2.1",))


async def test_an_update_response_is_not_answered() -> None:
    # Found by tests/fuzz/fuzz_rfc2136.py: an UPDATE with QR set (a response) made
    # dnspython's make_response raise; a response must never be answered anyway.
    zones = ZoneSet(Zone("dyn.test", SoaFields("ns1.dyn.test", "hostmaster.dyn.test"), ()))
    store = ZoneStore(cast(Registry, object()), zones, Responder(zones))
    handler = UpdateHandler(cast(Registry, object()), store)
    assert await handler.handle(bytes.fromhex("3030aa610000000000000000"), "192.0.2.1", False) == []
