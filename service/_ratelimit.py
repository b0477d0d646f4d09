"""Sliding-window rate limits per key (a client address, a device) for the daemons' front
doors: relayd's lookup API and install site. Knows no daemon and no protocol: the caller
chooses the key and what a refusal looks like.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

__all__ = ["SlidingWindow"]


class SlidingWindow:
    """At most `limit` events per `window_s` per key. Memory stays bounded: keys whose
    window is empty are dropped once there are more than `max_keys`.

    A refused event counts by default, so a client that keeps trying stays limited. With
    `count_refused=False` it does not: a key gets `limit` events in any window however often
    it tries (DynDNS2's per-host limit: a refused device gets through again as soon as its
    earlier updates leave the window).
    """

    def __init__(
        self,
        limit: int,
        window_s: float = 60.0,
        *,
        max_keys: int = 100_000,
        count_refused: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self.count_refused = count_refused
        self.clock = clock
        self._events: dict[str, deque[float]] = {}

    def allow(self, key: str) -> bool:
        """Count one event for `key`; False if it goes over the limit."""
        now = self.clock()
        events = self._events.get(key)
        if events is None:
            if len(self._events) >= self.max_keys:
                self._forget_idle(now)
            events = self._events[key] = deque()
        while events and now - events[0] >= self.window_s:
            events.popleft()
        if not self.count_refused and len(events) >= self.limit:
            return False
        if len(events) > self.limit:
            # Keep the deque bounded even for a client that hammers: its oldest entries go.
            events.popleft()
        events.append(now)
        return len(events) <= self.limit

    def _forget_idle(self, now: float) -> None:
        self._events = {
            key: events
            for key, events in self._events.items()
            if events and now - events[-1] < self.window_s
        }
