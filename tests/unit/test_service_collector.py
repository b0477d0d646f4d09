"""The collector policy every daemon runs: survivors frozen, the oldest generation only on the
schedule, cycles among frozen objects freed by it, and the collector as it was afterwards."""

from __future__ import annotations

import gc
import logging
import weakref

import pytest
import trio
import trio.testing

from service._collector import keep_collector_off_the_path


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


async def test_frozen_cycles_wait_for_the_full_collection(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="service.collector")
    thresholds = gc.get_threshold()
    node = Node()
    alive = weakref.ref(node)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(keep_collector_off_the_path, 10.0, 100.0)
        await trio.sleep(1)
        assert gc.get_freeze_count() > 0  # frozen at start-up, node with the rest
        assert gc.get_threshold()[:2] == thresholds[:2]
        assert gc.get_threshold()[2] > 10**9
        del node
        gc.collect()  # a full collection by hand does not walk frozen objects
        await trio.sleep(50)  # five freezes of the survivors: still none walks it
        assert alive() is not None
        await trio.sleep(60)  # past 100 s: the full collection
        assert alive() is None
        nursery.cancel_scope.cancel()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == thresholds
    assert any("full garbage collection" in r.getMessage() for r in caplog.records)


async def test_young_garbage_is_collected_before_it_could_be_frozen(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(keep_collector_off_the_path, 10.0, 3600.0)
        await trio.sleep(1)
        node = Node()
        alive = weakref.ref(node)
        del node  # garbage before the next freeze: that freeze's young collection frees it
        await trio.sleep(10)
        assert alive() is None
        nursery.cancel_scope.cancel()
