"""The boundary around one unit of work: whatever goes wrong inside it ends that unit only.

A connection handler's unexpected exception is logged once with its traceback (the log
filter masks it), counted, and that connection is closed; the daemon goes on serving the
others. Knows no daemon.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable

import trio

__all__ = ["Handler", "serve_contained"]

log = logging.getLogger("nascloud.boundary")

Handler = Callable[[trio.SocketStream], Awaitable[None]]


async def serve_contained(
    handler: Handler,
    counts: Counter[str],
    listener: trio.SocketListener,
    *,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `listener` with `handler`, whose unexpected errors close that connection only
    (counted as `connection_error`)."""

    async def contained(stream: trio.SocketStream) -> None:
        try:
            await handler(stream)
        except Exception:
            counts["connection_error"] += 1
            log.exception("a connection handler failed")
            await trio.aclose_forcefully(stream)

    await trio.serve_listeners(contained, [listener], task_status=task_status)
