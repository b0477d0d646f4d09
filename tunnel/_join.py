"""Copying two Trio streams into each other until both directions end, half-closes passed on.

Knows nothing of tunnels: any two `trio.abc.Stream`s.
"""

from __future__ import annotations

import trio

__all__ = ["join_streams"]


async def join_streams(
    a: trio.abc.Stream, b: trio.abc.Stream, *, chunk_bytes: int = 256 * 1024
) -> tuple[int, int]:
    """Copy bytes both ways between two streams until both directions have ended.

    An EOF in one direction is passed on as a half-close (send_eof) where the other stream
    supports it, so protocols that finish sending before reading keep working. If either
    stream breaks, both are closed. Returns the bytes copied from `a` to `b` and back.
    """
    counts = [0, 0]

    async def copy(source: trio.abc.Stream, sink: trio.abc.Stream, index: int) -> None:
        while True:
            data = await source.receive_some(chunk_bytes)
            if not data:
                break
            await sink.send_all(data)
            counts[index] += len(data)
        if isinstance(sink, trio.abc.HalfCloseableStream):
            await sink.send_eof()
        else:
            await sink.aclose()

    try:
        async with trio.open_nursery() as nursery:

            async def guarded(source: trio.abc.Stream, sink: trio.abc.Stream, index: int) -> None:
                try:
                    await copy(source, sink, index)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    nursery.cancel_scope.cancel()

            nursery.start_soon(guarded, a, b, 0)
            nursery.start_soon(guarded, b, a, 1)
    finally:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(a)
            await trio.aclose_forcefully(b)
    return counts[0], counts[1]
