"""The NAS side: one outbound TLS tunnel to the relay, local services behind it.

Authenticates with the device key (made on first run, mode 0600), reconnects with exponential
backoff and full jitter up to a cap, and for each stream the relay opens connects the local
service the stream names, if it is listed, and copies both ways. Default deny: a stream for
any other service is reset.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import itertools
import logging
import random
import socket
import ssl
from collections.abc import Awaitable, Callable

import trio

import protocol
from certs import Certificates, Wanted
from config import AgentConfig, HostPort
from service import Boundary
from tunnel import (
    Backoff,
    Ending,
    TlsStream,
    Tunnel,
    TunnelStream,
    join_streams,
    load_or_create_key,
    open_tunnel,
    splice_sockets,
    tunnel_ending,
)

from ._proxy import proxy_v2_header

__all__ = ["Agent", "RelayClient"]

log = logging.getLogger("nascloud-agent")

MAX_READY_CONNECTIONS = 32  # data connections the relay may have this NAS keep open ahead
LOCAL_CONNECT_TIMEOUT_S = 10.0  # a local service that does not answer refuses the stream
REQUEST_TIMEOUT_S = 30.0  # a request to the relay (a DDNS update) without an answer fails


class RelayClient:
    """What both modes share: TLS to the relay (CA or pinned), and reconnecting with
    exponential backoff and full jitter until a session says it is over."""

    def __init__(self, config: AgentConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self.rng = rng or random.SystemRandom()
        self.tunnel: Tunnel | None = None
        self.relay_host = ""
        self.connected = trio.Event()
        self.attempts = 0
        self.streams_served = 0
        self.streams_refused = 0
        self.boundary = Boundary()

    async def _session(self, address: HostPort) -> bool:
        """One connection to the relay, until it ends. True: do not reconnect."""
        raise NotImplementedError

    def _context(self) -> ssl.SSLContext:
        relay = self.config.relay
        if relay.ca_file is not None:
            return ssl.create_default_context(cafile=str(relay.ca_file))
        # Pinned only: the chain is not checked against a CA, the certificate itself is,
        # right after the handshake (_check_pin).
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    def _check_pin(self, tls: TlsStream) -> None:
        pin = self.config.relay.pinned_sha256
        if pin is None:
            return
        der = tls.socket.getpeercert(binary_form=True) or b""
        if not hmac.compare_digest(hashlib.sha256(der).hexdigest(), pin):
            raise ssl.SSLError("the relay's certificate does not match pinned_sha256")

    async def run(self) -> None:
        reconnect = self.config.reconnect
        backoff = Backoff(reconnect.initial_delay_s, reconnect.max_delay_s, random=self.rng)
        while True:
            addresses = self.config.relay.addresses  # re-read: a reload may change them
            address = addresses[backoff.failures % len(addresses)]
            # A bug must not end the agent either: the NAS would be unreachable until a restart.
            with tunnel_ending(log, f"tunnel to relay {address}", client=True) as end:
                if await self._session(address):
                    return
            if end.ending is Ending.CLOSED:
                backoff.reset()  # it was up: start the backoff afresh
            self.attempts += 1
            reconnect = self.config.reconnect  # likewise
            backoff.base_s, backoff.cap_s = reconnect.initial_delay_s, reconnect.max_delay_s
            await trio.sleep(backoff.next_delay())

    def _open(
        self, tls: TlsStream, conn: protocol.Connection
    ) -> contextlib.AbstractAsyncContextManager[Tunnel]:
        """The tunnel on a connection to the relay, with the configured keepalive."""
        relay = self.config.relay
        return open_tunnel(
            tls,
            conn,
            keepalive_interval_s=relay.keepalive_interval_s,
            keepalive_timeout_s=relay.keepalive_timeout_s,
        )

    async def _connect(self, address: HostPort) -> TlsStream:
        """TCP and TLS to the relay, its certificate checked (CA or pin)."""
        with trio.fail_after(30):
            stream = await trio.open_tcp_stream(address.host, address.port)
            tls = await TlsStream.connect(
                stream, self._context(), server_hostname=self.config.relay.server_name
            )
            try:
                self._check_pin(tls)
            except BaseException:
                await trio.aclose_forcefully(tls)
                raise
        self.relay_host = address.host
        return tls

    async def _connect_local(
        self, stream: TunnelStream, target: HostPort
    ) -> trio.SocketStream | None:
        """The local service a stream asks for; None (and the stream reset) if it refuses
        or does not answer in time."""
        local = await connect_local(target)
        if local is None:
            await self._refuse(stream)
        return local

    async def serve_contained(
        self, serve: Callable[[TunnelStream], Awaitable[None]], stream: TunnelStream
    ) -> None:
        """One stream, one unit of work: a bug in serving it resets that stream only, never
        the agent and the other streams."""
        try:
            await serve(stream)
        except Exception:
            self.boundary.failed("agent_stream")
            await stream.reset(protocol.ErrorCode.INTERNAL_ERROR)

    async def _refuse(self, stream: TunnelStream, *opened: trio.SocketStream | None) -> None:
        """Reset a stream this NAS cannot serve, closing what was opened for it."""
        self.streams_refused += 1
        await stream.reset(protocol.ErrorCode.SERVICE_UNAVAILABLE)
        for connection in opened:
            if connection is not None:
                await trio.aclose_forcefully(connection)


class Agent(RelayClient):
    """Device mode: the NAS has its identity; its services are reached through the relay."""

    def __init__(self, config: AgentConfig, rng: random.Random | None = None) -> None:
        if config.agent.device_name is None:
            raise ValueError("no [agent].device_name: an uninitialised NAS runs in install mode")
        super().__init__(config, rng)
        self.device = config.agent.device_name
        self.key = load_or_create_key(config.agent.key_file)
        # Data connections made ahead of need, by token, with their watch's cancel scope.
        self.ready: dict[bytes, tuple[trio.SocketStream, trio.CancelScope]] = {}
        self.readying = 0
        self._streams: trio.Nursery | None = None
        # Requests to the relay waiting for their Ack or Error, by request id.
        self._requests: dict[int, tuple[trio.Event, list[protocol.AppMessage]]] = {}
        self._request_ids = itertools.count(1)
        self.certificates: Certificates | None = None
        if config.acme is not None:
            acme = config.acme
            names = [f"{self.device}.{acme.zone}"]
            if acme.link_zone is not None:
                names += [f"{self.device}.{acme.link_zone}", f"*.{self.device}.{acme.link_zone}"]
            self.certificates = Certificates(
                acme,
                Wanted(tuple(names), acme.cert_file, acme.key_file),
                config.agent.state_dir,
                self.set_challenge,
                set_caa=self.set_caa,
                reload=self._reload_web_server,
                rng=rng,
            )

    async def run(self) -> None:
        # Streams outlive the tunnel that opened them: a spliced transfer goes on while the
        # relay drains (GOAWAY) and while this agent reconnects.
        async with trio.open_nursery() as self._streams:
            if self.certificates is not None:
                self._streams.start_soon(self.certificates.run)
            await super().run()

    async def request(self, build: Callable[[int], protocol.AppMessage]) -> protocol.AppMessage:
        """Send the message `build(request id)` once the tunnel is up; its Ack or Error.

        Raises ConnectionError if the tunnel closes first, TimeoutError without an answer.
        """
        with trio.fail_after(REQUEST_TIMEOUT_S):
            await self.connected.wait()
            tunnel = self.tunnel
            if tunnel is None:
                raise ConnectionError("no tunnel to the relay")
            number = next(self._request_ids) % 2**32
            done: tuple[trio.Event, list[protocol.AppMessage]] = (trio.Event(), [])
            self._requests[number] = done
            try:
                await tunnel.send_message(build(number))
                await done[0].wait()
            except trio.BrokenResourceError:
                raise ConnectionError("the tunnel to the relay closed") from None
            finally:
                self._requests.pop(number, None)
        if not done[1]:
            raise ConnectionError("the tunnel to the relay closed before the answer")
        return done[1][0]

    async def _reload_web_server(self) -> None:
        """`[acme].reload_command`, after a new certificate is in place."""
        assert self.config.acme is not None
        command = self.config.acme.reload_command
        if not command:
            return
        done = await trio.run_process(
            list(command), check=False, capture_stdout=True, capture_stderr=True
        )
        if done.returncode != 0:
            log.warning(
                "the reload command %s exited with %d: %s",
                command[0],
                done.returncode,
                done.stderr.decode(errors="replace").strip()[-300:],
            )
        else:
            log.info("reloaded the web server with %s", command[0])

    async def set_challenge(self, values: tuple[str, ...]) -> None:
        """The device's DNS-01 TXT RRset, through the relay to ddnsd (empty: removed)."""
        await self._set_rrset(protocol.ACME_PREFIX + self.device, "TXT", values, "challenge")

    async def set_caa(self, values: tuple[str, ...]) -> None:
        """The device's CAA RRset (its ACME account's record), for its names in both zones."""
        await self._set_rrset(self.device, "CAA", values, "CAA")

    async def _set_rrset(self, name: str, rrtype: str, values: tuple[str, ...], what: str) -> None:
        reply = await self.request(
            lambda number: protocol.DdnsUpdate(number, self.device, name, rrtype, values)
        )
        if not isinstance(reply, protocol.Ack):
            detail = reply.message if isinstance(reply, protocol.Error) else reply
            raise RuntimeError(f"the relay refused the {what} record: {detail}")

    async def _session(self, address: HostPort) -> bool:
        relay = self.config.relay
        tls = await self._connect(address)
        conn = protocol.Connection(
            protocol.Role.CLIENT,
            server_name=relay.server_name,
            credentials=protocol.Credentials(protocol.AuthKind.DEVICE, self.device, self.key),
            settings=protocol.Settings(
                capabilities=frozenset({protocol.DATA_CONNECTIONS, protocol.DATA_POOL})
            ),
        )
        async with (
            self._open(tls, conn) as tunnel,
            trio.open_nursery() as nursery,
        ):
            # Before any await, so that no message waits unread. A stream starts from the
            # reader, ahead of ready connections a pool message in the same read asks for.
            tunnel.on_message = lambda _, message: self._on_message(nursery, message)
            tunnel.on_stream = lambda stream: (self._streams or nursery).start_soon(
                self.serve_contained, self._serve_stream, stream
            )
            self.tunnel = tunnel
            self.connected.set()
            log.info("tunnel up to %s as %s", address, self.device)
            try:
                await tunnel.send_message(
                    protocol.Register(services=tuple(sorted(self.config.services)))
                )
                await tunnel.wait_no_more_streams()
            finally:
                nursery.cancel_scope.cancel()
                for ready, _ in self.ready.values():
                    ready.socket.close()  # they belong to this tunnel (SPEC.md 7.3.1)
                self.ready.clear()
        self.tunnel = None
        self.connected = trio.Event()
        for event, _ in self._requests.values():  # no answer will come on this tunnel
            event.set()
        log.info("tunnel to %s closed: %s", address, tunnel.error or "by the relay")
        return False

    def _on_message(self, nursery: trio.Nursery, message: protocol.AppMessage) -> None:
        """The relay's messages, from the tunnel's reader."""
        if isinstance(message, protocol.DataPool):
            for token in message.tokens:
                if len(self.ready) + self.readying >= MAX_READY_CONNECTIONS:
                    break  # a relay cannot make the NAS open connections without bound
                self.readying += 1
                nursery.start_soon(self._make_ready, token, message.data_port)
        elif isinstance(message, protocol.Ack | protocol.Error) and (
            waiting := self._requests.get(message.request_id)  # type: ignore[arg-type]
        ):
            waiting[1].append(message)
            waiting[0].set()
        else:
            log.debug("ignoring a %s message from the relay", type(message).__name__)

    async def _make_ready(self, token: bytes, port: int) -> None:
        """Open a data connection before it is needed and keep it until an OPEN names its
        token, or the relay closes it (SPEC.md 7.3.1)."""
        try:
            # A stream opened in the same read as the pool message goes first: its connect
            # is on a browser's path, this one is not.
            await trio.lowlevel.checkpoint()
            with trio.fail_after(10):
                connection = await connect_tcp(self.relay_host, port)
        except (OSError, trio.TooSlowError):
            return
        finally:
            self.readying -= 1
        scope = trio.CancelScope()
        self.ready[token] = (connection, scope)  # before the token leaves: the relay may use it
        claimed = False
        try:
            await connection.send_all(token)
            with scope:  # cancelled when an OPEN claims it
                await trio.lowlevel.wait_readable(connection.socket)
                # Readable before its OPEN: the relay closed it, or it sent the stream's first
                # bytes ahead of the OPEN, which comes next (and claims it).
                claimed = bool(await connection.socket.recv(1, socket.MSG_PEEK))
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            # Closed by the relay, failed, or cancelled with its tunnel: forget it. (Claimed by
            # an OPEN, it is no longer here and belongs to that stream.)
            if not claimed and self.ready.pop(token, None) is not None:
                connection.socket.close()

    async def _serve_stream(self, stream: TunnelStream) -> None:
        request = stream.request
        token, port = request.data_token, request.data_port
        local: trio.SocketStream | None = None
        data: trio.SocketStream | None = None
        try:
            ready = self.ready.pop(token, None) if token is not None else None
            if ready is not None:
                data = ready[0]  # made ahead of need: no connect on this stream's path
                ready[1].cancel()
                token = None
            target = self.config.services.get(request.service)
            if target is None:
                await self._refuse(stream, data)
                return

            async def open_local() -> None:
                nonlocal local
                local = await connect_local(target)

            async def open_data(token: bytes, port: int) -> None:
                """The stream's bytes on a connection of their own to the relay (SPEC.md 7.3)."""
                nonlocal data
                with contextlib.suppress(OSError, trio.TooSlowError, trio.BrokenResourceError):
                    with trio.fail_after(10):
                        connection = await connect_tcp(self.relay_host, port)
                        try:
                            await connection.send_all(token)
                        except BaseException:
                            await trio.aclose_forcefully(connection)
                            raise
                        data = connection

            if token is not None and port is not None:
                # Both connections at once: each is a round trip on the new connection's path.
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(open_local)
                    nursery.start_soon(open_data, token, port)
            else:
                await open_local()  # a ready data connection, or the tunnel itself
            if local is None or (token is not None and data is None):
                await self._refuse(stream, local, data)
                return
            if self.config.agent.proxy_protocol and request.client_address is not None:
                try:
                    await local.send_all(
                        proxy_v2_header(
                            request.client_address, request.client_port, target.host, target.port
                        )
                    )
                except (OSError, trio.BrokenResourceError, ValueError):
                    await self._refuse(stream, local, data)
                    return
            self.streams_served += 1
            if data is None:
                await join_streams(stream, local)
                return
            # Joined in the kernel: the bytes never enter Python. The stream carries nothing
            # and ends with the data connection, so that its frames stay off the path of the
            # connection's first bytes (SPEC.md 7.3).
            await splice_sockets(data.socket, local.socket)
            await stream.aclose()
        finally:
            # Whatever ended this (a cancel included), nothing opened for it stays open; the
            # joins have closed what they were given already.
            for connection in (local, data):
                if connection is not None:
                    connection.socket.close()


async def connect_local(target: HostPort) -> trio.SocketStream | None:
    """A connection to a local service, or None if it refuses or does not answer within
    LOCAL_CONNECT_TIMEOUT_S (a hung service must not hold the relay's stream forever)."""
    with trio.move_on_after(LOCAL_CONNECT_TIMEOUT_S), contextlib.suppress(OSError):
        return await connect_tcp(target.host, target.port)
    return None


async def connect_tcp(host: str, port: int) -> trio.SocketStream:
    """TCP to `host:port`. An IP address is connected directly: trio.open_tcp_stream's
    resolution and happy eyeballs cost about 0.15 ms more per connection on loopback, and a
    browser connection through the relay makes two."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        return await trio.open_tcp_stream(host, port)
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)
