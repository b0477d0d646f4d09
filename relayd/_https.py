"""Browsers' HTTPS: routed by the ClientHello's server name and passed through untouched, so
the NAS ends TLS and the relay never holds plaintext (privacy rule 1: metadata only).

One pass-through path: the ClientHello already read goes first, then the browser's socket is
joined to a data connection in the kernel, or, for an agent without data connections, copied
into a tunnel stream. Unknown names, no SNI, garbage and devices not connected get the same
silent close, so nothing tells whether a device exists.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from typing import Final

import trio

import protocol
from config.relayd import LimitsSection
from httpapi import Histogram
from registry import mask_address
from tunnel import Tunnel, TunnelStream, join_streams, splice_sockets

from ._agents import Agents
from ._data import DataConnections
from ._install import InstallSite, Recorder
from ._names import LinkZone
from ._sni import NeedMore, ServerName, parse_client_hello

__all__ = ["HttpsIngress"]

log = logging.getLogger("relayd")

REFUSAL_WAIT_S: Final = 1.0  # how long a join that brought nothing back waits for a reset


class HttpsIngress:
    """The HTTPS listener's handler, and the count of browser connections it passes on."""

    def __init__(
        self,
        limits: LimitsSection,
        names: LinkZone,
        agents: Agents,
        data: DataConnections | None,
        install: InstallSite | None,
        record: Recorder,
        counts: Counter[str],
    ) -> None:
        self.limits = limits
        self.names = names
        self.agents = agents
        self.data = data
        self.install = install
        self.record = record
        self.counts = counts
        self.active: Counter[str] = Counter()  # browser connections per device
        # From the accept to the ClientHello handed to the NAS's side (a data connection or
        # a tunnel stream): all the relay adds before the NAS can answer. Later bytes move
        # in the kernel (or through the tunnel's credit), at the pace of the two ends.
        self.connect_seconds = Histogram(
            "nascloud_relay_browser_connect_seconds",
            "Seconds from accepting a browser's HTTPS connection to its ClientHello passed to "
            "the NAS (connections passed through only).",
        )
        self._changed: trio.Event | None = None  # set as browser connections end, if awaited

    async def browsers_done(self) -> None:
        """Return once no browser connection is open (a graceful stop waits for this)."""
        while self.active:
            self._changed = trio.Event()
            await self._changed.wait()

    async def connection(self, stream: trio.SocketStream) -> None:
        accepted = trio.current_time()  # the accept returned just before this task started
        limits = self.limits
        data = b""
        result: object = NeedMore()
        try:
            client, port = stream.socket.getpeername()[:2]  # ENOTCONN if already reset
            with trio.move_on_after(limits.handshake_timeout_s):
                while isinstance(result, NeedMore):
                    chunk = await stream.receive_some(limits.max_client_hello_bytes)
                    if not chunk:
                        break
                    data += chunk
                    result = parse_client_hello(data, limits.max_client_hello_bytes)
            name = result.name if isinstance(result, ServerName) else None
            if name and self.install is not None and self.install.owns(name):
                await self.install.https_connection(stream, data, name, client, port)
                return
            device = self.names.device_for(name) if name else None
            tunnel = self.agents.tunnel_of(device) if device else None
            if device is None or tunnel is None:
                self.counts["https_refused"] += 1
                return
            if self.active[device] >= limits.max_streams_per_tunnel:
                self.counts["https_refused_limit"] += 1
                return
            await self._pass_on(stream, device, tunnel, client, port, data, accepted)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def _pass_on(
        self,
        stream: trio.SocketStream,
        device: str,
        tunnel: Tunnel,
        client: str,
        port: int,
        hello: bytes,
        accepted: float,
    ) -> None:
        """Count, pass through, record: one browser connection to `device`."""
        self.active[device] += 1
        started = time.time()
        moved: tuple[int, int] | None = None
        try:
            moved = await self._pass_through(stream, device, tunnel, client, port, hello, accepted)
        finally:
            self.active[device] -= 1
            if not self.active[device]:
                del self.active[device]
            if self._changed is not None:
                self._changed.set()
            sent, received = moved or (0, 0)
            self.record(
                started, device, client, "https", sent, received, "ok" if moved else "refused"
            )
        if moved is None:
            return
        self.counts["bytes_from_browsers"] += sent
        self.counts["bytes_to_browsers"] += received
        log.info(
            "https %s from %s: %d bytes in, %d out", device, mask_address(client), sent, received
        )

    async def _pass_through(
        self,
        stream: trio.SocketStream,
        device: str,
        tunnel: Tunnel,
        client: str,
        port: int,
        hello: bytes,
        accepted: float,
    ) -> tuple[int, int] | None:
        """Bytes from and to the browser, or None if the device could not take it."""
        if self.data is not None and protocol.DATA_CONNECTIONS in tunnel.conn.capabilities:
            opened = await self.data.open(tunnel, device, client, port)
            if opened is None:
                return None
            self.counts["https_connections"] += 1
            control, data_socket = opened
            return await self._join(stream, control, data_socket, hello, accepted)
        try:
            tunnel_stream = await tunnel.open_stream(protocol.Open("web", client, port))
        except (trio.BrokenResourceError, protocol.LocalProtocolError):
            self.counts["https_refused"] += 1
            return None
        await tunnel_stream.send_all(hello)
        self.connect_seconds.observe(trio.current_time() - accepted)
        self.counts["https_connections"] += 1
        sent, received = await join_streams(stream, tunnel_stream)
        return sent + len(hello), received

    async def _join(
        self,
        stream: trio.SocketStream,
        control: TunnelStream,
        data_socket: trio.socket.SocketType,
        hello: bytes,
        accepted: float,
    ) -> tuple[int, int] | None:
        """Pass a browser connection on to its data connection: the ClientHello already read
        first, then both sockets joined in the kernel. None if the agent refused it: it then
        resets the stream and closes the data connection, and the reset may trail the close,
        so a connection that brought nothing back waits for it (at most a second). Closes the
        data connection and the stream."""
        try:
            view = memoryview(hello)
            while view:
                view = view[await data_socket.send(view) :]
            self.connect_seconds.observe(trio.current_time() - accepted)
            sent, received = await splice_sockets(stream.socket, data_socket)
            if not received:
                with (
                    trio.move_on_after(REFUSAL_WAIT_S),
                    contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
                ):
                    await control.receive_some()
        finally:
            data_socket.close()
            await control.aclose()
        if control.reset_code == protocol.ErrorCode.SERVICE_UNAVAILABLE:
            self.counts["https_refused"] += 1  # every refusal, as the connection record says
            self.counts["https_refused_by_nas"] += 1  # of which after it was passed on
            return None  # the agent could not reach the service and closed the connection
        return sent + len(hello), received
