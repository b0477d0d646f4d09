"""Join two TCP sockets in the kernel with splice(2), for bytes that need no looking at.

Used for HTTPS passed through by the relay and for data connections on the agent: the bytes
are already encrypted end to end, so they go socket -> pipe -> socket without being copied
into Python. Beside the protocol core, not in it: it does I/O. Linux only.
"""

from __future__ import annotations

import fcntl
import os
import socket
from typing import Final

import trio

__all__ = ["splice_sockets"]

CHUNK: Final = 1024 * 1024
F_SETPIPE_SZ: Final = 1031
F_GETPIPE_SZ: Final = 1032
_FLAGS: Final = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
_YIELD_EVERY: Final = 16  # let other tasks run while data keeps flowing


async def _one_way(source: trio.socket.SocketType, sink: trio.socket.SocketType) -> int:
    read_end, write_end = os.pipe()
    try:
        try:
            fcntl.fcntl(write_end, F_SETPIPE_SZ, CHUNK)
        except OSError:
            pass  # a smaller pipe only means more rounds
        capacity = fcntl.fcntl(write_end, F_GETPIPE_SZ)
        total = 0
        rounds = 0
        drained = False
        while True:
            if drained:
                # The last read took less than asked: the socket is most likely empty, and
                # waiting first saves a splice that would fail (a syscall per message).
                await trio.lowlevel.wait_readable(source)
            try:
                moved = os.splice(source.fileno(), write_end, capacity, flags=_FLAGS)
            except BlockingIOError:
                drained = True
                continue
            if moved == 0:
                break  # EOF from the source
            drained = moved < capacity
            left = moved
            while left:
                try:
                    left -= os.splice(read_end, sink.fileno(), left, flags=_FLAGS)
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(sink)
            total += moved
            rounds += 1
            if rounds % _YIELD_EVERY == 0:
                await trio.lowlevel.checkpoint()
        try:
            sink.shutdown(socket.SHUT_WR)  # pass the half-close on
        except OSError:
            pass
        return total
    finally:
        os.close(read_end)
        os.close(write_end)


async def splice_sockets(a: trio.socket.SocketType, b: trio.socket.SocketType) -> tuple[int, int]:
    """Move bytes both ways until both directions have ended, then close both sockets.

    Returns the bytes moved from `a` to `b` and from `b` to `a`. An error in either direction
    (a reset) ends both.
    """
    counts = [0, 0]

    async def run(source: trio.socket.SocketType, sink: trio.socket.SocketType, index: int) -> None:
        try:
            counts[index] = await _one_way(source, sink)
        except OSError:
            nursery.cancel_scope.cancel()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, a, b, 0)
            nursery.start_soon(run, b, a, 1)
    finally:
        a.close()
        b.close()
    return counts[0], counts[1]
