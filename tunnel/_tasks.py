"""Tasks that live no longer than the tunnel they serve, and no more than a cap of them at once.

They run in the tunnel's own nursery, each in a cancel scope of its own, all cancelled when the
tunnel ends. Knows nothing of tunnels: its owner binds the nursery and says when it is over.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVarTuple, Unpack

import trio

__all__ = ["BoundedTasks"]

_Ts = TypeVarTuple("_Ts")


class BoundedTasks:
    """At most `max_tasks` tasks at once in one nursery; refused beyond that, and once closed.

    A relay holds thousands of idle tunnels, so nothing is allocated until the first task.
    """

    __slots__ = ("_closed", "_max_tasks", "_nursery", "_scopes")

    def __init__(self, max_tasks: int) -> None:
        if max_tasks < 1:
            raise ValueError(f"max_tasks must be >= 1, got {max_tasks}")
        self._max_tasks = max_tasks
        self._nursery: trio.Nursery | None = None
        self._scopes: set[trio.CancelScope] | None = None  # of the running tasks
        self._closed = False

    @property
    def running(self) -> int:
        return len(self._scopes) if self._scopes is not None else 0

    def bind(self, nursery: trio.Nursery) -> None:
        """Where the tasks run; until then every start is refused."""
        self._nursery = nursery

    def start_soon(self, fn: Callable[[Unpack[_Ts]], Awaitable[object]], *args: *_Ts) -> bool:
        """Start `fn(*args)`; False, and nothing started, if closed, unbound or at the cap."""
        if self._closed or self._nursery is None or self.running >= self._max_tasks:
            return False
        if self._scopes is None:
            self._scopes = set()
        scope = trio.CancelScope()
        self._scopes.add(scope)
        self._nursery.start_soon(self._run, scope, fn, *args)
        return True

    def close(self) -> None:
        """No more tasks; those running are cancelled."""
        self._closed = True
        if self._scopes is not None:
            for scope in self._scopes:
                scope.cancel()

    async def _run(
        self,
        scope: trio.CancelScope,
        fn: Callable[[Unpack[_Ts]], Awaitable[object]],
        *args: *_Ts,
    ) -> None:
        try:
            with scope:
                await fn(*args)
        finally:
            assert self._scopes is not None
            self._scopes.discard(scope)
