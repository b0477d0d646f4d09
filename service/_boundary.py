"""The boundary around one unit of work: whatever goes wrong inside it ends that unit only.

A unit (a datagram, a DNS message on TCP, an HTTP request, a browser connection, a tunnel's
frames, an agent's message, a reload) that raises an unexpected exception is answered or
dropped by its caller, logged once at ERROR with its traceback (the log filter masks it),
and counted in `nascloud_handler_errors_total{unit=...}`; the daemon goes on serving the
others. Knows no daemon.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import trio

from httpapi import Metric

__all__ = ["Boundary", "Handler", "LogBudget", "serve_contained"]

LOG_PER_SECOND = 10  # lines a second for one kind of event, the rest counted

log = logging.getLogger("nascloud.boundary")

Handler = Callable[[trio.SocketStream], Awaitable[None]]


class LogBudget:
    """At most `per_second` lines a second for one kind of event; the rest are counted and
    told in one line when the next second begins, so that a flood cannot fill the journal."""

    def __init__(
        self,
        what: str,
        *,
        per_second: int = LOG_PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.per_second = per_second
        self._clock = clock
        self._window = -1.0
        self._count = 0
        self._suppressed = 0

    def allow(self) -> bool:
        now = self._clock()
        if now - self._window >= 1.0:
            if self._suppressed:
                log.warning("%d more %s were not logged", self._suppressed, self.what)
            self._window, self._count, self._suppressed = now, 0, 0
        if self._count < self.per_second:
            self._count += 1
            return True
        self._suppressed += 1
        return False


class Boundary:
    """A daemon's count of failed units of work, by unit (fixed words only: privacy rule 8)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.errors: Counter[str] = Counter()
        # One input repeated can fail a million times: the log gets a budget, the count all.
        self._log = LogBudget("failed units of work", clock=clock)

    def failed(self, unit: str) -> None:
        """Call from an ``except`` block: count the exception being handled, and log it with
        its traceback once (within the budget)."""
        self.errors[unit] += 1
        if self._log.allow():
            log.exception("a unit of work failed (%s); it alone is dropped", unit)

    @contextmanager
    def contain(self, unit: str) -> Iterator[None]:
        """Run the body as one unit: an unexpected exception is logged, counted and stopped
        here. Cancellation and KeyboardInterrupt pass (they are not failures of the unit)."""
        try:
            yield
        except Exception:
            self.failed(unit)

    def contained(self, handler: Handler, unit: str) -> Handler:
        """`handler` with each call one `unit`: an unexpected error closes that connection
        only."""

        async def contained(stream: trio.SocketStream) -> None:
            try:
                await handler(stream)
            except Exception:
                self.failed(unit)
                await trio.aclose_forcefully(stream)

        return contained

    def metric(self) -> Metric:
        return Metric.by(
            "nascloud_handler_errors_total",
            "counter",
            "Units of work that failed unexpectedly and were dropped alone.",
            "unit",
            {unit: float(n) for unit, n in self.errors.items()},
        )


async def serve_contained(
    handler: Handler,
    boundary: Boundary,
    unit: str,
    listener: trio.SocketListener,
    *,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `listener` with `handler`, each connection one `unit`: an unexpected error
    closes that connection only."""
    await trio.serve_listeners(
        boundary.contained(handler, unit), [listener], task_status=task_status
    )
