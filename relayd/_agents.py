"""The agents' side of the relay: their tunnels by device, their presence, their messages
(registration, DDNS updates forwarded to ddnsd) and the closing of a deleted device's tunnel.
Knows nothing of browsers: the ingress asks it for a device's tunnel.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections import Counter
from collections.abc import Callable
from typing import Final

import trio

import protocol
from config import RelaydConfig
from registry import Registry, RegistryGone, mask_address
from tunnel import Ending, TlsStream, Tunnel, open_tunnel, tunnel_ending

from ._ddns import DdnsLink
from ._install import InstallSite
from ._lookup import Presence

__all__ = ["Agents"]

log = logging.getLogger("relayd")

MAX_DDNS_IN_FLIGHT: Final = 16  # DDNS updates one tunnel may have waiting on ddnsd at once
_DEVICES_ONLY: Final = frozenset({protocol.AuthKind.DEVICE})
_WITH_INSTALL: Final = frozenset({protocol.AuthKind.DEVICE, protocol.AuthKind.INSTALL})


class Agents:
    """Every agent's tunnel: accepted, authenticated, kept by device name, closed."""

    def __init__(
        self,
        config: RelaydConfig,
        registry: Registry,
        context: ssl.SSLContext,
        *,
        capabilities: frozenset[str],
        install: InstallSite | None,
        ddns: DdnsLink | None,
        on_tunnel_end: Callable[[str, Tunnel], None],
        counts: Counter[str],
    ) -> None:
        self.config = config
        self.registry = registry
        self.context = context  # the tunnel listener's, replaced on reload
        self.install = install
        self.ddns = ddns
        self.counts = counts
        # One frozen Settings shared by every tunnel (thousands of idle tunnels). Agents open
        # no streams towards the relay: refuse any.
        self.settings = protocol.Settings(max_streams=0, capabilities=capabilities)
        self.accepted_kinds = _WITH_INSTALL if install is not None else _DEVICES_ONLY
        self.tunnels: dict[str, Tunnel] = {}
        self.presence = Presence()
        self.per_address: Counter[str] = Counter()
        self.ddns_in_flight: Counter[str] = Counter()  # DDNS updates per device
        self.stopping = False  # graceful stop: no new tunnels
        self._on_tunnel_end = on_tunnel_end

    def tunnel_of(self, device: str) -> Tunnel | None:
        """The device's live tunnel, if it is connected."""
        tunnel = self.tunnels.get(device)
        return None if tunnel is None or tunnel.closed else tunnel

    async def _authenticate(self, request: protocol.AuthenticationRequested) -> bytes | None:
        if request.kind == protocol.AuthKind.INSTALL:
            # An uninitialised NAS has no identity yet: the signature proves it holds the key
            # it made for its install window, and that key is all it is known by.
            return request.public_key if self.install is not None else None
        # None: unknown, or its owner turned the relay off for it.
        return await self.registry.tunnel_key(request.name)

    async def connection(self, stream: trio.SocketStream) -> None:
        """One agent's connection, from TLS and the handshake until its tunnel ends."""
        if self.stopping:
            # Draining: an agent whose tunnel was just closed goes to the next relay process.
            await trio.aclose_forcefully(stream)
            return
        try:
            address = stream.socket.getpeername()[0]
        except OSError:  # reset before it was accepted: nothing to serve
            await trio.aclose_forcefully(stream)
            return
        limits = self.config.limits
        if self.per_address[address] >= limits.max_tunnels_per_address:
            self.counts["tunnel_refused_limit"] += 1
            await trio.aclose_forcefully(stream)
            return
        self.per_address[address] += 1
        tls: trio.abc.Stream = stream
        conn = protocol.Connection(
            protocol.Role.SERVER,
            server_name=self.config.relay.name,
            nonce=os.urandom(32),
            settings=self.settings,
            accepted_kinds=self.accepted_kinds,
        )
        name = ""
        tunnel: Tunnel | None = None
        try:
            with tunnel_ending(
                log,
                f"tunnel from {mask_address(address)}",
                client=False,
                refused_level=logging.INFO,
            ) as end:
                with trio.fail_after(limits.handshake_timeout_s):
                    tls = await TlsStream.connect(stream, self.context, server_side=True)
                async with open_tunnel(
                    tls,
                    conn,
                    authenticate=self._authenticate,
                    handshake_timeout_s=limits.handshake_timeout_s,
                    keepalive_interval_s=self.config.tunnel.keepalive_interval_s,
                    keepalive_timeout_s=self.config.tunnel.keepalive_timeout_s,
                    max_tasks=MAX_DDNS_IN_FLIGHT,
                ) as tunnel:
                    if conn.peer_kind == protocol.AuthKind.INSTALL:
                        assert self.install is not None  # install clients are accepted only then
                        await self.install.serve_tunnel(tunnel, address)
                        return
                    name = conn.peer_name
                    await self._serve_device(tunnel, name, address)
        finally:
            # One bad tunnel never takes the relay down: tunnel_ending logged it once.
            if end.ending is Ending.REFUSED:
                self.counts["tunnel_refused"] += 1
            elif end.ending is Ending.FAILED:
                self.counts["tunnel_error"] += 1
            self.per_address[address] -= 1
            if not self.per_address[address]:
                del self.per_address[address]
            if name and self.tunnels.get(name) is not None and self.tunnels[name].closed:
                del self.tunnels[name]
                self.presence.disconnected(name)
            if name and tunnel is not None:
                self._on_tunnel_end(name, tunnel)
                why = tunnel.why_closed if end.ending is Ending.CLOSED else end.ending.value
                log.info("tunnel down for %s from %s: %s", name, mask_address(address), why)
            await trio.aclose_forcefully(tls)

    async def _serve_device(self, tunnel: Tunnel, name: str, address: str) -> None:
        tunnel.on_message = lambda tunnel, message: self._on_message(tunnel, name, address, message)
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
        try:
            await self.registry.device_seen(name)
        except Exception:  # a full disk: the tunnel matters more (a registry gone ends relayd)
            log.warning("could not note when %s was last seen", name)
        await tunnel.wait_closed()

    def _on_message(
        self, tunnel: Tunnel, device: str, address: str, message: protocol.AppMessage
    ) -> None:
        """An agent's message, from its tunnel's reader: no task waits per tunnel (memory).
        Replies are queued on the tunnel, and DDNS updates run as the tunnel's own tasks,
        both bounded by the tunnel: an agent that floods gets refusals, then nothing."""
        if isinstance(message, protocol.Register):
            self.counts["register"] += 1
            self.presence.registered(device, message.lan_addresses)
        elif isinstance(message, protocol.DdnsUpdate):
            if tunnel.start_soon(self._ddns_update, tunnel, device, address, message):
                self.ddns_in_flight[device] += 1
                return
            self.counts["ddns_rate_limited"] += 1
            tunnel.send_message_soon(
                protocol.Error(
                    protocol.ErrorCode.RATE_LIMITED, "too many updates at once", message.request_id
                )
            )
        else:
            request_id = getattr(message, "request_id", None)
            tunnel.send_message_soon(
                protocol.Error(protocol.ErrorCode.INVALID_REQUEST, "not handled here", request_id)
            )

    async def _ddns_update(
        self, tunnel: Tunnel, device: str, address: str, update: protocol.DdnsUpdate
    ) -> None:
        try:
            tunnel.send_message_soon(await self._forward_update(device, address, update))
        finally:
            self.ddns_in_flight[device] -= 1
            if not self.ddns_in_flight[device]:
                del self.ddns_in_flight[device]

    async def _forward_update(
        self, device: str, address: str, update: protocol.DdnsUpdate
    ) -> protocol.AppMessage:
        if update.device != device:
            # A device may change its own names only: the relay vouches for nothing else.
            self.counts["ddns_refused"] += 1
            return protocol.Error(
                protocol.ErrorCode.NOT_PERMITTED, "not your device", update.request_id
            )
        if self.ddns is None:
            return protocol.Error(
                protocol.ErrorCode.SERVICE_UNAVAILABLE, "no DNS here", update.request_id
            )
        reply = await self.ddns.forward(update, address)
        self.counts["ddns_forwarded"] += 1
        return reply

    async def follow_deletions(self, interval_s: float = 2.0) -> None:
        """Close the tunnel of a device that was unregistered (by the operator CLI, another
        process) or whose owner turned the relay off for it: from then, nobody reaches it
        through here (privacy rule 5)."""
        while True:
            await trio.sleep(interval_s)
            try:
                names = set(await self.registry.device_names())
                off = set(await self.registry.devices_with_feature_off("link"))
            except RegistryGone:
                return  # relayd ends (service.end_when_gone)
            except Exception:
                log.exception("reading the device list failed; will retry")
                continue
            for name in [n for n in self.tunnels if n not in names or n in off]:
                tunnel = self.tunnels.pop(name)
                self.presence.disconnected(name)
                deleted = name not in names
                why = "the device was unregistered" if deleted else "its Link is off"
                self.counts["tunnel_closed_deleted" if deleted else "tunnel_closed_link_off"] += 1
                log.info("closing the tunnel of %s: %s", name, why)
                await tunnel.aclose(protocol.ErrorCode.NOT_PERMITTED, why)

    async def drain(self, timeout_s: float) -> None:
        """Graceful stop: no new tunnels; GOAWAY to every agent, streams finish (at most
        `timeout_s`)."""
        self.stopping = True
        async with trio.open_nursery() as drains:
            for tunnel in list(self.tunnels.values()):
                drains.start_soon(tunnel.drain, timeout_s)
