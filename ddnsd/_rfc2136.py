"""RFC 2136 UPDATE signed with TSIG (RFC 8945), for nsupdate and ACME DNS-01 clients.

TSIG parsing and signing are dnspython's; the error replies of RFC 8945 section 5.2 are built
here (transfers use them too). Each device has its own keys, and a key may change only its
device's names, as BIND's `update-policy self` allows: A, AAAA and TXT at `<device>.<zone>`,
and TXT at `_acme-challenge.<device>.<zone>`. Unsigned updates are refused.

An UPDATE of the link zone may set `_acme-challenge.<device>.<link zone>` only: that name is a
CNAME to the device zone's, so the change is made there (an ACME client that does not follow
CNAMEs, such as certbot's RFC 2136 plugin, updates the name it was given). Nothing else of the
link zone, which is derived from the devices, can be changed.
"""

from __future__ import annotations

import logging
import struct
import time
from typing import Final, cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.rrset
import dns.tsig
import dns.update

from protocol import canonical_address
from registry import AccessLogWriter, Registry, RegistryFull, RegistryGone

from ._answer import header_only_reply
from ._store import FeatureOff, ZoneStore
from ._zone import Change, ZoneSet

__all__ = ["UpdateHandler", "tsig_error_reply"]

log = logging.getLogger("ddnsd.update")

_TYPES: Final = {dns.rdatatype.A: "A", dns.rdatatype.AAAA: "AAAA", dns.rdatatype.TXT: "TXT"}
_ALGORITHMS: Final = {
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
}
ACME: Final = "_acme-challenge."


def tsig_error_reply(
    request: dns.message.Message, error: int, key: dns.tsig.Key | None = None
) -> bytes:
    """NOTAUTH carrying a TSIG error (RFC 8945 section 5.2), for a request read with
    `keyring=False`. BADKEY and BADSIG go unsigned, with an empty MAC (section 5.3.2: the
    client cannot verify what failed to verify); BADTIME is signed with the request's key,
    `key`, keeps the request's Time Signed and gives our clock in Other Data, so that a
    client can see by how much the clocks differ."""
    assert request.tsig is not None and request.keyname is not None
    theirs = cast(dns.rdtypes.ANY.TSIG.TSIG, request.tsig[0])
    response = dns.message.make_response(request)  # no keyring: no TSIG of its own
    response.set_rcode(dns.rcode.NOTAUTH)
    other = b""
    if error == dns.rcode.BADTIME:
        now = int(time.time())
        other = struct.pack("!HI", (now >> 32) & 0xFFFF, now & 0xFFFFFFFF)
    tsig = theirs.replace(mac=b"", error=error, other=other)
    if key is not None:
        unsigned: bytes = response.to_wire()
        # dnspython's own signing puts the time of now in Time Signed; this keeps theirs.
        tsig, _ = dns.tsig.sign(  # type: ignore[no-untyped-call]  # dnspython leaves it untyped
            unsigned, key, tsig, theirs.time_signed, theirs.mac
        )
    response.tsig = dns.rrset.from_rdata(request.keyname, 0, tsig)
    wire: bytes = response.to_wire()
    return wire


class _Refusal(Exception):
    def __init__(self, rcode: dns.rcode.Rcode, why: str) -> None:
        super().__init__(why)
        self.rcode = rcode


def _value(rdata: object) -> str:
    if hasattr(rdata, "strings"):
        text = b"".join(rdata.strings)
        if len(text) > 255:
            raise _Refusal(dns.rcode.REFUSED, "TXT values are at most 255 bytes")
        return text.decode("utf-8", "replace")
    # An A or AAAA value as the zone stores it: canonical text of its own family. Empty
    # rdata (dnspython's generic "\\# 0") and IPv4-mapped IPv6 addresses are not, and the
    # zone would refuse them only when writing, as SERVFAIL.
    found = canonical_address(str(rdata))
    rdtype = getattr(rdata, "rdtype", None)
    if found is None or found[0] != (4 if rdtype == dns.rdatatype.A else 6):
        raise _Refusal(dns.rcode.FORMERR, f"{str(rdata)[:60]!r} is not an address of its type")
    return found[1]


class UpdateHandler:
    def __init__(self, registry: Registry, store: ZoneStore) -> None:
        self.registry = registry
        self.store = store
        self.zone = dns.name.from_text(store.zones.device_zone.origin)
        link = store.zones.link_zone
        self.link_zone = dns.name.from_text(link.origin) if link is not None else None
        self.counts: dict[str, int] = {}
        #: Where signed updates are recorded (device, full client address, outcome), if kept.
        self.access_log: AccessLogWriter | None = None

    async def handle(self, message: bytes, client: str, tcp: bool) -> list[bytes]:
        try:
            unverified = dns.message.from_wire(message, keyring=False)
        except Exception:  # dnspython raises many types on malformed input
            return self._header_only(message, dns.rcode.FORMERR)
        if unverified.flags & dns.flags.QR:
            return []  # a response is never answered (the server drops them before, too)
        if not isinstance(unverified, dns.update.UpdateMessage):
            return self._header_only(message, dns.rcode.FORMERR)
        if not unverified.had_tsig:
            self._count("refused-unsigned")
            return [self._reply(unverified, dns.rcode.REFUSED)]
        found = await self._key(unverified.keyname, unverified.keyalgorithm)
        if found is None:
            log.warning("UPDATE with an unknown TSIG key")
            self._count("badkey")
            return [tsig_error_reply(unverified, dns.rcode.BADKEY)]
        key, device = found
        started = time.time()
        replies, outcome = await self._verified(message, unverified, key, device)
        if self.access_log is not None:
            sent = sum(len(reply) for reply in replies)
            self.access_log.add(started, device, client, "rfc2136", len(message), sent, outcome)
        return replies

    async def _verified(
        self,
        message: bytes,
        unverified: dns.message.Message,
        key: dns.tsig.Key,
        device: str,
    ) -> tuple[list[bytes], str]:
        """The replies to a signed UPDATE whose key belongs to `device`, and its outcome."""
        try:
            update = dns.message.from_wire(message, keyring={key.name: key})
        except dns.tsig.BadTime:  # raised only once the signature verified
            log.warning("UPDATE for %s outside the TSIG time window", device)
            self._count("badtime")
            return [tsig_error_reply(unverified, dns.rcode.BADTIME, key)], "badtime"
        except (dns.tsig.BadSignature, dns.tsig.PeerError):
            log.warning("UPDATE for %s with a bad TSIG signature", device)
            self._count("badsig")
            return [tsig_error_reply(unverified, dns.rcode.BADSIG)], "badsig"
        except dns.exception.DNSException:
            return self._header_only(message, dns.rcode.FORMERR), "formerr"
        assert isinstance(update, dns.update.UpdateMessage)
        try:
            changes = self._plan(update, device)
            if changes:
                try:
                    await self.store.update(device, changes)
                except FeatureOff as off:  # its owner turned DDNS off in the portal
                    raise _Refusal(dns.rcode.REFUSED, str(off)) from None
        except _Refusal as refusal:
            log.info("UPDATE for %s refused: %s", device, refusal)
            outcome = dns.rcode.to_text(refusal.rcode).lower()
            self._count(outcome)
            return [self._reply(update, refusal.rcode)], outcome
        except (RegistryFull, RegistryGone) as exc:  # one line: expected, not a bug
            log.warning("an UPDATE was not stored: %s", exc)
            return [self._reply(update, dns.rcode.SERVFAIL)], "servfail"
        except Exception:
            log.exception("storing an UPDATE failed")
            return [self._reply(update, dns.rcode.SERVFAIL)], "servfail"
        self._count("noerror")
        return [self._reply(update, dns.rcode.NOERROR)], "noerror"

    def _count(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    async def _key(
        self, name: dns.name.Name | None, algorithm: dns.name.Name | None
    ) -> tuple[dns.tsig.Key, str] | None:
        """The key `name` and its device, if it exists with that algorithm (RFC 8945 5.2.1:
        a known name with another algorithm is BADKEY too). Read from the registry for each
        UPDATE, never kept: a key revoked, or a device unregistered, by another process (the
        CLI) is refused from its next UPDATE on (privacy rule 5). UPDATEs are few; the read is
        one indexed row."""
        if name is None:
            return None
        stored = await self.registry.find_tsig_key(name.to_text(omit_final_dot=True))
        if stored is None or stored.algorithm not in _ALGORITHMS:
            return None
        key = dns.tsig.Key(name, stored.secret, _ALGORITHMS[stored.algorithm])
        return (key, stored.device_name) if key.algorithm == algorithm else None

    def _reply(self, request: dns.message.Message, rcode: dns.rcode.Rcode) -> bytes:
        response = dns.message.make_response(request)
        response.set_rcode(rcode)
        wire: bytes = response.to_wire()
        return wire

    @staticmethod
    def _header_only(message: bytes, rcode: dns.rcode.Rcode) -> list[bytes]:
        reply = header_only_reply(message, rcode)
        return [reply] if reply is not None else []

    def _relative(self, name: dns.name.Name, zone: dns.name.Name) -> str:
        """`name` relative to the update's zone; a link zone name is the device zone's name of
        the same relative form (`_acme-challenge.<device>`, the CNAME's target)."""
        if not name.is_subdomain(zone):
            raise _Refusal(dns.rcode.NOTZONE, f"{name} is outside the zone")
        return name.relativize(zone).to_text().lower() if name != zone else ""

    def _check_rights(self, owner: str, rrtype: int, device: str, link: bool) -> None:
        if owner == device and rrtype in (*_TYPES, dns.rdatatype.ANY) and not link:
            return
        if owner == ACME + device and rrtype in (dns.rdatatype.TXT, dns.rdatatype.ANY):
            return
        raise _Refusal(dns.rcode.REFUSED, f"key of {device} may not change {owner} type {rrtype}")

    def _plan(self, update: dns.update.UpdateMessage, device: str) -> list[Change]:
        """Check the zone, prerequisites and rights; return the RRsets that change."""
        if len(update.zone) != 1 or update.zone[0].rdtype != dns.rdatatype.SOA:
            raise _Refusal(dns.rcode.FORMERR, "the zone section must hold one SOA question")
        zone = update.zone[0].name
        link = zone == self.link_zone
        if zone != self.zone and not link:
            raise _Refusal(dns.rcode.NOTAUTH, f"not authoritative for {zone}")
        zones = self.store.zones
        for prerequisite in update.prerequisite:
            self._check_prerequisite(prerequisite, zones, zone)
        state: dict[tuple[str, str], tuple[list[str], int]] = {}

        def rrset(owner: str, kind: str, ttl: int) -> list[str]:
            key = (owner, kind)
            if key not in state:
                # An RRset keeps its TTL unless an added RR gives it another.
                values, current_ttl = zones.outcome(owner, kind)
                state[key] = (list(values), ttl if current_ttl is None else current_ttl)
            return state[key][0]

        for rr in update.update:
            owner = self._relative(rr.name, zone)
            self._check_rights(owner, rr.rdtype, device, link)
            if rr.deleting is None:  # add to the RRset
                kind = _TYPES.get(rr.rdtype)
                # RFC 2136 3.4.1.2: an add is of the zone's class and of a real type.
                if kind is None or rr.rdclass != dns.rdataclass.IN:
                    raise _Refusal(dns.rcode.FORMERR, "an add must be of class IN and a type")
                values = rrset(owner, kind, rr.ttl)
                state[(owner, kind)] = (values, rr.ttl)
                for rdata in rr:
                    value = _value(rdata)
                    if value not in values:
                        values.append(value)
            elif rr.deleting == dns.rdataclass.ANY:  # delete an RRset, or all of them
                kinds = (
                    list(_TYPES.values()) if rr.rdtype == dns.rdatatype.ANY else [_TYPES[rr.rdtype]]
                )
                for kind in kinds:
                    if owner == ACME + device and kind != "TXT":
                        continue
                    rrset(owner, kind, 60).clear()
            elif rr.deleting == dns.rdataclass.NONE:  # delete single RRs
                if rr.rdtype not in _TYPES:  # RFC 2136 3.4.1.2: not of type ANY
                    raise _Refusal(dns.rcode.FORMERR, "a delete of single RRs names a type")
                values = rrset(owner, _TYPES[rr.rdtype], 60)
                for rdata in rr:
                    value = _value(rdata)
                    if value in values:
                        values.remove(value)
            else:
                raise _Refusal(dns.rcode.FORMERR, "bad class in the update section")
        changes = [Change(o, k, ttl, tuple(values)) for (o, k), (values, ttl) in state.items()]
        return [c for c in changes if c.outcome() != zones.outcome(c.owner, c.rrtype)]

    def _check_prerequisite(self, rr: dns.rrset.RRset, zones: ZoneSet, zone: dns.name.Name) -> None:
        owner = self._relative(rr.name, zone)
        node = zones.device_zone.lookup(owner)
        types = {t for t, r in node.rrsets.items() if r.values}
        if rr.deleting == dns.rdataclass.ANY:
            if rr.rdtype == dns.rdatatype.ANY:
                if not node.exists:
                    raise _Refusal(dns.rcode.NXDOMAIN, f"{owner} is not in use")
            elif int(rr.rdtype) not in types:
                raise _Refusal(dns.rcode.NXRRSET, f"{owner} has no such RRset")
        elif rr.deleting == dns.rdataclass.NONE:
            if rr.rdtype == dns.rdatatype.ANY:
                if node.exists and types:
                    raise _Refusal(dns.rcode.YXDOMAIN, f"{owner} is in use")
            elif int(rr.rdtype) in types:
                raise _Refusal(dns.rcode.YXRRSET, f"{owner} has that RRset")
        else:
            kind = _TYPES.get(rr.rdtype)
            wanted = sorted(_value(r) for r in rr)
            if kind is None or sorted(zones.current(owner, kind)) != wanted:
                raise _Refusal(dns.rcode.NXRRSET, f"{owner} does not hold exactly those values")
