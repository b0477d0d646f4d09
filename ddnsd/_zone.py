"""Zone data in memory: each zone's apex (SOA, NS), its nodes and their RRsets, and changes.

The device zone holds what devices and their owners set (A, AAAA, TXT); the link zone is
derived: every device gets `<device>.<link zone>` and `*.<device>.<link zone>` pointing at the
relay, and `_acme-challenge.<device>.<link zone>` as a CNAME to the device's challenge name in
the device zone, so that the one TXT RRset a device sets proves both its names (DNS-01, which
CAs validate through CNAMEs). Sans-IO: no sockets, no clock, no storage.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

from dnslib import AAAA, CAA, CNAME, NS, QTYPE, RR, SOA, TXT, A, DNSLabel
from dnslib.dns import RD

from protocol import canonical_address, parse_caa
from registry import RESERVED_DEVICE_NAMES

__all__ = [
    "Change",
    "JournalEntry",
    "Lookup",
    "RRset",
    "SoaFields",
    "Zone",
    "ZoneSet",
    "serial_after",
    "serial_newer",
]

TYPE_A: Final = QTYPE.A
TYPE_AAAA: Final = QTYPE.AAAA
TYPE_TXT: Final = QTYPE.TXT
TYPE_CNAME: Final = QTYPE.CNAME
TYPE_NS: Final = QTYPE.NS
TYPE_SOA: Final = QTYPE.SOA
TYPE_CAA: Final = QTYPE.CAA
#: What updates set. CAA only at a device's name, mirrored at its link name (the same NAS).
RECORD_TYPES: Final = {"A": TYPE_A, "AAAA": TYPE_AAAA, "TXT": TYPE_TXT, "CAA": TYPE_CAA}
ACME_LABEL: Final = "_acme-challenge"
MAX_JOURNAL: Final = 1000  # batches kept for IXFR; older secondaries get AXFR


def _rdata(rrtype: int, value: str) -> RD:
    if rrtype in (TYPE_A, TYPE_AAAA):
        found = canonical_address(value)
        if found is None or found[0] != (4 if rrtype == TYPE_A else 6) or found[1] != value:
            raise ValueError(f"{value!r} is not a canonical IPv{4 if rrtype == TYPE_A else 6}")
        return A(value) if rrtype == TYPE_A else AAAA(value)
    if rrtype == TYPE_TXT:
        return TXT(value.encode())
    if rrtype == TYPE_CAA:
        flags, tag, text = parse_caa(value)
        return CAA(flags, tag, text)
    if rrtype == TYPE_CNAME:  # made by the zone itself, never by an update
        return CNAME(value)
    raise ValueError(f"unsupported record type {rrtype}")


@dataclass(frozen=True, slots=True)
class RRset:
    ttl: int
    values: tuple[str, ...]
    rdata: tuple[RD, ...]

    @classmethod
    def build(cls, rrtype: int, ttl: int, values: Iterable[str]) -> RRset:
        ordered = tuple(dict.fromkeys(values))  # no duplicates, order kept
        return cls(ttl, ordered, tuple(_rdata(rrtype, v) for v in ordered))


@dataclass(frozen=True, slots=True)
class SoaFields:
    mname: str
    rname: str
    refresh: int = 3600
    retry: int = 600
    expire: int = 1209600
    minimum: int = 60  # negative-caching TTL (RFC 2308)


@dataclass(frozen=True, slots=True)
class Change:
    """Replace the RRset `rrtype` at `owner` (relative to the device zone); no values deletes."""

    owner: str
    rrtype: str
    ttl: int
    values: tuple[str, ...]

    def outcome(self) -> tuple[tuple[str, ...], int | None]:
        """What the RRset is once the change is applied: its values (no duplicates, order
        kept) and TTL. A change of TTL alone is a change; an absent RRset has no TTL, so
        deleting one that is not there is none, whatever the TTL."""
        values = tuple(dict.fromkeys(self.values))
        return values, (self.ttl if values else None)


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One serial step, for IXFR: the RRs removed and added, as (owner, type, ttl, value)."""

    old_serial: int
    new_serial: int
    removed: tuple[tuple[str, int, int, str], ...]
    added: tuple[tuple[str, int, int, str], ...]


@dataclass(slots=True)
class Lookup:
    """Where a name stands in a zone."""

    zone: Zone
    exists: bool
    rrsets: dict[int, RRset] = field(default_factory=dict)


def serial_after(serial: int) -> int:
    """The next serial in RFC 1982 arithmetic (never 0, which some secondaries mishandle)."""
    return (serial + 1) % 2**32 or 1


def serial_newer(serial: int, than: int) -> bool:
    """RFC 1982 comparison of 32-bit serials: `serial` is after `than`."""
    return serial != than and (serial - than) % 2**32 < 2**31


class Zone:
    """One authoritative zone: apex SOA and NS, and nodes by relative lower-case name."""

    def __init__(
        self,
        origin: str,
        soa: SoaFields,
        nameservers: tuple[str, ...],
        serial: int = 1,
        apex_ttl: int = 3600,
    ) -> None:
        self.origin = origin.lower().rstrip(".")
        self.label = DNSLabel(self.origin)
        self.soa = soa
        self.nameservers = nameservers
        self.serial = serial
        self.apex_ttl = apex_ttl
        self.nodes: dict[str, dict[int, RRset]] = {"": {}}
        # How many nodes lie strictly below each name: a name with a count but no node of
        # its own is an empty non-terminal (it exists, with no data).
        self._below: dict[str, int] = {}
        self.journal: deque[JournalEntry] = deque(maxlen=MAX_JOURNAL)

    def relative(self, name: str) -> str | None:
        """`name` relative to the origin ('' for the apex), or None if it is outside."""
        name = name.lower().rstrip(".")
        if name == self.origin:
            return ""
        if name.endswith("." + self.origin):
            return name[: -len(self.origin) - 1]
        return None

    def absolute(self, relative: str) -> str:
        return f"{relative}.{self.origin}" if relative else self.origin

    def soa_rr(self, owner: DNSLabel | str | None = None) -> RR:
        soa = self.soa
        return RR(
            owner or self.label,
            TYPE_SOA,
            rdata=SOA(
                soa.mname,
                soa.rname,
                (self.serial, soa.refresh, soa.retry, soa.expire, soa.minimum),
            ),
            ttl=soa.minimum,
        )

    def apex_rrsets(self) -> dict[int, RRset]:
        return self.nodes[""]

    def ns_rrs(self) -> list[RR]:
        return [RR(self.label, TYPE_NS, rdata=NS(ns), ttl=self.apex_ttl) for ns in self.nameservers]

    def lookup(self, relative: str) -> Lookup:
        node = self.nodes.get(relative)
        if node is not None:
            return Lookup(self, True, node)
        if self._below.get(relative):
            return Lookup(self, True)
        # Wildcard (RFC 4592): the closest existing encloser's "*" child answers for it.
        labels = relative.split(".")
        for cut in range(1, len(labels)):
            encloser = ".".join(labels[cut:])
            if encloser in self.nodes:
                wild = self.nodes.get(f"*.{encloser}")
                return Lookup(self, wild is not None, wild or {})
        wild = self.nodes.get("*")
        return Lookup(self, wild is not None, wild or {})

    @staticmethod
    def _ancestors(relative: str) -> Iterator[str]:
        labels = relative.split(".")
        for cut in range(1, len(labels)):
            yield ".".join(labels[cut:])

    def ensure_node(self, relative: str) -> dict[int, RRset]:
        node = self.nodes.get(relative)
        if node is None:
            node = self.nodes[relative] = {}
            for ancestor in self._ancestors(relative):
                self._below[ancestor] = self._below.get(ancestor, 0) + 1
        return node

    def drop_node(self, relative: str) -> list[tuple[str, int, int, str]]:
        """Remove a node and everything under it; return the RRs removed."""
        removed: list[tuple[str, int, int, str]] = []
        suffix = "." + relative
        for name in [n for n in self.nodes if n == relative or n.endswith(suffix)]:
            for rrtype, rrset in self.nodes.pop(name).items():
                removed.extend((name, rrtype, rrset.ttl, v) for v in rrset.values)
            for ancestor in self._ancestors(name):
                count = self._below[ancestor] - 1
                if count:
                    self._below[ancestor] = count
                else:
                    del self._below[ancestor]
        return removed

    def replace(
        self, relative: str, rrtype: int, rrset: RRset | None
    ) -> tuple[list[tuple[str, int, int, str]], list[tuple[str, int, int, str]]]:
        """Set or (None) delete one RRset; return the RRs removed and added."""
        node = self.ensure_node(relative)
        old = node.get(rrtype)
        removed = [(relative, rrtype, old.ttl, v) for v in old.values] if old else []
        if rrset is None or not rrset.values:
            node.pop(rrtype, None)
            return removed, []
        node[rrtype] = rrset
        return removed, [(relative, rrtype, rrset.ttl, v) for v in rrset.values]

    def bump(
        self,
        removed: list[tuple[str, int, int, str]],
        added: list[tuple[str, int, int, str]],
        serial: int | None = None,
    ) -> int:
        """Advance the serial after a batch of changes (to `serial` if given: the one that
        was written to disk) and journal the difference."""
        if not removed and not added and serial is None:
            return self.serial
        old = self.serial
        self.serial = serial if serial is not None else serial_after(old)
        # An RR removed and added back in one batch is no change at all.
        removed_set = set(removed)
        added_set = set(added)
        self.journal.append(
            JournalEntry(
                old,
                self.serial,
                tuple(r for r in removed if r not in added_set),
                tuple(a for a in added if a not in removed_set),
            )
        )
        return self.serial

    def records(self) -> Iterator[RR]:
        """Every RR below the apex SOA, for AXFR: NS first, then nodes in name order."""
        yield from self.ns_rrs()
        for name in sorted(self.nodes):
            owner = DNSLabel(self.absolute(name))
            for rrtype, rrset in sorted(self.nodes[name].items()):
                for rdata in rrset.rdata:
                    yield RR(owner, rrtype, rdata=rdata, ttl=rrset.ttl)


class ZoneSet:
    """The device zone, the optional link zone, and the devices that give both their names."""

    def __init__(
        self,
        device_zone: Zone,
        link_zone: Zone | None = None,
        relay_addresses: tuple[str, ...] = (),
        link_ttl: int = 60,
        nameserver_addresses: Mapping[str, tuple[str, ...]] | None = None,
        caa: tuple[str, ...] = (),
    ) -> None:
        self.device_zone = device_zone
        self.link_zone = link_zone
        self.devices: set[str] = set()
        #: Devices whose owner turned a feature off (registry `features_off`): DDNS, their
        #: addresses (none kept, none taken), and Link, their names in the link zone.
        self.addresses_off: set[str] = set()
        self.link_off: set[str] = set()
        self.zones = [z for z in (device_zone, link_zone) if z is not None]
        # Longest origin first, so a link zone under the device zone matches first.
        self.zones.sort(key=lambda z: -len(z.origin))
        self._link_ttl = link_ttl
        self._relay = {
            TYPE_A: RRset.build(TYPE_A, link_ttl, [a for a in relay_addresses if ":" not in a]),
            TYPE_AAAA: RRset.build(TYPE_AAAA, link_ttl, [a for a in relay_addresses if ":" in a]),
        }
        if link_zone is not None:
            # The relay's own sites (the install site and its sessions) are the relay's.
            for name in RESERVED_DEVICE_NAMES:
                self._point_at_relay(link_zone, name)  # content at start: no serial step
        #: Absolute nameserver name -> its address RRsets by type, for the names inside one
        #: of our zones (glue): answered there and added to NS answers as additional data.
        self.nameserver_rrsets: dict[str, dict[int, RRset]] = {}
        #: Device names that a nameserver's name holds (`ns1` of `ns1.<zone>`): no device
        #: gets them, so no update can change or delete a nameserver's addresses.
        self.held: set[str] = set()
        for name, addresses in (nameserver_addresses or {}).items():
            self._add_nameserver(name.lower().rstrip("."), addresses)
        if caa:
            # The zones' default, at their apex: what a CA finds for a name without its own
            # (RFC 8659 climbs from the name to its parents).
            for zone in self.zones:
                zone.replace("", TYPE_CAA, RRset.build(TYPE_CAA, zone.apex_ttl, caa))

    def _add_nameserver(self, name: str, addresses: tuple[str, ...]) -> None:
        found = self.find(name)
        if found is None or found[1] == "":
            return  # out of our zones: its own zone gives its addresses, not glue of ours
        zone, relative = found
        rrsets: dict[int, RRset] = {}
        for rrtype, family in ((TYPE_A, 4), (TYPE_AAAA, 6)):
            values = [a for a in addresses if (canonical_address(a) or (0,))[0] == family]
            if values:
                rrsets[rrtype] = RRset.build(rrtype, zone.apex_ttl, values)
                zone.replace(relative, rrtype, rrsets[rrtype])  # content at start
        zone.ensure_node(relative)
        self.nameserver_rrsets[name] = rrsets
        self.held.add(relative.rsplit(".", 1)[-1])

    def _point_at_relay(self, link_zone: Zone, name: str) -> list[tuple[str, int, int, str]]:
        """`name` and every name below it in the link zone answer with the relay's addresses;
        returns the records added."""
        added: list[tuple[str, int, int, str]] = []
        for owner in (name, f"*.{name}"):
            for rrtype, rrset in self._relay.items():
                added += link_zone.replace(owner, rrtype, rrset)[1]
            link_zone.ensure_node(owner)
        return added

    def _link_device(self, link_zone: Zone, name: str) -> list[tuple[str, int, int, str]]:
        """A device's link names: the relay's addresses, and its challenge name as a CNAME to
        the device zone's (the TXT there answers for both zones)."""
        added = self._point_at_relay(link_zone, name)
        challenge = f"{ACME_LABEL}.{name}"
        target = self.device_zone.absolute(challenge) + "."
        cname = RRset.build(TYPE_CNAME, self._link_ttl, [target])
        return added + link_zone.replace(challenge, TYPE_CNAME, cname)[1]

    def find(self, name: str) -> tuple[Zone, str] | None:
        for zone in self.zones:
            relative = zone.relative(name)
            if relative is not None:
                return zone, relative
        return None

    def add_device(self, name: str) -> list[str]:
        """A device exists: its name exists (NODATA until it has records). Returns the
        absolute names whose answers changed."""
        if name in self.devices or name in self.held:
            return []  # a nameserver's name is not a device's
        self.devices.add(name)
        self.device_zone.ensure_node(name)
        changed = [self.device_zone.absolute(name)]
        if self.link_zone is not None and name not in self.link_off:
            self.link_zone.bump([], self._link_device(self.link_zone, name))
            changed.append(self.link_zone.absolute(name))
        return changed

    def set_link(self, name: str, on: bool) -> list[str]:
        """Link on or off for a device: off, its link-zone names are gone (NXDOMAIN, as for
        a name that was never a device's); on, they are back with its CAA record. Returns
        the absolute names whose answers changed."""
        if on == (name not in self.link_off):
            return []
        if on:
            self.link_off.discard(name)
        else:
            self.link_off.add(name)
        link = self.link_zone
        if link is None or name not in self.devices:
            return []
        if on:
            added = self._link_device(link, name)
            caa = self.device_zone.nodes.get(name, {}).get(TYPE_CAA)
            if caa is not None:
                added += link.replace(name, TYPE_CAA, caa)[1]
            link.bump([], added)
        else:
            link.bump(link.drop_node(name), [])
        return [link.absolute(name)]

    def set_addresses(self, name: str, on: bool) -> None:
        """DDNS on or off for a device. Off, `apply` takes no address for it: emptying the
        ones it has is the caller's (through the store, so that it is written and sent)."""
        if on:
            self.addresses_off.discard(name)
        else:
            self.addresses_off.add(name)

    def refuses(self, change: Change) -> bool:
        """Whether the change gives addresses to a device with DDNS off."""
        return (
            bool(change.values)
            and change.rrtype in ("A", "AAAA")
            and change.owner in self.addresses_off
        )

    def remove_device(self, name: str) -> list[str]:
        """Erase a device's names and records from every zone."""
        if name not in self.devices:
            return []
        self.devices.discard(name)
        changed = [self.device_zone.absolute(name)]
        self.device_zone.bump(self.device_zone.drop_node(name), [])
        if self.link_zone is not None:
            self.link_zone.bump(self.link_zone.drop_node(name), [])
            changed.append(self.link_zone.absolute(name))
        return changed

    def apply(self, changes: Iterable[Change], serial: int | None = None) -> tuple[int, list[str]]:
        """Apply a batch of RRset replacements to the device zone with one serial step
        (to `serial` if given). Changes under devices that no longer exist are skipped.

        Returns the new serial and the absolute names whose answers changed.
        """
        zone = self.device_zone
        removed: list[tuple[str, int, int, str]] = []
        added: list[tuple[str, int, int, str]] = []
        changed: list[str] = []
        for change in changes:
            device = change.owner.rsplit(".", 1)[-1]
            if device in RESERVED_DEVICE_NAMES:
                changed += self._relay_challenge(change)
                continue
            if device not in self.devices or self.refuses(change):
                continue
            rrtype = RECORD_TYPES[change.rrtype]
            rrset = RRset.build(rrtype, change.ttl, change.values) if change.values else None
            out, into = zone.replace(change.owner, rrtype, rrset)
            removed += out
            added += into
            changed.append(zone.absolute(change.owner))
            if rrtype == TYPE_CAA and self.link_zone is not None and device not in self.link_off:
                # The device's link name is the same NAS: its CAA record holds there too.
                self.link_zone.bump(*self.link_zone.replace(change.owner, rrtype, rrset))
                changed.append(self.link_zone.absolute(change.owner))
            if not zone.nodes.get(change.owner) and change.owner not in self.devices:
                zone.drop_node(change.owner)  # an emptied _acme-challenge name is gone
        return zone.bump(removed, added, serial), changed

    def _relay_challenge(self, change: Change) -> list[str]:
        """The relay's own DNS-01 challenge (`_acme-challenge.install`: its install site's
        names), in the link zone where those names are; in memory only, like the relay's
        addresses. Anything else under a reserved name is no change."""
        link = self.link_zone
        if link is None or change.rrtype != "TXT" or not change.owner.startswith(ACME_LABEL + "."):
            return []
        rrset = RRset.build(TYPE_TXT, change.ttl, change.values) if change.values else None
        link.bump(*link.replace(change.owner, TYPE_TXT, rrset))
        if rrset is None:
            link.drop_node(change.owner)  # the wildcard of the site answers there again
        return [link.absolute(change.owner)]

    def _zone_of(self, owner: str) -> Zone:
        """Where an update's owner is: the link zone for the relay's reserved names."""
        if self.link_zone is not None and owner.rsplit(".", 1)[-1] in RESERVED_DEVICE_NAMES:
            return self.link_zone
        return self.device_zone

    def current(self, owner: str, rrtype: str) -> tuple[str, ...]:
        """The values of one RRset of the device zone (empty if there is none)."""
        rrset = self._zone_of(owner).nodes.get(owner, {}).get(RECORD_TYPES[rrtype])
        return rrset.values if rrset else ()

    def outcome(self, owner: str, rrtype: str) -> tuple[tuple[str, ...], int | None]:
        """One RRset of the device zone as `Change.outcome` gives it: values and TTL, or no
        values and no TTL if there is none."""
        rrset = self._zone_of(owner).nodes.get(owner, {}).get(RECORD_TYPES[rrtype])
        return (rrset.values, rrset.ttl) if rrset else ((), None)
