"""Zone transfers to secondaries (AXFR, RFC 5936; IXFR, RFC 1995) and NOTIFY (RFC 1996).

Transfers are allowed to listed networks only, and, when a transfer key is configured, only
under TSIG; IXFR answers from the in-memory journal and falls back to a whole zone when the
journal does not reach back far enough. NOTIFY goes to every configured secondary after each
change and is repeated until acknowledged.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig
import trio

from config import HostPort
from service import Boundary

from ._answer import header_only_reply, question_reply
from ._rfc2136 import tsig_error_reply
from ._zone import JournalEntry, Zone, ZoneSet

__all__ = ["Notifier", "Transfers", "load_key"]

log = logging.getLogger("ddnsd.xfr")

RRS_PER_MESSAGE: Final = 500
NOTIFY_TRIES: Final = 5
NOTIFY_RETRY_S: Final = 2.0


def _txt(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _rrset(name: str, rrtype: int, ttl: int, values: Iterable[str]) -> dns.rrset.RRset:
    texts = [_txt(v) if rrtype == dns.rdatatype.TXT else v for v in values]
    return dns.rrset.from_text_list(
        dns.name.from_text(name), ttl, dns.rdataclass.IN, dns.rdatatype.RdataType(rrtype), texts
    )


def _soa(zone: Zone, serial: int | None = None) -> dns.rrset.RRset:
    soa = zone.soa
    text = (
        f"{soa.mname}. {soa.rname}. {zone.serial if serial is None else serial} "
        f"{soa.refresh} {soa.retry} {soa.expire} {soa.minimum}"
    )
    return _rrset(zone.origin, dns.rdatatype.SOA, soa.minimum, [text])


def _whole_zone(zone: Zone) -> Iterator[dns.rrset.RRset]:
    yield _rrset(zone.origin, dns.rdatatype.NS, zone.apex_ttl, [f"{n}." for n in zone.nameservers])
    for relative in sorted(zone.nodes):
        for rrtype, rrset in sorted(zone.nodes[relative].items()):
            yield _rrset(zone.absolute(relative), rrtype, rrset.ttl, rrset.values)


def _journal_rrs(zone: Zone, entries: list[JournalEntry]) -> Iterator[dns.rrset.RRset]:
    for entry in entries:
        yield _soa(zone, entry.old_serial)
        for relative, rrtype, ttl, value in entry.removed:
            yield _rrset(zone.absolute(relative), rrtype, ttl, [value])
        yield _soa(zone, entry.new_serial)
        for relative, rrtype, ttl, value in entry.added:
            yield _rrset(zone.absolute(relative), rrtype, ttl, [value])


def in_networks(
    client: str, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> bool:
    """Whether a client's address (a mapped IPv4 read as IPv4, a zone index dropped) is in
    one of `networks`: the transfer allow list, DynDNS2's trusted proxies."""
    try:
        address = ipaddress.ip_address(client.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


class Transfers:
    def __init__(self, zones: ZoneSet, allow: tuple[str, ...], key: dns.tsig.Key | None) -> None:
        self.zones = zones
        self.networks = [ipaddress.ip_network(a, strict=False) for a in allow]
        self.key = key
        #: Requests by outcome: axfr; ixfr (from the journal), ixfr_whole (the whole zone:
        #: not in the journal), ixfr_current (up to date); soa (a signed SOA query); refused
        #: (the address, or AXFR not on TCP); notauth (TSIG missing or wrong); ixfr_udp (an
        #: IXFR over UDP, answered with the current SOA).
        self.counts: dict[str, int] = {}

    def _count(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    async def handle(self, message: bytes, client: str, tcp: bool) -> list[bytes]:
        """AXFR and IXFR, on TCP only; and a secondary's signed SOA query (its refresh
        check, before it asks for a transfer) on either transport, answered signed as
        RFC 8945 section 5.3 requires, which the query path does not do."""
        await trio.lowlevel.checkpoint()
        if not in_networks(client, self.networks):
            self._count("refused")
            reply = question_reply(message, dns.rcode.REFUSED)
            return [reply] if reply else []
        keyring = {self.key.name: self.key} if self.key is not None else False
        try:
            query = dns.message.from_wire(message, keyring=keyring)
        except Exception as error:  # a TSIG that does not verify, or malformed
            return self._unread(message, error)
        if self.key is not None and not query.had_tsig:
            self._count("notauth")
            return [self._reply(query, dns.rcode.NOTAUTH)]
        if len(query.question) != 1:
            return [self._reply(query, dns.rcode.FORMERR)]
        question = query.question[0]
        zone = next(
            (z for z in self.zones.zones if dns.name.from_text(z.origin) == question.name), None
        )
        if zone is None:
            return [self._reply(query, dns.rcode.NOTAUTH)]
        if question.rdtype == dns.rdatatype.SOA:
            self._count("soa")
            return self._messages(query, [_soa(zone)], multi=False)
        if not tcp and question.rdtype == dns.rdatatype.IXFR:
            # RFC 1995 section 2: over UDP, the current SOA; a secondary behind it asks again
            # over TCP.
            self._count("ixfr_udp")
            return self._messages(query, [_soa(zone)], multi=False)
        if not tcp or question.rdtype not in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
            self._count("refused")
            return [self._reply(query, dns.rcode.REFUSED)]
        if question.rdtype == dns.rdatatype.IXFR:
            rrsets = self._ixfr(zone, query)
        else:
            rrsets = [_soa(zone), *_whole_zone(zone), _soa(zone)]
            self._count("axfr")
            log.info("AXFR of %s at serial %d to a secondary", zone.origin, zone.serial)
        return self._messages(query, rrsets)

    def _unread(self, message: bytes, error: Exception) -> list[bytes]:
        """The reply to a request dnspython would not read: a TSIG error (RFC 8945 section
        5.2) when the TSIG is what failed, else FORMERR."""
        if isinstance(error, dns.tsig.BadTime | dns.tsig.BadSignature | dns.tsig.PeerError):
            code, key = (
                (dns.rcode.BADTIME, self.key)
                if isinstance(error, dns.tsig.BadTime)
                else (dns.rcode.BADSIG, None)
            )
        elif isinstance(
            error, dns.message.UnknownTSIGKey | dns.tsig.BadKey | dns.tsig.BadAlgorithm
        ):
            code, key = dns.rcode.BADKEY, None
        else:
            reply = header_only_reply(message, dns.rcode.FORMERR)
            return [reply] if reply else []
        self._count("notauth")
        try:
            unverified = dns.message.from_wire(message, keyring=False)
            return [tsig_error_reply(unverified, code, key)]
        except Exception:  # readable only with the key: answer what the header allows
            reply = header_only_reply(message, dns.rcode.NOTAUTH)
            return [reply] if reply else []

    def _ixfr(self, zone: Zone, query: dns.message.Message) -> list[dns.rrset.RRset]:
        """RFC 1995: the journal's steps from the secondary's serial to ours; one SOA if it
        is up to date; the whole zone (AXFR-style, section 4) when the journal does not
        reach back to its serial (too far behind, or from before our start)."""
        theirs = next(
            (rr[0].serial for rr in query.authority if rr.rdtype == dns.rdatatype.SOA), None
        )
        if theirs == zone.serial:
            self._count("ixfr_current")
            log.info("IXFR of %s: the secondary has serial %d already", zone.origin, theirs)
            return [_soa(zone)]
        entries = list(zone.journal)
        start = next((i for i, e in enumerate(entries) if e.old_serial == theirs), None)
        if theirs is None or start is None or entries[-1].new_serial != zone.serial:
            self._count("ixfr_whole")
            log.info(
                "IXFR of %s from serial %s: not in the journal, the whole zone at serial %d",
                zone.origin,
                theirs,
                zone.serial,
            )
            return [_soa(zone), *_whole_zone(zone), _soa(zone)]
        self._count("ixfr")
        log.info(
            "IXFR of %s from serial %d to %d: %d steps from the journal",
            zone.origin,
            theirs,
            zone.serial,
            len(entries) - start,
        )
        return [_soa(zone), *_journal_rrs(zone, entries[start:]), _soa(zone)]

    def _reply(self, query: dns.message.Message, rcode: dns.rcode.Rcode) -> bytes:
        response = dns.message.make_response(query)
        response.set_rcode(rcode)
        wire: bytes = response.to_wire()
        return wire

    def _messages(
        self, query: dns.message.Message, rrsets: list[dns.rrset.RRset], *, multi: bool = True
    ) -> list[bytes]:
        out: list[bytes] = []
        context = None
        for start in range(0, len(rrsets), RRS_PER_MESSAGE):
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            response.answer = rrsets[start : start + RRS_PER_MESSAGE]
            out.append(response.to_wire(multi=multi, tsig_ctx=context, max_size=65535))
            context = response.tsig_ctx
        return out


class Notifier:
    """Tells secondaries that a zone's serial changed, until each one acknowledges."""

    def __init__(
        self,
        zones: ZoneSet,
        targets: tuple[HostPort, ...],
        key: dns.tsig.Key | None,
        boundary: Boundary,
        sources: tuple[str, ...] = (),
    ) -> None:
        self.zones = zones
        self.targets = targets
        self.key = key
        self.boundary = boundary
        #: Addresses to send from, one per family used (`notify_sources`): a secondary's
        #: ACL knows the primary by the address it serves on, not whichever the route picks.
        self.sources = sources
        self._wake = trio.Event()
        self._notified: dict[tuple[str, HostPort], int] = {}
        self._busy: set[tuple[str, HostPort]] = set()
        self.sent = 0
        self.acknowledged = 0

    def changed(self) -> None:
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            while self.targets:
                for zone in self.zones.zones:
                    for target in self.targets:
                        key = (zone.origin, target)
                        if self._notified.get(key) != zone.serial and key not in self._busy:
                            self._busy.add(key)
                            nursery.start_soon(self._notify, zone, target)
                await self._wake.wait()
                self._wake = trio.Event()
                await trio.sleep(0.05)  # let a burst of updates settle into one NOTIFY

    async def _notify(self, zone: Zone, target: HostPort) -> None:
        """NOTIFY one secondary until it acknowledges the zone's current serial; a slow or
        absent secondary holds up no other. One round is one unit of work: a failure ends
        it alone, and the next change starts another."""
        key = (zone.origin, target)
        v6 = ":" in target.host
        family = trio.socket.AF_INET6 if v6 else trio.socket.AF_INET
        source = next((a for a in self.sources if (":" in a) == v6), None)
        try:
            with trio.socket.socket(family, trio.socket.SOCK_DGRAM) as sock:
                if source is not None:
                    await sock.bind((source, 0))
                await sock.connect((target.host, target.port))
                tries = 0
                while self._notified.get(key) != zone.serial and tries < NOTIFY_TRIES:
                    serial = zone.serial
                    if await self._send_once(sock, zone, serial):
                        self._notified[key] = serial
                        tries = 0
                    else:
                        tries += 1
                if self._notified.get(key) != zone.serial:
                    log.warning("no answer to NOTIFY for %s from a secondary", zone.origin)
        except Exception:
            self.boundary.failed("dns_notify")
        finally:
            self._busy.discard(key)

    async def _send_once(self, sock: trio.socket.SocketType, zone: Zone, serial: int) -> bool:
        message = dns.message.make_query(zone.origin, dns.rdatatype.SOA)
        message.flags = dns.flags.AA  # before the opcode, which lives in the same field
        message.set_opcode(dns.opcode.NOTIFY)
        message.answer.append(_soa(zone, serial))
        if self.key is not None:
            message.use_tsig({self.key.name: self.key}, keyname=self.key.name)
        wire = message.to_wire()
        self.sent += 1
        try:
            await sock.send(wire)
        except OSError:
            pass
        with trio.move_on_after(NOTIFY_RETRY_S):
            while True:
                try:
                    reply = await sock.recv(4096)
                except OSError:
                    await trio.sleep(NOTIFY_RETRY_S)  # ICMP port unreachable: wait it out
                    return False
                # Anything shorter than a header is not a reply (and must not be indexed).
                if (
                    len(reply) >= 12
                    and reply[:2] == wire[:2]
                    and reply[2] & 0x80
                    and reply[2] & 0x78 == 0x20
                ):
                    self.acknowledged += 1
                    return True
        return False


def load_key(name: str | None, secret_file: Path | None) -> dns.tsig.Key | None:
    """The transfer key: an HMAC-SHA256 secret, base64 in a file of its own."""
    if name is None or secret_file is None:
        return None
    secret = base64.b64decode(secret_file.read_text(encoding="ascii").strip(), validate=True)
    return dns.tsig.Key(name, secret, dns.tsig.HMAC_SHA256)
