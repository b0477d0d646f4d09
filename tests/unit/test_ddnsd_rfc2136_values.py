"""RFC 2136 UPDATE values that the zone cannot store are refused as the client's mistake
(FORMERR), not failed as the server's (SERVFAIL). Found by tests/fuzz/fuzz_rfc2136.py."""

from __future__ import annotations

import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest

from ddnsd._rfc2136 import _Refusal, _value


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
