"""Running a tunnel: the handshake over a Trio stream, then the tunnel's reader, writer and
tasks in one nursery for the body of an ``async with``, closed with GOAWAY on the way out.

Knows nothing of TLS or of who runs the tunnel.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from protocol import Connection, LocalProtocolError

from ._handshake import Authenticator, run_handshake
from ._tunnel import (
    DEFAULT_MAX_TASKS,
    DEFAULT_MAX_UNSENT_MESSAGES,
    DEFAULT_RECEIVE_BYTES,
    Tunnel,
)

__all__ = ["Authenticator", "open_tunnel"]


@asynccontextmanager
async def open_tunnel(
    transport: trio.abc.Stream,
    conn: Connection,
    *,
    authenticate: Authenticator | None = None,
    handshake_timeout_s: float = 10.0,
    keepalive_interval_s: float | None = None,
    keepalive_timeout_s: float | None = None,
    receive_bytes: int = DEFAULT_RECEIVE_BYTES,
    accept_backlog: int = 64,
    max_tasks: int = DEFAULT_MAX_TASKS,
    max_unsent_messages: int = DEFAULT_MAX_UNSENT_MESSAGES,
) -> AsyncIterator[Tunnel]:
    """Handshake over `transport`, then run the tunnel for the body of the ``async with``.

    A server passes `authenticate`. Handshake failures raise RemoteProtocolError (the peer's
    fault or a refusal) or trio.TooSlowError, with the transport closed. On exit the tunnel is
    closed with GOAWAY.
    """
    if (keepalive_interval_s is None) != (keepalive_timeout_s is None):
        raise LocalProtocolError(
            "set both keepalive_interval_s and keepalive_timeout_s, or neither"
        )
    tunnel = Tunnel(
        transport,
        conn,
        receive_bytes=receive_bytes,
        keepalive_interval_s=keepalive_interval_s,
        keepalive_timeout_s=keepalive_timeout_s,
        accept_backlog=accept_backlog,
        max_tasks=max_tasks,
        max_unsent_messages=max_unsent_messages,
    )
    try:
        with trio.fail_after(handshake_timeout_s):
            tunnel.handshake, tunnel._pending_events = await run_handshake(
                transport, conn, authenticate, receive_bytes
            )
    except trio.TooSlowError:
        await trio.aclose_forcefully(transport)
        raise
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tunnel._run_background)
        nursery.start_soon(tunnel._run_writer)
        tunnel._tasks.bind(nursery)
        try:
            yield tunnel
        finally:
            with trio.CancelScope(shield=True):
                await tunnel.aclose()
