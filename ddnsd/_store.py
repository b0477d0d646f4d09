"""Durable zone updates with group commit: an update is acknowledged once the batch holding
it is on disk, and is in every answer from that moment.

Updates queue while the previous batch is being written; the committer then writes them all
in one transaction (one fsync), applies them to memory, drops the cached answers they change
and wakes every waiter. Knows nothing of how updates arrive (DynDNS2, RFC 2136, protocol).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from registry import RESERVED_DEVICE_NAMES, DnsRRset, Registry

from ._answer import Responder
from ._replication import Apply, Devices
from ._zone import RECORD_TYPES, Change, RRset, ZoneSet, serial_after

__all__ = ["FeatureOff", "RefusedChange", "UpdateResult", "ZoneStore"]


class RefusedChange(ValueError):
    """A change the zone cannot hold (a record type it does not serve, a value that is not
    one of its type): refused before anything is written, so that it is neither stored and
    never served nor acknowledged and then failing."""


class FeatureOff(RefusedChange):
    """Addresses for a device whose owner turned DDNS off: none is taken until it is on."""


def _check_changes(changes: list[Change]) -> None:
    """Raise RefusedChange unless the zone can hold every change: the very RRset building
    `ZoneSet.apply` does, run before the batch is written rather than after."""
    for change in changes:
        rrtype = RECORD_TYPES.get(change.rrtype)
        if rrtype is None:
            raise RefusedChange(f"record type {change.rrtype!r} is not served by the zone")
        try:
            RRset.build(rrtype, change.ttl, change.values)
        except ValueError as exc:
            raise RefusedChange(str(exc)) from None


@dataclass(frozen=True, slots=True)
class UpdateResult:
    changed: bool
    serial: int


class _Waiter:
    __slots__ = ("done", "error", "serial")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.error: BaseException | None = None
        self.serial = 0


class ZoneStore:
    def __init__(
        self,
        registry: Registry,
        zones: ZoneSet,
        responder: Responder,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.registry = registry
        self.zones = zones
        self.responder = responder
        self._on_change = on_change
        #: Set by the worker pool: send a change to every worker and wait until applied.
        self.replicate: Callable[[Apply | Devices], Awaitable[None]] | None = None
        self._queue: list[tuple[str, list[Change], _Waiter]] = []
        self._wake = trio.Event()
        # The newest value of every RRset that is queued or being written, so that "no
        # change" is judged against what will be, not what was.
        self._pending: dict[tuple[str, str], tuple[tuple[str, ...], int | None]] = {}
        self.batches = 0
        self.updates = 0

    async def load(self) -> None:
        """Fill the zones from the registry: devices, the features their owners turned off,
        their RRsets, the last serials."""
        for name in await self.registry.devices_with_feature_off("link"):
            self.zones.set_link(name, False)
        for name in await self.registry.devices_with_feature_off("ddns"):
            self.zones.set_addresses(name, False)
        for name in await self.registry.device_names():
            self.zones.add_device(name)
        rrsets, serials = await self.registry.load_dns()
        changes = [Change(r.owner, r.rrtype, r.ttl, r.values) for r in rrsets]
        zone = self.zones.device_zone
        stored = serials.get(zone.origin, zone.serial)
        self.zones.apply(changes, serial=max(stored, zone.serial))
        zone.journal.clear()  # history before this process is not known: IXFR falls back
        link = self.zones.link_zone
        if link is not None:
            link.serial = max(serials.get(link.origin, link.serial), link.serial)
            link.journal.clear()
        self.responder.clear()

    async def sync_devices(self) -> list[str]:
        """Follow what other processes changed: enrolments and deletions, and the features
        owners turned on or off (the portal); returns changed names."""
        names = set(await self.registry.device_names())
        link_off = set(await self.registry.devices_with_feature_off("link"))
        addresses_off = set(await self.registry.devices_with_feature_off("ddns"))
        changed: list[str] = []
        for name in link_off ^ self.zones.link_off:
            changed += self.zones.set_link(name, name not in link_off)
        for name in names - self.zones.devices:
            changed += self.zones.add_device(name)
        for name in self.zones.devices - names:
            changed += self.zones.remove_device(name)
        if changed:
            await self._changed_outside_batches(changed)
        for name in addresses_off ^ self.zones.addresses_off:
            self.zones.set_addresses(name, name not in addresses_off)
            if name in addresses_off and name in self.zones.devices:
                # The registry deleted the rows with the switch; memory, the workers and the
                # secondaries follow through one ordinary batch.
                await self.update(name, [Change(name, t, 0, ()) for t in ("A", "AAAA")])
                changed.append(self.zones.device_zone.absolute(name))
        return changed

    def _serials(self) -> dict[str, int]:
        return {zone.origin: zone.serial for zone in self.zones.zones}

    async def _changed_outside_batches(self, names: list[str]) -> None:
        # Device enrolments and deletions step the serials too; keep them on disk so that
        # they never go backwards across a restart (secondaries would stop following).
        self.responder.invalidate(names, self.zones.zones)
        with trio.CancelScope(shield=True):
            await self.registry.commit_dns([], self._serials())
            if self.replicate is not None:
                await self.replicate(self.device_message())
        self._on_change()

    def device_message(self) -> Devices:
        return Devices(
            tuple(sorted(self.zones.devices)),
            self._serials(),
            link_off=tuple(sorted(self.zones.link_off)),
        )

    async def knows_device(self, name: str) -> bool:
        if name in self.zones.devices:
            return True
        if await self.registry.get_device(name) is None:
            return False
        await self._changed_outside_batches(self.zones.add_device(name))
        return True

    def unchanged(self, changes: list[Change]) -> bool:
        """Whether every change leaves its RRset as it is (values and TTL) or will be."""
        for change in changes:
            key = (change.owner, change.rrtype)
            pending = self._pending.get(key)
            current = pending if pending is not None else self.zones.outcome(*key)
            if current != change.outcome():
                return False
        return True

    async def update(self, device: str, changes: list[Change]) -> UpdateResult:
        """Apply `changes` to `device`'s names durably. Callers check rights first; what
        the zone cannot hold raises RefusedChange, and nothing of this update is written."""
        _check_changes(changes)
        if any(self.zones.refuses(change) for change in changes):
            raise FeatureOff(f"DDNS is off for {device}")
        if self.unchanged(changes):
            await trio.lowlevel.checkpoint()
            return UpdateResult(False, self.zones.device_zone.serial)
        waiter = _Waiter()
        for change in changes:
            self._pending[(change.owner, change.rrtype)] = change.outcome()
        self._queue.append((device, changes, waiter))
        self._wake.set()
        await waiter.done.wait()
        if waiter.error is not None:
            raise waiter.error
        return UpdateResult(True, waiter.serial)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            batch, self._queue = self._queue, []
            if batch:
                await self._commit(batch)

    async def _commit(self, batch: list[tuple[str, list[Change], _Waiter]]) -> None:
        zone = self.zones.device_zone
        serial = serial_after(zone.serial)
        latest: dict[tuple[str, str], tuple[str, Change]] = {}
        for device, changes, _ in batch:
            for change in changes:
                latest[(change.owner, change.rrtype)] = (device, change)
        rrsets = [
            DnsRRset(c.owner, c.rrtype, device, c.ttl, tuple(dict.fromkeys(c.values)))
            for device, c in latest.values()
            if device not in RESERVED_DEVICE_NAMES  # the relay's challenge: memory only
        ]
        try:
            with trio.CancelScope(shield=True):  # a half-finished batch would lose updates
                await self.registry.commit_dns(rrsets, {**self._serials(), zone.origin: serial})
        except Exception as exc:
            for _, _, waiter in batch:
                waiter.error = exc
                waiter.done.set()
            self._forget_pending(latest)
            return
        changes = [c for _, c in latest.values()]
        _, names = self.zones.apply(changes, serial=serial)
        self.responder.invalidate(names, self.zones.zones)  # CAA, the relay's: the link zone
        if self.replicate is not None:
            with trio.CancelScope(shield=True):
                await self.replicate(Apply(serial, tuple(changes)))
        self._forget_pending(latest)
        self.batches += 1
        self.updates += len(batch)
        for _, _, waiter in batch:
            waiter.serial = serial
            waiter.done.set()
        self._on_change()

    def _forget_pending(self, written: dict[tuple[str, str], tuple[str, Change]]) -> None:
        for key, (_, change) in written.items():
            pending = self._pending.get(key)
            if pending is not None and pending == change.outcome():
                del self._pending[key]
