"""What every DNS target shares: the zones it asks, and what a reply must look like.

The zones are the unit tests' (tests/unit/test_ddnsd_answer.py), so that fuzzing reaches
the same names, devices and relay sites the tests know.
"""

from __future__ import annotations

import dns.exception
import dns.message

from tests.unit.test_ddnsd_answer import make_zones

ZONES = make_zones()  # respond() reads the zones and never changes them


def check_reply(query: bytes, reply: bytes | None) -> None:
    """A reply carries the query's ID, is a response, and is a DNS message dnspython reads."""
    if reply is None:
        return
    assert len(reply) >= 12 and reply[:2] == query[:2], (query, reply)
    assert reply[2] & 0x80, reply  # a response, never a query
    try:
        # keyring=False: a signed reply (to an UPDATE) is read, its MAC not checked.
        dns.message.from_wire(reply, keyring=False, one_rr_per_rrset=True)
    except dns.exception.DNSException as exc:
        raise AssertionError(f"malformed reply {reply!r} to {query!r}: {exc!r}") from exc
