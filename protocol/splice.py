"""Join two TCP sockets in the kernel with splice(2), for bytes that need no looking at.

Used for HTTPS passed through by the relay and for data connections on the agent: the bytes
are already encrypted end to end, so they go socket -> pipe -> socket without being copied
into Python. The joining is done by one thread per process on its own epoll (`_splicer`):
through a Trio task, each crossing cost a task wake-up, a one-shot epoll re-arm and a failed
splice, about twice the CPU (bench/relay_parts.py). Beside the protocol core, not in it: it
does I/O. Linux only.
"""

from __future__ import annotations

import trio

from ._splicer import Splicer

__all__ = ["splice_sockets"]

_splicer = Splicer()


async def splice_sockets(a: trio.socket.SocketType, b: trio.socket.SocketType) -> tuple[int, int]:
    """Move bytes both ways until both directions have ended, then close both sockets.

    Returns the bytes moved from `a` to `b` and from `b` to `a`. A half-close is passed on;
    an error in either direction (a reset) ends both. Cancelled: both sockets are closed.
    """
    try:
        return await _splicer.join(a, b)
    finally:
        a.close()
        b.close()
