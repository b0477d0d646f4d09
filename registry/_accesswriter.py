"""The access log's writer, shared by the daemons that keep one (relayd, ddnsd).

Records are queued in memory and written once a second in one commit, so a busy relay does
not take a database transaction per connection; expired records are purged and expired keys
destroyed hourly (privacy rule 3). The queue is bounded: under a write outage, records beyond
it are counted as dropped, never allowed to grow memory without end. Retention is a lifetime:
it is measured on the monotonic clock from the wall clock's reading at start, so a step of the
wall clock while running neither destroys keys early nor keeps records late.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import trio

from ._accesslog import AccessLogKeys, AccessRecord, month_of
from ._registry import Registry, steady_clock

__all__ = ["AccessLogWriter"]

log = logging.getLogger("nascloud.accesslog")

MAX_PENDING = 100_000
PURGE_INTERVAL_S = 3600.0


class AccessLogWriter:
    def __init__(
        self,
        registry: Registry,
        keys: AccessLogKeys,
        retention_days: int,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.registry = registry
        self.max_pending = max_pending
        self.keys = keys
        self.retention_s = retention_days * 86400.0
        #: The wall clock as read at start, carried on by the monotonic clock.
        self.now = steady_clock(clock, monotonic)
        self._pending: list[AccessRecord] = []
        self.written = 0
        self.dropped = 0

    def add(
        self,
        started: float,
        device: str,
        client: str,
        ingress: str,
        bytes_in: int,
        bytes_out: int,
        result: str,
    ) -> None:
        """Queue one record (metadata only), ending now. A start after now (the caller read
        a wall clock stepped forward) is now: it must not open a month to come."""
        if len(self._pending) >= self.max_pending:
            self.dropped += 1
            return
        ended = self.now()
        self._pending.append(
            AccessRecord(
                min(started, ended), ended, device, client, ingress, bytes_in, bytes_out, result
            )
        )

    async def flush(self) -> None:
        batch, self._pending = self._pending, []
        # A start in a month whose key is destroyed (a wall clock stepped far back) is past
        # its retention already: dropped, rather than sealed with a key made again.
        kept = [r for r in batch if not self.keys.destroyed(month_of(r.started_at))]
        self.dropped += len(batch) - len(kept)
        batch = kept
        if batch:
            try:
                await self.registry.log_access(batch, self.keys)
            except Exception:
                self.dropped += len(batch)
                raise
            self.written += len(batch)

    async def purge(self) -> None:
        deleted, months = await self.registry.purge_access(
            self.keys, self.retention_s, now=self.now()
        )
        if deleted or months:
            log.info("access log: %d records purged, keys of %s destroyed", deleted, months)

    async def run(self, interval_s: float = 1.0) -> None:
        """Purge hourly (first at start); write queued records every `interval_s`; flush on
        cancellation."""
        self.keys.for_writing(month_of(self.now()))  # the key file exists (0600) from the start
        last_purge: float | None = None
        try:
            while True:
                await trio.sleep(interval_s)
                try:
                    now = trio.current_time()
                    if last_purge is None or now - last_purge >= PURGE_INTERVAL_S:
                        last_purge = now
                        await self.purge()
                    await self.flush()
                except Exception:
                    log.exception("writing the access log failed; those records are lost")
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await self.flush()
                except Exception:
                    log.exception("writing the access log at exit failed")
