"""Agents' data connections (SPEC.md 7.3): a browser connection's bytes travel on a TCP
connection of their own that the agent opens to the relay and the kernel joins to the
browser's. Each starts with a token: of a browser connection waiting for it, or of one the
relay asked the agent to keep ready (the device's pool). Knows nothing of TLS or names.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import Counter
from typing import Final

import trio

import protocol
from config.relayd import LimitsSection, TunnelSection
from tunnel import Tunnel, TunnelStream

from ._pool import DataPools

__all__ = ["DataConnections"]

log = logging.getLogger("relayd.data")

REFILL_DELAY_S: Final = 0.005  # from taking a ready data connection to asking for its replacement


class _PendingData:
    """A browser connection waiting for the agent's data connection."""

    def __init__(self) -> None:
        self.arrived = trio.Event()
        self.socket: trio.socket.SocketType | None = None  # owned by the browser's task


class DataConnections:
    """The data listener's side: tokens handed out, sockets taken in, ready pools kept."""

    def __init__(
        self,
        port: int,
        tunnel_config: TunnelSection,
        limits: LimitsSection,
        counts: Counter[str],
    ) -> None:
        self.port = port  # as bound, announced in OPEN
        self.limits = limits
        self.counts = counts
        self.pending: dict[bytes, _PendingData] = {}
        self.pools: DataPools | None = None
        if tunnel_config.data_pool:
            self.pools = DataPools(
                tunnel_config.data_pool, tunnel_config.data_pool_idle_s, limits.handshake_timeout_s
            )

    @property
    def capabilities(self) -> frozenset[str]:
        """What every tunnel offers its agent (SPEC.md 7.3, 7.3.1)."""
        if self.pools is not None:
            return frozenset({protocol.DATA_CONNECTIONS, protocol.DATA_POOL})
        return frozenset({protocol.DATA_CONNECTIONS})

    def reload(self, tunnel_config: TunnelSection, limits: LimitsSection) -> None:
        self.limits = limits
        if self.pools is not None:  # 0: no more are asked for; those ready are used up
            self.pools.size = tunnel_config.data_pool
            self.pools.idle_s = tunnel_config.data_pool_idle_s

    async def open(
        self, tunnel: Tunnel, device: str, client: str, port: int
    ) -> tuple[TunnelStream, trio.socket.SocketType] | None:
        """A data connection for one browser connection, and the stream that opened it: a
        ready one if the agent keeps some, else one the agent is asked to make now. None if
        the agent could not."""
        if self.pools is not None and protocol.DATA_POOL in tunnel.conn.capabilities:
            ready, token, fresh = self.pools.want(device, tunnel)
            if fresh:
                pool = protocol.DataPool(tuple(fresh), self.port)
                tunnel.start_soon(self._refill, tunnel, pool)  # none if it is ending
            if ready is not None:
                data_socket = trio.socket.from_stdlib_socket(ready)
                control = await self._open_stream(tunnel, client, port, token)
                if control is None:
                    data_socket.close()
                    return None
                self.counts["https_ready_data_connection"] += 1
                return control, data_socket
        return await self._fresh(tunnel, client, port)

    async def _fresh(
        self, tunnel: Tunnel, client: str, port: int
    ) -> tuple[TunnelStream, trio.socket.SocketType] | None:
        token = os.urandom(protocol.DATA_TOKEN_BYTES)
        pending = self.pending[token] = _PendingData()
        try:
            control = await self._open_stream(tunnel, client, port, token)
            if control is None:
                return None
            data_socket = None
            try:
                with trio.move_on_after(self.limits.handshake_timeout_s):
                    await pending.arrived.wait()
                data_socket, pending.socket = pending.socket, None
                if data_socket is None:
                    self.counts["https_no_data_connection"] += 1
                    return None
                return control, data_socket
            finally:
                if data_socket is None:
                    await control.aclose()  # else the join closes it
        finally:
            self.pending.pop(token, None)
            if pending.socket is not None:
                pending.socket.close()  # came too late

    async def _open_stream(
        self, tunnel: Tunnel, client: str, port: int, token: bytes
    ) -> TunnelStream | None:
        try:
            return await tunnel.open_stream(protocol.Open("web", client, port, token, self.port))
        except (trio.BrokenResourceError, protocol.LocalProtocolError):
            self.counts["https_refused"] += 1
            return None

    async def _refill(self, tunnel: Tunnel, pool: protocol.DataPool) -> None:
        """Ask for ready connections a little after the one taken: made at once, their
        connects on the NAS and their accepts here ran just as that connection's first bytes
        crossed both processes, and held the GIL from both splicing threads (bench/RESULTS.md).
        They serve the next connection, which a round trip of the NAS's link would not reach
        in time anyway."""
        await trio.sleep(REFILL_DELAY_S)
        try:
            await tunnel.send_message(pool)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    def drop(self, device: str, tunnel: Tunnel) -> None:
        """A device's tunnel ended: its ready connections died with it."""
        if self.pools is not None:
            self.pools.drop(device, tunnel)

    async def connection(self, stream: trio.SocketStream) -> None:
        """An agent's data connection: its first 16 bytes are the token of a waiting browser
        connection, which then owns the socket, or of a connection the relay asked the agent
        to keep ready, which then waits in the device's pool."""
        token = b""
        with trio.move_on_after(self.limits.handshake_timeout_s):
            while len(token) < protocol.DATA_TOKEN_BYTES:
                chunk = await stream.receive_some(protocol.DATA_TOKEN_BYTES - len(token))
                if not chunk:
                    break
                token += chunk
        if len(token) == protocol.DATA_TOKEN_BYTES:
            # The socket leaves this handler's stream (which the listener closes when the
            # handler returns): from here on, whoever takes it closes it.
            sock = socket.socket(fileno=stream.socket.detach())
            pending = self.pending.pop(token, None)
            if pending is not None:
                pending.socket = trio.socket.from_stdlib_socket(sock)
                pending.arrived.set()
                return
            if self.pools is not None and self.pools.arrive(token, sock):
                return  # it waits in the pool, with no task
            sock.close()
        self.counts["data_connection_refused"] += 1
        await trio.aclose_forcefully(stream)

    async def sweep_pools(self) -> None:
        """Close the ready data connections of devices no browser wants any more."""
        if self.pools is None:
            return
        while True:
            await trio.sleep(min(15.0, self.pools.idle_s / 4))
            self.pools.sweep()
