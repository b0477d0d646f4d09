"""ddnsd's per-message entry points under structured hostile messages, built byte by byte.

dnspython and dnslib refuse to encode what an attacker sends (64-octet labels, names past 255
octets, lying counts, pointer loops), so the strategy below writes the wire format by hand.
The property: `Responder.respond` and `DnsServer.tcp_replies` never raise, and answer with
silence or a response carrying the query's ID.
"""

from __future__ import annotations

import struct

import trio
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ddnsd._answer import Responder
from ddnsd._rrl import RateLimiter
from ddnsd._server import DnsServer
from service import Boundary
from tests.unit.test_ddnsd_answer import make_zones

HEADER = struct.Struct("!HHHHHH")
#: Suffixes that make a name land in a served zone (and so reach the code that answers).
SUFFIXES = (b"", b"\x03dyn\x04test", b"\x04nas1\x03dyn\x04test", b"\x04link\x04test", b"\x04test")
QTYPES = st.one_of(
    st.sampled_from([1, 2, 6, 16, 28, 41, 251, 252, 255, 65535]), st.integers(0, 65535)
)
QCLASSES = st.one_of(st.sampled_from([1, 3, 254, 255]), st.integers(0, 65535))

# The two concrete messages that stopped ddnsd (82 bytes and 273 bytes): a 64-octet label,
# and a name of 128 one-letter labels (257 octets). dnslib parses both and cannot pack them.
LONG_LABEL = HEADER.pack(0x1234, 0x0100, 1, 0, 0, 0) + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01"
LONG_NAME = HEADER.pack(0x1234, 0x0100, 1, 0, 0, 0) + b"\x01a" * 128 + b"\x00\x00\x01\x00\x01"


LETTERS = st.sampled_from([b"a"] * 4 + [b"A", b"-", b"\x00", b"."])
BAD_LETTER = st.sampled_from([b"\xff"] + [b""] * 15)  # not UTF-8: dnslib refuses it
FEW_SIZES = st.lists(st.integers(0, 70), max_size=6)  # 0 ends the name early
ENDS = st.sampled_from(["root"] * 6 + ["back", "self", "forward", "any", "none"])
OPCODES = st.sampled_from([0, 0, 0, 0, 1, 2, 4, 5, 15])
FLAGS = st.one_of(st.just(0x0100), st.just(0x0110), st.integers(0, 0xFFFF))
QUESTIONS = st.sampled_from([1, 1, 1, 0, 2, 3])
RECORDS = st.sampled_from([0, 0, 0, 1, 2])
RAW_TYPES = st.sampled_from([65280] * 4 + [1, 16])  # mostly data dnslib keeps raw
OPTION_CODES = st.one_of(st.sampled_from([3, 8, 10, 12, 15]), st.integers(0, 65535))
UDP_SIZES = st.sampled_from([0, 512, 1232, 4096, 65535])
OPT_TTLS = st.sampled_from([0, 0x8000, 0x00010000, 0x01000000])
SMALL_DATA = st.binary(max_size=30)


def _length(draw: st.DrawFn, data: bytes) -> int:
    """The length a record or option claims: mostly true, sometimes a lie."""
    return draw(st.sampled_from([len(data)] * 3 + [len(data) + 1, 65535]))


@st.composite
def labels(draw: st.DrawFn) -> bytes:
    """The labels of a name, without its end: a few of any size 0-70, or many short ones
    that carry the name past 255 octets."""
    if draw(st.booleans()):
        sizes = draw(FEW_SIZES)
    else:
        sizes = [draw(st.integers(1, 3))] * draw(st.integers(60, 140))
    letter = draw(LETTERS)
    wire = b"".join(bytes([size]) + letter * size for size in sizes)
    bad = draw(BAD_LETTER)
    if bad and sizes and sizes[0]:
        wire = wire[:1] + bad + wire[2:]
    return wire


@st.composite
def name(draw: st.DrawFn, at: int) -> bytes:
    """A name written at offset `at`: labels, a zone suffix (the served zones' among them),
    and an end that is the root, a compression pointer (back to the first name, to itself,
    forward, anywhere) or missing."""
    body = draw(labels()) + draw(st.sampled_from(SUFFIXES))
    end = draw(ENDS)
    if end == "root":
        return body + b"\x00"
    if end == "none":
        return body
    if end == "back":
        target = 12
    elif end == "self":
        target = at + len(body)
    elif end == "forward":
        target = at + len(body) + 2 + draw(st.integers(0, 40))
    else:
        target = draw(st.integers(0, 0x3FFF))
    return body + struct.pack("!H", 0xC000 | (target & 0x3FFF))


@st.composite
def edns_rdata(draw: st.DrawFn) -> bytes:
    """EDNS options (cookie, NSID, padding, anything), whose lengths may lie."""
    out = b""
    for _ in range(draw(st.integers(0, 3))):
        data = draw(SMALL_DATA)
        out += struct.pack("!HH", draw(OPTION_CODES), _length(draw, data)) + data
    return out


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """A header with any opcode and flags, then the four sections: questions, records with
    names like the questions', OPT records with options; counts that are mostly true (so
    that parsing goes on to the answer), sometimes lies, and sometimes a cut-off end."""
    ident = draw(st.integers(0, 0xFFFF))
    flags = (draw(FLAGS) & ~0x7800) | (draw(OPCODES) << 11)
    if draw(st.booleans()):
        flags &= ~0x8000  # mostly queries: responses are dropped before any parsing
    lie = draw(st.integers(0, 3)) == 0
    wire = b""
    counts = []
    at = HEADER.size
    for section in range(4):
        written = draw(QUESTIONS if section == 0 else RECORDS)
        for _ in range(written):
            if section == 3 and draw(st.booleans()):
                rdata = draw(edns_rdata())
                fixed = struct.pack("!HHI", 41, draw(UDP_SIZES), draw(OPT_TTLS))
                rr = b"\x00" + fixed + struct.pack("!H", len(rdata)) + rdata
            else:
                rr = draw(name(at))
                rr += struct.pack(
                    "!HH", draw(QTYPES if section == 0 else RAW_TYPES), draw(QCLASSES)
                )
                if section:
                    rdata = draw(SMALL_DATA)
                    ttl = draw(st.integers(0, 2**32 - 1))
                    rr += struct.pack("!IH", ttl, _length(draw, rdata)) + rdata
            wire += rr
            at += len(rr)
        counts.append(draw(st.integers(0, 65535)) if lie and draw(st.booleans()) else written)
    if draw(st.integers(0, 4)) == 0:
        wire = wire[: draw(st.integers(0, len(wire)))]
    return HEADER.pack(ident, flags, *counts) + wire


def check(query: bytes, response: bytes | None) -> None:
    if response is not None:
        assert len(response) >= 12 and response[:2] == query[:2]
        assert response[2] & 0x80  # a response, never a query


@settings(max_examples=1500, deadline=None)
@given(messages())
@example(LONG_LABEL)
@example(LONG_NAME)
def test_structured_messages_never_raise_and_keep_their_id(query: bytes) -> None:
    responder = Responder(make_zones())
    check(query, responder.respond(query))
    check(query, responder.respond(query))  # again: perhaps from the cache now
    check(query, responder.respond(query, tcp=True))


def test_names_that_cannot_be_encoded_are_formerr() -> None:
    responder = Responder(make_zones())
    for query in (LONG_LABEL, LONG_NAME, LONG_NAME[:12] + b"\x01A" * 128 + LONG_NAME[268:]):
        for tcp in (False, True):
            response = responder.respond(query, tcp=tcp)
            assert response is not None
            # The header alone: a question that cannot be encoded is not echoed.
            assert response == b"\x12\x34\x81\x01" + b"\x00" * 8, (query, tcp)


async def _no_handler(message: bytes, client: str, tcp: bool) -> list[bytes]:
    await trio.lowlevel.checkpoint()
    return []


@settings(max_examples=300, deadline=None)
@given(messages())
@example(LONG_LABEL)
@example(LONG_NAME)
def test_the_tcp_entry_point_never_raises(query: bytes) -> None:
    boundary = Boundary()
    server = DnsServer(
        Responder(make_zones()),
        RateLimiter(0),
        boundary,
        updates=_no_handler,
        transfers=_no_handler,
    )
    for reply in trio.run(server.tcp_replies, query, "192.0.2.1"):
        check(query, reply)
    assert not boundary.errors  # nothing in the answer path raised
