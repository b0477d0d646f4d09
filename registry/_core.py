"""What every part of the registry's facade stands on: the backend, the clock, and running
each blocking backend call in a worker thread, as many at once as the backend takes (one for
SQLite's one connection, a pool's size for PostgreSQL), noticing a storage that is gone for
good."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import trio

from ._backend import Backend
from ._models import RegistryError, RegistryGone

__all__ = ["RegistryCore"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


class RegistryCore:
    def __init__(self, backend: Backend, *, clock: Callable[[], float] = time.time) -> None:
        self.backend = backend
        self._clock = clock
        self._limiter = trio.CapacityLimiter(backend.concurrency)
        #: Set once the storage is gone for good (see `wait_gone`).
        self.gone: RegistryGone | None = None
        self._gone_event = trio.Event()

    async def aclose(self) -> None:
        # Not through _run: a registry that is gone is closed all the same.
        await trio.to_thread.run_sync(self.backend.close, limiter=self._limiter)

    async def wait_gone(self) -> RegistryGone:
        """Return once a call found the storage gone for good; that call raised it too."""
        await self._gone_event.wait()
        assert self.gone is not None
        return self.gone

    async def check(self) -> None:
        """Raise RegistryGone if the storage is no longer where it was opened (reads alone
        may not notice: SQLite reads a deleted file through its open descriptor)."""
        await self._run(lambda: None)

    def erasure_pending(self) -> bool:
        """Whether erased data may still be in the write-ahead log (another process held a
        snapshot when it was erased; see `finish_erasure`)."""
        return self.backend.erasure_pending()

    async def finish_erasure(self, timeout_s: float = 30.0, interval_s: float = 0.05) -> bool:
        """Wait, at most `timeout_s`, until erased data is gone from every file (privacy
        rule 5); False if other processes held their snapshots all that time."""
        with trio.move_on_after(timeout_s):
            # Polled: the snapshots are other processes', with nothing here to wait on.
            while True:
                if await self._run(self.backend.finish_erasure):
                    return True
                await trio.sleep(interval_s)
        return False

    async def wait_change(self, seen: int, timeout_s: float) -> int:
        """Return when another process (or this one) changed devices after the `seen`-th
        change, or after `timeout_s` at most: at once on PostgreSQL (LISTEN/NOTIFY), after
        the whole timeout on SQLite, which tells nobody (a poll). Returns the count to pass
        as `seen` next time."""
        if not self.backend.notifies:
            await trio.sleep(timeout_s)
            return seen
        # Its own thread, not the calls' limiter: a wait must not hold up a query.
        return await trio.to_thread.run_sync(
            self.backend.wait_change, seen, timeout_s, abandon_on_cancel=True
        )

    async def _run(self, fn: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
        def call() -> _R:
            self.backend.check()
            try:
                return fn(*args, **kwargs)
            except RegistryError:
                raise
            except Exception as exc:
                why = self.backend.why_gone(exc)
                if why is None:
                    raise  # it can heal (a full disk, a lock): the caller refuses this unit
                raise RegistryGone(why) from exc

        try:
            return await trio.to_thread.run_sync(call, limiter=self._limiter)
        except RegistryGone as exc:
            if self.gone is None:
                self.gone = exc
                self._gone_event.set()
            raise
