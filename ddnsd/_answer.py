"""Answers to DNS queries, from memory, with a cache of finished responses in wire format.

The fast path never parses a message: it walks the question's labels, builds a cache key
from the lower-cased name, type, class, RD/CD bits, EDNS size and DO bit and the transport,
and splices the query's own ID and question bytes into the cached response, so that the
question's letter case is echoed exactly (0x20). Everything else takes the slow path, which
parses with dnslib and applies every rule (RFC 1034, 2308, 6891, 8482, 8906). Sans-IO.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import socket
import time
from collections.abc import Iterable
from typing import Final

from dnslib import (
    EDNS0,
    QTYPE,
    RCODE,
    RR,
    DNSHeader,
    DNSLabel,
    DNSQuestion,
    DNSRecord,
    EDNSOption,
)
from dnslib.dns import RD

from ._zone import TYPE_CNAME, Zone, ZoneSet

__all__ = [
    "COOKIE_CLIENT",
    "COOKIE_NONE",
    "COOKIE_VALID",
    "Responder",
    "encodable",
    "header_only_reply",
    "question_reply",
    "servfail_reply",
]

OPCODE_QUERY: Final = 0
CLASS_IN: Final = 1
CLASS_ANY: Final = 255
TYPE_ANY: Final = QTYPE.ANY
TYPE_SOA: Final = QTYPE.SOA
TYPE_NS: Final = QTYPE.NS
TYPE_OPT: Final = QTYPE.OPT
TYPE_HINFO: Final = 13
TRANSFER_TYPES: Final = frozenset({QTYPE.AXFR, QTYPE.IXFR})
BADVERS: Final = 16
RCODE_SERVFAIL: Final = 2
RCODE_BADCOOKIE: Final = 23  # an extended rcode: 7 in the header, 1 in the OPT
MAX_LABEL_OCTETS: Final = 63  # RFC 1035 section 2.3.4
MAX_NAME_OCTETS: Final = 255
#: RFC 8482 section 4.2: the answer to ANY is one synthesized HINFO.
_RFC8482 = RD(b"\x07RFC8482\x00")
_EDNS_HEAD: Final = b"\x00\x00\x29"  # root owner name, type OPT
OPTION_NSID: Final = 3  # RFC 5001
OPTION_COOKIE: Final = 10  # RFC 7873
#: What `Responder.cookie` says of the last query: no cookie, a client cookie alone (or with
#: a server cookie that is not ours or too old), or a valid server cookie of ours.
COOKIE_NONE: Final = 0
COOKIE_CLIENT: Final = 1
COOKIE_VALID: Final = 2
_COOKIE_HEAD: Final = b"\x01\x00\x00\x00"  # RFC 9018 layout: version 1, reserved
_COOKIE_OPTION: Final = b"\x00\x0a\x00\x18"  # COOKIE, 8 + 16 octets
_COOKIE_BYTES: Final = 4 + 8 + 16  # what a server cookie adds to an answer
COOKIE_MAX_AGE_S: Final = 3600  # RFC 9018 section 4.3: older server cookies are not ours
COOKIE_MAX_AHEAD_S: Final = 300
COOKIE_RENEW_S: Final = 1800  # RFC 9018 section 4.3: a server cookie is renewed after this
_FLAG_NSID: Final = 0x01  # in the cache key's EDNS byte, beside DO (0x80)
_FLAG_COOKIE: Final = 0x02


def header_only_reply(query: bytes, rcode: int) -> bytes | None:
    """A reply with no sections, for a query whose header is all we could read."""
    if len(query) < 12 or query[2] & 0x80:
        return None
    flags = 0x80 | (query[2] & 0x79)  # QR, the query's opcode and RD
    return query[:2] + bytes([flags, rcode & 0x0F]) + b"\x00" * 8


def servfail_reply(query: bytes) -> bytes | None:
    """SERVFAIL for a query whose handling failed unexpectedly, or None (no header, or a
    response). Written by hand from the query's bytes, never by an encoder, so that it cannot
    fail on whatever made the handling fail: the header, and the first question echoed as it
    came when it is plainly encoded (no pointers, RFC 1035 sizes), else no question."""
    return question_reply(query, RCODE_SERVFAIL)


def question_reply(query: bytes, rcode: int) -> bytes | None:
    """A reply with `rcode` and the query's question (as `servfail_reply` writes it), for a
    request refused before it is parsed."""
    if len(query) < 12 or query[2] & 0x80:
        return None
    flags = bytes([0x80 | (query[2] & 0x79), rcode & 0x0F])  # QR, the opcode and RD
    end = _question_end(query)
    if end is None:
        return query[:2] + flags + b"\x00" * 8
    return query[:2] + flags + b"\x00\x01" + b"\x00" * 6 + query[12:end]


def _question_end(query: bytes) -> int | None:
    """Where the first question ends, if there is one written plainly (no compression)."""
    if query[4:6] == b"\x00\x00":
        return None
    pos = 12
    while pos < len(query) and query[pos] != 0:
        if query[pos] > MAX_LABEL_OCTETS:
            return None
        pos += query[pos] + 1
    end = pos + 5
    if end > len(query) or pos - 12 + 1 > MAX_NAME_OCTETS:
        return None
    return end


def encodable(labels: Iterable[bytes]) -> bool:
    """Whether a parsed name can be written again: dnslib reads labels of 64 octets and more
    and names past 255 octets, but raises when packing them (RFC 1035 section 2.3.4)."""
    total = 1
    for label in labels:
        if len(label) > MAX_LABEL_OCTETS:
            return False
        total += len(label) + 1
    return total <= MAX_NAME_OCTETS


class Responder:
    """Builds responses for the zones of a ZoneSet and caches them."""

    def __init__(
        self,
        zones: ZoneSet,
        *,
        edns_buffer_bytes: int = 1232,
        cache_entries: int = 200_000,
    ) -> None:
        self.zones = zones
        self.edns_buffer_bytes = edns_buffer_bytes
        self.cache_entries = cache_entries
        self._cache: dict[bytes, bytes] = {}
        # Exact query bytes (without the ID) -> response without the ID, and which exact
        # entries each normalised key produced, so both forget together.
        self._exact: dict[bytes, bytes] = {}
        self._exact_by_key: dict[bytes, list[bytes]] = {}
        self._keys_by_name: dict[str, set[bytes]] = {}
        self._keys_by_zone_serial: dict[str, set[bytes]] = {}
        self.hits = 0
        self.misses = 0
        self.nsid = b""  # RFC 5001: sent to a query that asks, if set
        self._cookie_secret: bytes | None = None
        #: (client cookie, client address) -> the server cookie last made for them, when
        self._issued: dict[tuple[bytes, str], tuple[bytes, int]] = {}
        self.cookie = COOKIE_NONE  # of the last query `respond` answered

    def configure(self, *, nsid: bytes = b"", cookies: bool = False) -> None:
        """The server's own EDNS options: its NSID, and whether it answers DNS cookies
        (RFC 7873), with a secret made now (so server cookies last until a restart)."""
        self.nsid = nsid
        self._cookie_secret = secrets.token_bytes(16) if cookies else None
        self._issued.clear()
        self.clear()

    # -- the fast path ---------------------------------------------------------------------

    def respond(self, query: bytes, tcp: bool = False, client: str = "") -> bytes | None:
        """The response to `query` from `client` (an IP address, for DNS cookies), or None
        if it deserves silence. `self.cookie` tells what cookie the query carried."""
        if type(query) is not bytes:
            query = bytes(query)
        self.cookie = 0  # COOKIE_NONE
        # The quickest hit: these exact bytes (but the ID) were answered before. Randomised
        # letter case makes every query new; those go on to the normalised key. Answers
        # with a server cookie are the client's own and never stored here.
        exact = query[2:] + (b"T" if tcp else b"U")
        hit = self._exact.get(exact)
        if hit is not None:
            self.hits += 1
            return query[:2] + hit
        found = self._key(query, tcp)
        if found is not None:
            key, end, cookie_at = found
            if cookie_at < 0:  # RFC 7873 section 5.2.2: a malformed COOKIE option
                return question_reply(query, RCODE.FORMERR)
            cached = self._cache.get(key)
            if cached is not None:
                self.hits += 1
                response = query[:2] + cached[2:12] + query[12:end] + cached[end:]
                if cookie_at:
                    return self._with_cookie(response, query, cookie_at, key, client)
                self._remember_exact(exact, response, key)
                return response
        self.misses += 1
        if found is None:
            return self._build(query, tcp)[0]
        # Build from the lower-cased question, so that what is cached does not depend on the
        # letter case of whichever query came first; then splice this query's question in.
        lowered = query[:12] + query[12:end].lower() + query[end:]
        template, cache_name, zone = self._build(lowered, tcp, key[-1])
        if template is None:
            return None
        if len(template) < end:  # a reply without the question (FORMERR): nothing to splice
            return query[:2] + template[2:]
        response = query[:2] + template[2:12] + query[12:end] + template[end:]
        if cache_name is not None:
            self._store(key, template, cache_name, zone)
            if not cookie_at:
                self._remember_exact(exact, response, key)
        if cookie_at:
            return self._with_cookie(response, query, cookie_at, key, client)
        return response

    # -- DNS cookies (RFC 7873, server cookies laid out as RFC 9018 says) -------------------

    def _server_cookie(self, client_cookie: bytes, client: str, stamp: bytes) -> bytes:
        assert self._cookie_secret is not None
        try:
            address = socket.inet_pton(socket.AF_INET6 if ":" in client else socket.AF_INET, client)
        except OSError:
            address = client.encode()
        digest = hashlib.blake2b(
            client_cookie + _COOKIE_HEAD + stamp + address,
            key=self._cookie_secret,
            digest_size=8,
        ).digest()
        return _COOKIE_HEAD + stamp + digest

    def _cookie_state(self, option: bytes, client: str, now: int) -> int:
        """COOKIE_VALID if `option` (client cookie, then server cookie) holds a server
        cookie we made for this client and client cookie within the last hour."""
        server = option[8:]
        if len(server) != 16 or server[:4] != _COOKIE_HEAD:
            return COOKIE_CLIENT
        made = int.from_bytes(server[4:8], "big")
        if not now - COOKIE_MAX_AGE_S <= made <= now + COOKIE_MAX_AHEAD_S:
            return COOKIE_CLIENT
        expected = self._server_cookie(option[:8], client, server[4:8])
        return COOKIE_VALID if hmac.compare_digest(expected, server) else COOKIE_CLIENT

    def _cookie_option(self, query: bytes, at: int, client: str) -> bytes:
        """The COOKIE option of our answer to the query whose option data starts at `at`,
        noting in `self.cookie` what the query's was. The server cookie made for a client
        and client cookie is given again for half an hour (RFC 9018 section 4.3 renews it
        after that), so that a client that sends it back costs no hashing."""
        option = query[at : at + (query[at - 2] << 8 | query[at - 1])]
        client_cookie = option[:8]
        now = int(time.time())
        slot = (client_cookie, client)
        issued = self._issued.get(slot)
        if issued is None or not 0 <= now - issued[1] < COOKIE_RENEW_S:
            stamp = (now % 2**32).to_bytes(4, "big")
            issued = (self._server_cookie(client_cookie, client, stamp), now)
            if len(self._issued) >= self.cache_entries:
                self._issued.clear()
            self._issued[slot] = issued
        received = option[8:]
        if received == issued[0]:
            self.cookie = COOKIE_VALID
        else:
            self.cookie = self._cookie_state(option, client, now) if received else COOKIE_CLIENT
        return _COOKIE_OPTION + client_cookie + issued[0]

    def _with_cookie(
        self, response: bytes, query: bytes, at: int, key: bytes, client: str
    ) -> bytes:
        """`response` with our COOKIE option added to its OPT, which is its last record."""
        opt_data = 4 + len(self.nsid) if key[-1] & _FLAG_NSID else 0
        rdlen_at = len(response) - opt_data - 2
        if rdlen_at < 21 or response[rdlen_at - 9 : rdlen_at - 6] != _EDNS_HEAD:
            return response  # no OPT where it belongs: send it as it is
        option = self._cookie_option(query, at, client)
        rdlen = (opt_data + len(option)).to_bytes(2, "big")
        return response[:rdlen_at] + rdlen + response[rdlen_at + 2 :] + option

    def badcookie(self, query: bytes, client: str) -> bytes | None:
        """BADCOOKIE with a fresh server cookie (RFC 7873 section 5.2.3), in place of the
        truncated answer RRL would send a client that has a client cookie but no valid
        server cookie: as short, and it gives the client what lifts RRL for it."""
        found = self._key(query, False)
        if found is None or found[2] <= 0:
            return None
        end, at = found[1], found[2]
        option = self._cookie_option(query, at, client)
        flags = bytes([0x80 | (query[2] & 0x79), RCODE_BADCOOKIE & 0x0F])
        return (
            query[:2]
            + flags
            + b"\x00\x01\x00\x00\x00\x00\x00\x01"
            + query[12:end]
            + _EDNS_HEAD
            + self.edns_buffer_bytes.to_bytes(2, "big")
            + bytes([RCODE_BADCOOKIE >> 4, 0, query[end + 7] & 0x80, 0])
            + len(option).to_bytes(2, "big")
            + option
        )

    def _key(self, query: bytes, tcp: bool) -> tuple[bytes, int, int] | None:
        """The cache key of a plain query, where its question ends and where its COOKIE
        option's data starts (0: none or cookies off; -1: malformed), or None for anything
        else (the slow path decides)."""
        size = len(query)
        if size < 17 or query[2] & 0xF8 or query[4:10] != b"\x00\x01\x00\x00\x00\x00":
            return None  # a response, another opcode, or not exactly one question
        arcount = query[10:12]
        pos = 12
        while True:
            length = query[pos]
            if length == 0:
                break
            if length > 63:
                return None  # compression or an invalid label in the question
            pos += length + 1
            if pos >= size:
                return None
        qend = pos + 5
        if qend > size or pos - 12 >= MAX_NAME_OCTETS:
            return None  # cut short, or a name too long to write back: the slow path refuses
        cookie_at = 0
        if arcount == b"\x00\x00":
            if qend != size:
                return None
            edns = b"-"
        elif arcount == b"\x00\x01":
            opt = query[qend:]
            if (
                len(opt) < 11
                or opt[:3] != _EDNS_HEAD
                or opt[6] != 0  # EDNS version other than 0: BADVERS on the slow path
                or len(opt) != 11 + int.from_bytes(opt[9:11], "big")
            ):
                return None
            options = opt[7] & 0x80
            if len(opt) > 11:
                # NSID and COOKIE are answered (when configured); other options are
                # ignored, as RFC 6891 lets a server do.
                at = 11
                stop = len(opt)
                while at < stop:
                    if at + 4 > stop:
                        return None
                    code = opt[at] << 8 | opt[at + 1]
                    length = opt[at + 2] << 8 | opt[at + 3]
                    at += 4
                    if at + length > stop:
                        return None
                    if code == OPTION_NSID and self.nsid:
                        options |= _FLAG_NSID
                    elif code == OPTION_COOKIE and self._cookie_secret is not None:
                        options |= _FLAG_COOKIE
                        well_formed = length == 8 or 16 <= length <= 40
                        cookie_at = qend + at if well_formed and cookie_at == 0 else -1
                    at += length
            edns = opt[3:5] + bytes([options])
        else:
            return None
        flags = bytes([query[2] & 0x01, query[3] & 0x10, 1 if tcp else 0])
        return query[12:pos].lower() + query[pos:qend] + flags + edns, qend, cookie_at

    def _remember_exact(self, exact: bytes, response: bytes, key: bytes) -> None:
        if len(self._exact) >= self.cache_entries:
            self._exact.clear()
            self._exact_by_key.clear()
        self._exact[exact] = response[2:]
        self._exact_by_key.setdefault(key, []).append(exact)

    def _store(self, key: bytes, response: bytes, name: str, zone: Zone | None) -> None:
        if len(self._cache) >= self.cache_entries:
            self.clear()
        self._cache[key] = response
        self._keys_by_name.setdefault(name, set()).add(key)
        if zone is not None:
            self._keys_by_zone_serial.setdefault(zone.origin, set()).add(key)

    def clear(self) -> None:
        self._cache.clear()
        self._exact.clear()
        self._exact_by_key.clear()
        self._keys_by_name.clear()
        self._keys_by_zone_serial.clear()

    def invalidate(self, names: Iterable[str], zones: Iterable[Zone] = ()) -> None:
        """Forget cached answers for these names (and everything under them), and every
        answer that carries the SOA of these zones (their serial changed)."""
        for name in names:
            name = name.lower()
            suffix = "." + name
            for cached_name in [n for n in self._keys_by_name if n == name or n.endswith(suffix)]:
                for key in self._keys_by_name.pop(cached_name):
                    self._forget(key)
        for zone in zones:
            for key in self._keys_by_zone_serial.pop(zone.origin, ()):
                self._forget(key)

    def _forget(self, key: bytes) -> None:
        self._cache.pop(key, None)
        for exact in self._exact_by_key.pop(key, ()):
            self._exact.pop(exact, None)

    # -- the slow path ---------------------------------------------------------------------

    def _build(
        self, query: bytes, tcp: bool, options: int = 0
    ) -> tuple[bytes | None, str | None, Zone | None]:
        """(response, name to cache it under or None, zone whose serial it shows or None).
        `options`: the cache key's EDNS byte (NSID asked, a COOKIE to be added after)."""
        if len(query) < 12 or query[2] & 0x80:
            return None, None, None  # not even a header, or a response: silence
        try:
            request = DNSRecord.parse(query)
        except Exception:  # dnslib raises many types on malformed input; all mean FORMERR
            return header_only_reply(query, RCODE.FORMERR), None, None
        header = request.header
        if header.opcode != OPCODE_QUERY:
            return header_only_reply(query, RCODE.NOTIMP), None, None
        opts = [rr for rr in request.ar if rr.rtype == TYPE_OPT]
        if len(request.questions) != 1 or len(opts) > 1 or request.rr or request.auth:
            return header_only_reply(query, RCODE.FORMERR), None, None
        edns = opts[0] if opts else None
        question = request.questions[0]
        if not encodable(question.qname.label):
            # The message is at fault, so FORMERR; the header alone, for a question that
            # cannot be echoed. (Other sections' names are read, never written back.)
            return header_only_reply(query, RCODE.FORMERR), None, None
        reply = DNSRecord(
            DNSHeader(id=header.id, qr=1, aa=1, ra=0, rd=header.rd, opcode=OPCODE_QUERY),
            q=DNSQuestion(question.qname, question.qtype, question.qclass),
        )
        reply.header.bitmap = (reply.header.bitmap & ~0x0010) | (header.bitmap & 0x0010)  # CD
        if edns is not None:
            version = (edns.ttl >> 16) & 0xFF
            do = bool(edns.ttl & 0x8000)
            nsid = [EDNSOption(OPTION_NSID, self.nsid)] if options & _FLAG_NSID else []
            reply.add_ar(
                EDNS0(
                    udp_len=self.edns_buffer_bytes,
                    flags="do" if do else "",
                    version=0,
                    opts=nsid,
                )
            )
            if version != 0:
                reply.header.aa = 0
                reply.ar[0].ttl |= (BADVERS >> 4) << 24  # the extended rcode's upper bits
                return bytes(reply.pack()), None, None
        name = str(question.qname).lower().rstrip(".")
        if question.qclass not in (CLASS_IN, CLASS_ANY):
            reply.header.aa = 0
            reply.header.rcode = RCODE.REFUSED
            return bytes(reply.pack()), None, None
        found = self.zones.find(name)
        if found is None:
            reply.header.aa = 0
            reply.header.rcode = RCODE.REFUSED
            return bytes(reply.pack()), None, None
        zone, relative = found
        if question.qclass == CLASS_ANY:
            # Authoritative for class IN only: an answer to class ANY is never
            # authoritative (RFC 6895: no server holds every class).
            reply.header.aa = 0
        if question.qtype in TRANSFER_TYPES:
            # Transfers run over TCP in their own handler; here they are not implemented.
            reply.header.rcode = RCODE.NOTIMP
            return bytes(reply.pack()), None, None
        serial_zone, chased = self._fill(reply, zone, relative, question.qname, question.qtype)
        # An answer that followed a CNAME into another name is not cached: a change there
        # would not find it under this name.
        room = _COOKIE_BYTES if options & _FLAG_COOKIE else 0
        return self._fit(reply, edns, tcp, room), None if chased else name, serial_zone

    def _fill(
        self, reply: DNSRecord, zone: Zone, relative: str, owner: DNSLabel, qtype: int
    ) -> tuple[Zone | None, bool]:
        """Put the answer in `reply`: the zone whose SOA it shows (or None), and whether it
        followed a CNAME."""
        serial_zone = self._fill_name(reply, zone, relative, owner, qtype)
        if not isinstance(serial_zone, DNSLabel):
            return serial_zone, False
        # A CNAME (the link zone's challenge names): its target, when it is ours, answers in
        # the same response (RFC 1034 4.3.2), its rcode the reply's (RFC 6604).
        found = self.zones.find(str(serial_zone).rstrip("."))
        if found is None:
            return None, True
        target_zone, target = found
        last = self._fill_name(reply, target_zone, target, serial_zone, qtype)
        return (None if isinstance(last, DNSLabel) else last), True

    def _fill_name(
        self, reply: DNSRecord, zone: Zone, relative: str, owner: DNSLabel, qtype: int
    ) -> Zone | DNSLabel | None:
        """The records of one name: the zone if the answer shows its SOA; the target if the
        name is a CNAME (and `qtype` is not CNAME), which `_fill` follows once."""
        if relative == "":
            if qtype == TYPE_SOA:
                reply.add_answer(zone.soa_rr(owner))
                return zone
            if qtype == TYPE_NS:
                for rr in zone.ns_rrs():
                    rr.rname = owner
                    reply.add_answer(rr)
                # The addresses of those inside our zones, as additional data (RFC 9471).
                for ns in zone.nameservers:
                    glue = self.zones.nameserver_rrsets.get(ns.rstrip("."), {})
                    for rrtype, addresses in glue.items():
                        for rdata in addresses.rdata:
                            reply.add_ar(RR(DNSLabel(ns), rrtype, rdata=rdata, ttl=addresses.ttl))
                return None
            if qtype == TYPE_ANY:
                reply.add_answer(RR(owner, TYPE_HINFO, rdata=_RFC8482, ttl=zone.apex_ttl))
                return None
        lookup = zone.lookup(relative)
        if not lookup.exists:
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(zone.soa_rr())
            return zone
        if qtype == TYPE_ANY:
            reply.add_answer(RR(owner, TYPE_HINFO, rdata=_RFC8482, ttl=zone.soa.minimum))
            return None
        rrset = lookup.rrsets.get(qtype)
        alias = lookup.rrsets.get(TYPE_CNAME)
        if rrset is None and alias is not None:
            [target] = alias.rdata
            reply.add_answer(RR(owner, TYPE_CNAME, rdata=target, ttl=alias.ttl))
            return DNSLabel(str(target.label))
        if rrset is None:
            reply.add_auth(zone.soa_rr())  # NODATA (RFC 2308): NOERROR, SOA in authority
            return zone
        for rdata in rrset.rdata:
            reply.add_answer(RR(owner, qtype, rdata=rdata, ttl=rrset.ttl))
        return None

    def _fit(self, reply: DNSRecord, edns: RR | None, tcp: bool, room: int = 0) -> bytes:
        """Pack, truncating for UDP: TC set, the question (and OPT) kept, records dropped;
        `room`: octets to leave for what is added after (a server cookie)."""
        if reply.ar and reply.ar[0].rtype == TYPE_OPT:
            reply.ar.append(reply.ar.pop(0))  # the OPT last, where the fast path finds it
        packed: bytes = bytes(reply.pack())
        if tcp:
            return packed
        limit = 512
        if edns is not None:
            limit = max(512, min(edns.rclass, self.edns_buffer_bytes))
        if len(packed) + room <= limit:
            return packed
        reply.rr = []
        reply.auth = []
        reply.ar = [rr for rr in reply.ar if rr.rtype == TYPE_OPT]
        reply.header.tc = 1
        truncated: bytes = bytes(reply.pack())
        return truncated
