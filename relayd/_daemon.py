"""relayd as a process: the agents' tunnel listener and the browsers' ingress.

HTTPS is routed by the ClientHello's server name and passed through untouched: the NAS ends
TLS, so the relay never holds plaintext. Plain HTTP is answered with a redirect to HTTPS.
Only metadata is logged, with client addresses masked.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import socket
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import h11
import trio

import protocol
from config import ConfigError, HostPort, RelaydConfig, load
from httpapi import HttpServer, Metric, metrics_handler
from registry import (
    RESERVED_DEVICE_NAMES,
    AccessLogKeys,
    AccessLogWriter,
    Registry,
    mask_address,
)
from service import until_stopped
from tunnel import (
    TlsStream,
    Tunnel,
    TunnelStream,
    join_streams,
    load_key,
    open_tunnel,
    splice_sockets,
)

from ._ddns import DdnsLink
from ._install import InstallSite, tls_context
from ._lookup import LookupApi, Presence
from ._pool import DataPools
from ._sni import NeedMore, ServerName, parse_client_hello

__all__ = ["Relayd", "main_async", "serve"]

log = logging.getLogger("relayd")

MAX_DDNS_IN_FLIGHT = 16  # DDNS updates one device may have waiting on ddnsd at once
REFILL_DELAY_S = 0.005  # from taking a ready data connection to asking for its replacement
_DEVICES_ONLY: Final = frozenset({protocol.AuthKind.DEVICE})
_WITH_INSTALL: Final = frozenset({protocol.AuthKind.DEVICE, protocol.AuthKind.INSTALL})


class _PendingData:
    """A browser connection waiting for the agent's data connection."""

    def __init__(self) -> None:
        self.arrived = trio.Event()
        self.socket: trio.socket.SocketType | None = None  # owned by the browser's task


@dataclass
class Relayd:
    config: RelaydConfig
    registry: Registry
    tunnels: dict[str, Tunnel] = field(default_factory=dict)
    per_address: Counter[str] = field(default_factory=Counter)
    listening: dict[str, list[str]] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    ddns: DdnsLink | None = None
    presence: Presence = field(default_factory=Presence)
    context: ssl.SSLContext | None = None  # the tunnel listener's, replaced on reload
    access_log: AccessLogWriter | None = None
    https_port: int | None = None  # as bound: redirects and lookups point browsers here
    data_port: int | None = None  # as bound, announced in OPEN
    active: Counter[str] = field(default_factory=Counter)  # browser connections per device
    pending: dict[bytes, _PendingData] = field(default_factory=dict)
    install: InstallSite | None = None  # the Cloud Install site, if configured
    background: trio.Nursery | None = None  # for work that outlives no tunnel by much
    ddns_in_flight: Counter[str] = field(default_factory=Counter)  # DDNS updates per device
    settings: protocol.Settings | None = None  # what every tunnel offers, shared
    pools: DataPools | None = None  # ready data connections, if data connections are on
    stopping: bool = False  # graceful stop: no new tunnels, browsers finish
    browsers_changed: trio.Event | None = None  # set as browser connections end, if awaited

    # -- routing ---------------------------------------------------------------------------

    def device_for(self, host: str) -> str | None:
        """The device a host name under the link zone belongs to: `<device>.<zone>` and every
        name below it."""
        zone = self.config.ingress.link_zone
        host = host.lower().rstrip(".")
        if not host.endswith("." + zone):
            return None
        labels = host[: -len(zone) - 1].split(".")
        if labels[-1] in RESERVED_DEVICE_NAMES:
            return None  # the relay's own names (the install site), never a device's
        return labels[-1] or None

    # -- agents ----------------------------------------------------------------------------

    def _tunnel_settings(self) -> protocol.Settings:
        """One frozen Settings shared by every tunnel (thousands of idle tunnels)."""
        capabilities: frozenset[str] = frozenset()
        if self.data_port is not None:
            capabilities = frozenset({protocol.DATA_CONNECTIONS})
            if self.pools is not None:
                capabilities |= {protocol.DATA_POOL}
        if self.settings is None or self.settings.capabilities != capabilities:
            # Agents open no streams towards the relay: refuse any.
            self.settings = protocol.Settings(max_streams=0, capabilities=capabilities)
        return self.settings

    async def _authenticate(self, request: protocol.AuthenticationRequested) -> bytes | None:
        if request.kind == protocol.AuthKind.INSTALL:
            # An uninitialised NAS has no identity yet: the signature proves it holds the key
            # it made for its install window, and that key is all it is known by.
            return request.public_key if self.install is not None else None
        device = await self.registry.get_device(request.name)
        return device.public_key if device is not None else None

    async def agent_connection(self, stream: trio.SocketStream) -> None:
        if self.stopping:
            # Draining: an agent whose tunnel was just closed goes to the next relay process.
            await trio.aclose_forcefully(stream)
            return
        address = stream.socket.getpeername()[0]
        limits = self.config.limits
        if self.per_address[address] >= limits.max_tunnels_per_address:
            self.counts["tunnel_refused_limit"] += 1
            await trio.aclose_forcefully(stream)
            return
        self.per_address[address] += 1
        assert self.context is not None  # set by serve() before any listener runs
        tls: trio.abc.Stream = stream
        conn = protocol.Connection(
            protocol.Role.SERVER,
            server_name=self.config.relay.name,
            nonce=os.urandom(32),
            settings=self._tunnel_settings(),
            accepted_kinds=_WITH_INSTALL if self.install is not None else _DEVICES_ONLY,
        )
        name = ""
        try:
            with trio.fail_after(limits.handshake_timeout_s):
                tls = await TlsStream.connect(stream, self.context, server_side=True)
            async with open_tunnel(
                tls,
                conn,
                authenticate=self._authenticate,
                handshake_timeout_s=limits.handshake_timeout_s,
                keepalive_interval_s=self.config.tunnel.keepalive_interval_s,
                keepalive_timeout_s=self.config.tunnel.keepalive_timeout_s,
            ) as tunnel:
                if conn.peer_kind == protocol.AuthKind.INSTALL:
                    assert self.install is not None  # install clients are accepted only then
                    await self.install.serve_tunnel(tunnel, address)
                    return
                name = conn.peer_name
                tunnel.on_message = lambda tunnel, message: self._on_message(
                    tunnel, name, address, message
                )
                previous = self.tunnels.get(name)
                self.tunnels[name] = tunnel
                # Before any await: the reader may hand over the agent's Register at once.
                self.presence.connected(name, address)
                if previous is not None:
                    # The same device again (it reconnected): the new tunnel wins.
                    self.counts["tunnel_replaced"] += 1
                    await previous.aclose(protocol.ErrorCode.CANCEL, "replaced by a new tunnel")
                self.counts["tunnel_up"] += 1
                log.info("tunnel up for %s from %s", name, mask_address(address))
                await self.registry.device_seen(name)
                await tunnel.wait_closed()
        # except*: errors from inside the tunnel's nursery arrive as exception groups.
        except* (protocol.RemoteProtocolError, trio.TooSlowError) as group:
            self.counts["tunnel_refused"] += 1
            log.info("tunnel from %s refused: %s", mask_address(address), group.exceptions[0])
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        except* Exception as group:
            # One bad tunnel never takes the relay down: log it and close this one only.
            self.counts["tunnel_error"] += 1
            log.error("tunnel from %s failed", mask_address(address), exc_info=group)
        finally:
            self.per_address[address] -= 1
            if not self.per_address[address]:
                del self.per_address[address]
            if name and self.tunnels.get(name) is not None and self.tunnels[name].closed:
                del self.tunnels[name]
                self.presence.disconnected(name)
            if name and self.pools is not None:
                self.pools.drop(name, tunnel)
            await trio.aclose_forcefully(tls)

    def _on_message(
        self, tunnel: Tunnel, device: str, address: str, message: protocol.AppMessage
    ) -> None:
        """An agent's message, from its tunnel's reader: no task waits per tunnel (memory)."""
        assert self.background is not None  # set by serve() before any listener runs
        if isinstance(message, protocol.Register):
            self.counts["register"] += 1
            self.presence.registered(device, message.lan_addresses)
        elif isinstance(message, protocol.DdnsUpdate):
            if self.ddns_in_flight[device] >= MAX_DDNS_IN_FLIGHT:
                # An agent that floods updates gets refusals, not a task each.
                self.counts["ddns_rate_limited"] += 1
                error = protocol.Error(
                    protocol.ErrorCode.RATE_LIMITED, "too many updates at once", message.request_id
                )
                self.background.start_soon(self._reply, tunnel, error)
                return
            self.ddns_in_flight[device] += 1
            self.background.start_soon(self._ddns_update, tunnel, device, address, message)
        else:
            request_id = getattr(message, "request_id", None)
            error = protocol.Error(
                protocol.ErrorCode.INVALID_REQUEST, "not handled here", request_id
            )
            self.background.start_soon(self._reply, tunnel, error)

    @staticmethod
    async def _reply(tunnel: Tunnel, reply: protocol.AppMessage) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await tunnel.send_message(reply)

    async def _refill(self, tunnel: Tunnel, pool: protocol.DataPool) -> None:
        """Ask for ready connections a little after the one taken: made at once, their
        connects on the NAS and their accepts here ran just as that connection's first bytes
        crossed both processes, and held the GIL from both splicing threads (bench/RESULTS.md).
        They serve the next connection, which a round trip of the NAS's link would not reach
        in time anyway."""
        await trio.sleep(REFILL_DELAY_S)
        await self._reply(tunnel, pool)

    async def _ddns_update(
        self, tunnel: Tunnel, device: str, address: str, update: protocol.DdnsUpdate
    ) -> None:
        try:
            await self._forward_update(tunnel, device, address, update)
        finally:
            self.ddns_in_flight[device] -= 1
            if not self.ddns_in_flight[device]:
                del self.ddns_in_flight[device]

    async def _forward_update(
        self, tunnel: Tunnel, device: str, address: str, update: protocol.DdnsUpdate
    ) -> None:
        if update.device != device:
            # A device may change its own names only: the relay vouches for nothing else.
            self.counts["ddns_refused"] += 1
            reply: protocol.AppMessage = protocol.Error(
                protocol.ErrorCode.NOT_PERMITTED, "not your device", update.request_id
            )
        elif self.ddns is None:
            reply = protocol.Error(
                protocol.ErrorCode.SERVICE_UNAVAILABLE, "no DNS here", update.request_id
            )
        else:
            reply = await self.ddns.forward(update, address)
            self.counts["ddns_forwarded"] += 1
        await self._reply(tunnel, reply)

    def record(
        self,
        started: float,
        device: str,
        client: str,
        ingress: str,
        bytes_in: int,
        bytes_out: int,
        result: str,
    ) -> None:
        """Queue a connection record for the encrypted access log (metadata only)."""
        if self.access_log is not None:
            self.access_log.add(started, device, client, ingress, bytes_in, bytes_out, result)

    def metrics(self) -> list[Metric]:
        """Counters and gauges only, labelled with fixed words (privacy rule 8)."""
        events = {k: float(v) for k, v in self.counts.items() if not k.startswith("bytes_")}
        return [
            Metric.single(
                "nascloud_relay_tunnels", "gauge", "Agent tunnels up.", len(self.tunnels)
            ),
            Metric.single(
                "nascloud_relay_browser_connections",
                "gauge",
                "Browser connections open.",
                sum(self.active.values()),
            ),
            Metric.by(
                "nascloud_relay_bytes_total",
                "counter",
                "Passed-through bytes.",
                "direction",
                {
                    "from_browsers": self.counts["bytes_from_browsers"],
                    "to_browsers": self.counts["bytes_to_browsers"],
                },
            ),
            Metric.single(
                "nascloud_relay_ready_data_connections",
                "gauge",
                "Data connections agents keep ready for browsers to come.",
                self.pools.ready_count() if self.pools else 0,
            ),
            Metric.single(
                "nascloud_relay_install_tunnels",
                "gauge",
                "Install tunnels of uninitialised NAS up.",
                len(self.install.installs) if self.install else 0,
            ),
            Metric.single(
                "nascloud_relay_install_sessions",
                "gauge",
                "Relayed install sessions open.",
                len(self.install.sessions) if self.install else 0,
            ),
            Metric.by("nascloud_relay_events_total", "counter", "Events by kind.", "event", events),
        ]

    def reload(self, new: RelaydConfig) -> None:
        """Take a new configuration without dropping a tunnel or a stream: limits and
        timeouts apply to what comes next, certificates are read again. Listening
        addresses need a restart."""
        old = self.config
        if (old.tunnel.listen, old.ingress.https_listen, old.ingress.http_listen) != (
            new.tunnel.listen,
            new.ingress.https_listen,
            new.ingress.http_listen,
        ) or old.relay.name != new.relay.name:
            log.warning("listening addresses and the relay name change only with a restart")
        self.context = _tls_server_context(new)
        if self.pools is not None:  # 0: no more are asked for; those ready are used up
            self.pools.size = new.tunnel.data_pool
            self.pools.idle_s = new.tunnel.data_pool_idle_s
        if (old.install is None) != (new.install is None):
            log.warning("the install site is turned on or off only with a restart")
        elif self.install is not None and new.install is not None:
            self.install.context = tls_context(new.install)
            self.install.config = new.install
            self.install.limits = new.limits
        self.config = new
        log.info("configuration reloaded")

    async def follow_deletions(self, interval_s: float = 2.0) -> None:
        """Close the tunnel of a device that was unregistered (by the operator CLI, another
        process): once a device is deleted, nobody reaches it (privacy rule 5)."""
        while True:
            await trio.sleep(interval_s)
            try:
                names = set(await self.registry.device_names())
            except Exception:
                log.exception("reading the device list failed; will retry")
                continue
            for name in [n for n in self.tunnels if n not in names]:
                tunnel = self.tunnels.pop(name)
                self.presence.disconnected(name)
                self.counts["tunnel_closed_deleted"] += 1
                log.info("closing the tunnel of %s: the device was unregistered", name)
                await tunnel.aclose(protocol.ErrorCode.NOT_PERMITTED, "device unregistered")

    async def sweep_pools(self) -> None:
        """Close the ready data connections of devices no browser wants any more."""
        assert self.pools is not None
        while True:
            await trio.sleep(min(15.0, self.pools.idle_s / 4))
            self.pools.sweep()

    # -- browsers --------------------------------------------------------------------------

    async def browsers_done(self) -> None:
        """Return once no browser connection is open (a graceful stop waits for this)."""
        while self.active:
            self.browsers_changed = trio.Event()
            await self.browsers_changed.wait()

    async def https_connection(self, stream: trio.SocketStream) -> None:
        client, port = stream.socket.getpeername()[:2]
        limits = self.config.limits
        data = b""
        result: object = NeedMore()
        try:
            with trio.move_on_after(limits.handshake_timeout_s):
                while isinstance(result, NeedMore):
                    chunk = await stream.receive_some(limits.max_client_hello_bytes)
                    if not chunk:
                        break
                    data += chunk
                    result = parse_client_hello(data, limits.max_client_hello_bytes)
            if (
                self.install is not None
                and isinstance(result, ServerName)
                and result.name
                and self.install.owns(result.name)
            ):
                await self.install.https_connection(stream, data, result.name, client, port)
                return
            device = (
                self.device_for(result.name)
                if isinstance(result, ServerName) and result.name
                else None
            )
            tunnel = self.tunnels.get(device) if device else None
            if tunnel is None or tunnel.closed:
                # Unknown name, no SNI, garbage or a device that is not connected: the same
                # silent close for all, so nothing tells whether a device exists.
                self.counts["https_refused"] += 1
                return
            assert device is not None
            if self.active[device] >= limits.max_streams_per_tunnel:
                self.counts["https_refused_limit"] += 1
                return
            self.active[device] += 1
            started = time.time()
            moved: tuple[int, int] | None = None
            try:
                moved = await self._pass_through(stream, device, tunnel, client, port, data)
            finally:
                self.active[device] -= 1
                if not self.active[device]:
                    del self.active[device]
                if self.browsers_changed is not None:
                    self.browsers_changed.set()
                sent, received = moved or (0, 0)
                self.record(
                    started, device, client, "https", sent, received, "ok" if moved else "refused"
                )
            if moved is None:
                return
            self.counts["bytes_from_browsers"] += sent
            self.counts["bytes_to_browsers"] += received
            log.info(
                "https %s from %s: %d bytes in, %d out",
                device,
                mask_address(client),
                sent,
                received,
            )
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def _pass_through(
        self,
        stream: trio.SocketStream,
        device: str,
        tunnel: Tunnel,
        client: str,
        port: int,
        data: bytes,
    ) -> tuple[int, int] | None:
        """Hand a browser connection to the device: on a spliced data connection when the
        agent offers them (a ready one if it keeps some), else as a tunnel stream. None if
        the device could not take it."""
        if protocol.DATA_CONNECTIONS in tunnel.conn.capabilities and self.data_port:
            if self.pools is not None and protocol.DATA_POOL in tunnel.conn.capabilities:
                ready, token, fresh = self.pools.want(device, tunnel)
                if fresh:
                    assert self.background is not None  # set by serve()
                    pool = protocol.DataPool(tuple(fresh), self.data_port)
                    self.background.start_soon(self._refill, tunnel, pool)
                if ready is not None:
                    return await self._on_ready(stream, tunnel, client, port, data, token, ready)
            return await self._spliced(stream, tunnel, client, port, data)
        try:
            tunnel_stream = await tunnel.open_stream("web", client, port)
        except (trio.BrokenResourceError, protocol.LocalProtocolError):
            self.counts["https_refused"] += 1
            return None
        await tunnel_stream.send_all(data)
        self.counts["https_connections"] += 1
        sent, received = await join_streams(stream, tunnel_stream)
        return sent + len(data), received

    async def _spliced(
        self, stream: trio.SocketStream, tunnel: Tunnel, client: str, port: int, hello: bytes
    ) -> tuple[int, int] | None:
        """Have the agent open a data connection for this browser connection, then join the
        two sockets in the kernel. None if the agent could not."""
        token = os.urandom(protocol.DATA_TOKEN_BYTES)
        pending = self.pending[token] = _PendingData()
        try:
            try:
                control = await tunnel.open_stream("web", client, port, token, self.data_port)
            except (trio.BrokenResourceError, protocol.LocalProtocolError):
                self.counts["https_refused"] += 1
                return None
            try:
                with trio.move_on_after(self.config.limits.handshake_timeout_s):
                    await pending.arrived.wait()
                data_socket, pending.socket = pending.socket, None
                if data_socket is None:
                    self.counts["https_no_data_connection"] += 1
                    return None
                self.counts["https_connections"] += 1
                return await self._join(stream, control, data_socket, hello)
            finally:
                await control.aclose()  # closed by the join already, if it ran
        finally:
            self.pending.pop(token, None)
            if pending.socket is not None:
                pending.socket.close()  # came too late

    async def _on_ready(
        self,
        stream: trio.SocketStream,
        tunnel: Tunnel,
        client: str,
        port: int,
        hello: bytes,
        token: bytes,
        ready: socket.socket,
    ) -> tuple[int, int] | None:
        """Join a browser connection to a data connection the agent made ahead of need: the
        OPEN names it, and the bytes move at once (SPEC.md 7.3.1)."""
        data_socket = trio.socket.from_stdlib_socket(ready)
        try:
            control = await tunnel.open_stream("web", client, port, token, self.data_port)
        except (trio.BrokenResourceError, protocol.LocalProtocolError):
            data_socket.close()
            self.counts["https_refused"] += 1
            return None
        self.counts["https_connections"] += 1
        self.counts["https_ready_data_connection"] += 1
        return await self._join(stream, control, data_socket, hello)

    async def _join(
        self,
        stream: trio.SocketStream,
        control: TunnelStream,
        data_socket: trio.socket.SocketType,
        hello: bytes,
    ) -> tuple[int, int] | None:
        """Pass a browser connection on to its data connection: the ClientHello already read
        first, then both sockets joined in the kernel. Bytes from and to the browser, or None
        if the agent refused it: it then resets the stream and closes the data connection,
        and the reset may trail the close, so a connection that brought nothing back waits
        for it (at most a second). Closes the data connection and the stream."""
        try:
            view = memoryview(hello)
            while view:
                view = view[await data_socket.send(view) :]
            sent, received = await splice_sockets(stream.socket, data_socket)
            if not received:
                with (
                    trio.move_on_after(1),
                    contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
                ):
                    await control.receive_some()
        finally:
            data_socket.close()
            await control.aclose()
        if control.reset_code == protocol.ErrorCode.SERVICE_UNAVAILABLE:
            self.counts["https_refused"] += 1
            return None  # the agent could not reach the service and closed the connection
        return sent + len(hello), received

    async def data_connection(self, stream: trio.SocketStream) -> None:
        """An agent's data connection: its first 16 bytes are the token of a waiting browser
        connection, which then owns the socket, or of a connection the relay asked the agent
        to keep ready, which then waits in the device's pool."""
        token = b""
        with trio.move_on_after(self.config.limits.handshake_timeout_s):
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

    async def http_connection(self, stream: trio.SocketStream) -> None:
        limits = self.config.limits
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_http_head_bytes)
        try:
            headers: list[tuple[str, str]] = []
            status, body = 408, b"request timeout\n"
            with trio.move_on_after(limits.handshake_timeout_s):
                status, headers, body = await self._http_answer(stream, conn)
            response = h11.Response(
                status_code=status,
                headers=[
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(len(body))),
                    ("Connection", "close"),
                    *headers,
                ],
            )
            out = conn.send(response) if conn.our_state in (h11.SEND_RESPONSE,) else None
            if out is None:
                out = _raw_response(status, body)
            else:
                out += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
            self.counts[f"http_{status}"] += 1
            with trio.move_on_after(5):
                await stream.send_all(out)
        except (
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            OSError,
            h11.LocalProtocolError,
        ):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def _http_answer(
        self, stream: trio.SocketStream, conn: h11.Connection
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if exc.error_status_hint == 431 or "too long" in str(exc):
                    return 431, [], b"request header fields too large\n"
                return 400, [], b"bad request\n"
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return 400, [], b"bad request\n"
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                host = dict(event.headers).get(b"host", b"").decode("latin-1")
                hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
                target = event.target.decode("latin-1")
                port = f":{self.https_port}" if self.https_port not in (None, 443) else ""
                location = f"https://{hostname}{port}{target}"
                if self.install is not None and self.install.owns(hostname):
                    return 308, [("Location", location)], b"use https\n"  # the relay's own site
                device = self.device_for(hostname)
                if device is None:
                    return 404, [], b"not found\n"
                client = stream.socket.getpeername()[0]
                self.record(time.time(), device, client, "http", 0, 0, "redirected")
                return 308, [("Location", location)], b"use https\n"
            return 400, [], b"bad request\n"


Handler = Callable[[trio.SocketStream], Awaitable[None]]
Serve = Callable[..., Awaitable[None]]  # started with nursery.start(serve, listener)


async def _serve_guarded(
    handler: Handler,
    counts: Counter[str],
    listener: trio.SocketListener,
    *,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `listener` with `handler`, whose unexpected errors close that connection only."""

    async def guarded(stream: trio.SocketStream) -> None:
        try:
            await handler(stream)
        except Exception:
            counts["connection_error"] += 1
            log.exception("a connection handler failed")
            await trio.aclose_forcefully(stream)

    await trio.serve_listeners(guarded, [listener], task_status=task_status)


def _raw_response(status: int, body: bytes) -> bytes:
    reasons = {
        400: "Bad Request",
        404: "Not Found",
        408: "Request Timeout",
        431: "Request Header Fields Too Large",
    }
    head = (
        f"HTTP/1.1 {status} {reasons.get(status, '')}\r\nContent-Type: text/plain; charset=utf-8"
        f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def _tls_server_context(config: RelaydConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tunnel.cert_file, config.tunnel.key_file)
    return context


async def _listener(address: HostPort) -> trio.SocketListener:
    return (await trio.open_tcp_listeners(address.port, host=address.host))[0]


def _bound(listener: trio.SocketListener) -> str:
    host, port = listener.socket.getsockname()[:2]
    return str(HostPort(host, port))


async def serve(
    config: RelaydConfig, *, task_status: trio.TaskStatus[Relayd] = trio.TASK_STATUS_IGNORED
) -> None:
    state_dir = config.relay.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    registry = Registry.open_sqlite(config.relay.registry)
    relay = Relayd(config, registry)
    relay.context = _tls_server_context(config)
    if config.install is not None:
        relay.install = InstallSite(
            config.install,
            config.limits,
            registry,
            config.ingress.link_zone,
            relay.record,
            relay.counts,
        )
    link = config.ddnsd
    if link is not None:
        client = ssl.create_default_context(cafile=str(link.ca_file) if link.ca_file else None)
        relay.ddns = DdnsLink(
            link.address, link.server_name, link.service_name, load_key(link.key_file), client
        )
    try:
        async with trio.open_nursery() as nursery:
            relay.background = nursery
            if relay.ddns is not None:
                nursery.start_soon(relay.ddns.run)

            async def listen(kind: str, address: HostPort, serve_one: Serve) -> int:
                """Bind, serve, note the address as bound; the port it got."""
                listeners = await nursery.start(serve_one, await _listener(address))
                relay.listening[kind] = [_bound(listeners[0])]
                return int(listeners[0].socket.getsockname()[1])

            def guarded(handler: Handler) -> Serve:
                return functools.partial(_serve_guarded, handler, relay.counts)

            await listen("tunnel", config.tunnel.listen, guarded(relay.agent_connection))
            if config.tunnel.data_connections:
                data_address = config.tunnel.data_listen or HostPort(config.tunnel.listen.host, 0)
                relay.data_port = await listen("data", data_address, guarded(relay.data_connection))
                if config.tunnel.data_pool:
                    relay.pools = DataPools(
                        config.tunnel.data_pool,
                        config.tunnel.data_pool_idle_s,
                        config.limits.handshake_timeout_s,
                    )
                    nursery.start_soon(relay.sweep_pools)
            if config.ingress.https_listen is not None:
                relay.https_port = await listen(
                    "https", config.ingress.https_listen, guarded(relay.https_connection)
                )
                if relay.install is not None:
                    relay.install.https_port = relay.https_port
                    nursery.start_soon(relay.install.run)
            if config.api.listen is not None:
                api = LookupApi(
                    registry, relay.presence, config.ingress.link_zone, relay.https_port
                )
                await listen(
                    "api", config.api.listen, HttpServer(api.handle, server_name="relayd").serve
                )
            if config.ingress.http_listen is not None:
                await listen("http", config.ingress.http_listen, guarded(relay.http_connection))
            nursery.start_soon(relay.follow_deletions)
            if config.relay.access_log_key_file is not None:
                relay.access_log = AccessLogWriter(
                    registry,
                    AccessLogKeys(config.relay.access_log_key_file),
                    config.relay.access_log_retention_days,
                )
                nursery.start_soon(relay.access_log.run)
            if config.relay.metrics_listen is not None:
                metrics = HttpServer(metrics_handler(relay.metrics), server_name="relayd")
                await listen("metrics", config.relay.metrics_listen, metrics.serve)
            path = state_dir / "listening.json"
            path.with_suffix(".tmp").write_text(json.dumps(relay.listening, indent=2) + "\n")
            os.replace(path.with_suffix(".tmp"), path)
            log.info("relay %s listening: %s", config.relay.name, relay.listening)
            task_status.started(relay)
    finally:
        with trio.CancelScope(shield=True):
            await registry.aclose()


async def main_async(config: RelaydConfig, config_path: Path | None = None) -> int:
    """Serve until SIGTERM or SIGINT (then GOAWAY and drain); reload on SIGHUP."""
    async with trio.open_nursery() as nursery:
        relay: Relayd = await nursery.start(serve, config)

        async def reload() -> None:
            if config_path is None:
                return
            try:
                new = load(RelaydConfig, config_path)
            except ConfigError as exc:
                log.error("reload refused, the running configuration stays:\n%s", exc)
                return
            relay.reload(new)

        name = await until_stopped(reload)
        log.info("stopping on %s", name)
        limits = relay.config.limits
        relay.stopping = True
        # GOAWAY to every agent; browser connections already passed through go on (their
        # bytes travel outside the tunnels) until they end or the deadline comes.
        with trio.move_on_after(limits.drain_timeout_s):
            async with trio.open_nursery() as drains:
                for tunnel in list(relay.tunnels.values()):
                    drains.start_soon(tunnel.drain, limits.drain_timeout_s)
                drains.start_soon(relay.browsers_done)
        if relay.active:
            log.info(
                "cutting %d browser connections at the drain deadline", sum(relay.active.values())
            )
        nursery.cancel_scope.cancel()
    return 0
