"""CPython's cyclic garbage collector, kept off a daemon's latency path.

A full collection walks every object the collector tracks with the GIL held. relayd with
5,000 idle tunnels tracks about 650,000; under churn (connections that live seconds, promoted
before they end) CPython ran a full collection every 7 to 15 s, each 0.2 to 1.0 s long on the
bench machine, and every connection in flight waited for it (bench/RESULTS.md, "Everything at
once"). Nearly all of those objects live long and are freed by reference counting, not by the
collector: after the 5,000 tunnels ended, 4,000 objects were left of 670,000.

So: objects that survived the young generations are frozen (`gc.freeze`: never walked again;
reference counting still frees them) right after start-up and then every `FREEZE_INTERVAL_S`,
the oldest generation never collects by itself, and a full collection, the only one that
frees cycles among frozen objects, runs every `FULL_INTERVAL_S`, logged with what it took.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Final

import trio

__all__ = ["FREEZE_INTERVAL_S", "FULL_INTERVAL_S", "keep_collector_off_the_path"]

log = logging.getLogger("service.collector")

FREEZE_INTERVAL_S: Final = 30.0
FULL_INTERVAL_S: Final = 3600.0
#: The oldest generation's threshold (young collections between two of it): never reached.
_NEVER: Final = 2**31 - 1


def _freeze_survivors() -> None:
    gc.collect(1)  # the young generations' garbage goes first, so that none of it is frozen
    gc.freeze()


def _full_collection() -> tuple[int, float]:
    """Everything, frozen or not; then freeze again. (objects freed, seconds)"""
    started = time.monotonic()
    gc.unfreeze()
    freed = gc.collect()
    gc.freeze()
    return freed, time.monotonic() - started


async def keep_collector_off_the_path(
    freeze_interval_s: float = FREEZE_INTERVAL_S, full_interval_s: float = FULL_INTERVAL_S
) -> None:
    """Run for the daemon's life (a task of its outermost nursery); the collector's own
    thresholds are set back as they were when it is cancelled."""
    thresholds = gc.get_threshold()
    gc.set_threshold(thresholds[0], thresholds[1], _NEVER)
    try:
        _freeze_survivors()
        next_full = trio.current_time() + full_interval_s
        while True:
            await trio.sleep(freeze_interval_s)
            if trio.current_time() < next_full:
                _freeze_survivors()
                continue
            next_full = trio.current_time() + full_interval_s
            freed, took = _full_collection()
            log.info(
                "full garbage collection: %d objects freed in %.0f ms, %d kept",
                freed,
                took * 1000,
                gc.get_freeze_count(),
            )
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
