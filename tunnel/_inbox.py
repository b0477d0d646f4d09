"""A bounded queue with one receiver: what a tunnel keeps the streams and messages in that the
application has not taken yet. Knows nothing of tunnels or the protocol.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

import trio
from trio.lowlevel import ParkingLot

__all__ = ["Inbox"]

_T = TypeVar("_T")


class Inbox(Generic[_T]):
    """What a memory channel did here, for one receiver and at a fraction of its memory (a
    relay holds thousands of idle tunnels, each with two): a bounded deque, and a parking lot
    made only when someone waits."""

    __slots__ = ("_capacity", "_closed", "_items", "_lot")

    def __init__(self, capacity: int) -> None:
        self._items: deque[_T] | None = None  # made with the first item
        self._capacity = capacity
        self._lot: ParkingLot | None = None
        self._closed = False

    def put_nowait(self, item: _T) -> None:
        """Raises WouldBlock when full and ClosedResourceError once closed."""
        if self._closed:
            raise trio.ClosedResourceError("closed")
        if self._items is None:
            self._items = deque()
        elif len(self._items) >= self._capacity:
            raise trio.WouldBlock
        self._items.append(item)
        if self._lot is not None:
            self._lot.unpark_all()

    def close(self) -> None:
        """No more items; waiting getters get what is left, then EndOfChannel."""
        self._closed = True
        if self._lot is not None:
            self._lot.unpark_all()

    async def get(self) -> _T:
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._items:
            if self._closed:
                raise trio.EndOfChannel
            if self._lot is None:
                self._lot = ParkingLot()
            await self._lot.park()
        item = self._items.popleft()
        if not self._items:
            self._items = None  # an idle tunnel keeps no empty deque
        await trio.lowlevel.cancel_shielded_checkpoint()
        return item
