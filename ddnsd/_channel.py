"""DDNS updates from relayd over the nascloud protocol, on a TLS listener.

Only services listed in the config (by name and Ed25519 key) may connect. Each DdnsUpdate is
checked by the protocol codec (a device's own names only), stored durably like any other
update, and answered with Ack or Error carrying its request id.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl

import trio

import protocol
from tunnel import Tunnel, open_tunnel, tunnel_ending

from ._store import ZoneStore
from ._zone import Change

__all__ = ["ServiceChannel"]

log = logging.getLogger("ddnsd.channel")


class ServiceChannel:
    def __init__(
        self,
        store: ZoneStore,
        server_name: str,
        services: dict[str, bytes],
        ssl_context: ssl.SSLContext,
        *,
        handshake_timeout_s: float = 10.0,
    ) -> None:
        self.store = store
        self.server_name = server_name
        self.services = services
        self.ssl_context = ssl_context
        self.handshake_timeout_s = handshake_timeout_s
        self.updates = 0
        self.refused = 0
        self.address_mismatches = 0

    async def _authenticate(self, request: protocol.AuthenticationRequested) -> bytes | None:
        await trio.lowlevel.checkpoint()
        return self.services.get(request.name)

    async def connection(self, stream: trio.SocketStream) -> None:
        """One relayd's connection: TLS, the service handshake, then its DDNS updates."""
        tls = trio.SSLStream(stream, self.ssl_context, server_side=True)
        conn = protocol.Connection(
            protocol.Role.SERVER,
            server_name=self.server_name,
            nonce=os.urandom(32),
            accepted_kinds=frozenset({protocol.AuthKind.SERVICE}),
        )
        try:
            with tunnel_ending(log, "service connection", client=False):
                with trio.fail_after(self.handshake_timeout_s):
                    await tls.do_handshake()
                async with open_tunnel(
                    tls,
                    conn,
                    authenticate=self._authenticate,
                    handshake_timeout_s=self.handshake_timeout_s,
                    keepalive_interval_s=15,
                    keepalive_timeout_s=45,
                ) as tunnel:
                    log.info("service %s connected", conn.peer_name)
                    async with trio.open_nursery() as nursery:
                        while True:
                            try:
                                message = await tunnel.receive_message()
                            except trio.BrokenResourceError:
                                break
                            nursery.start_soon(self._answer, tunnel, message)
        finally:
            await trio.aclose_forcefully(tls)

    async def _answer(self, tunnel: Tunnel, message: protocol.AppMessage) -> None:
        if not isinstance(message, protocol.DdnsUpdate):
            reply: protocol.AppMessage = protocol.Error(
                protocol.ErrorCode.INVALID_REQUEST, "ddnsd takes DDNS updates only"
            )
        else:
            reply = await self._update(message)
        try:
            await tunnel.send_message(reply)
        except trio.BrokenResourceError:
            pass

    async def _update(self, message: protocol.DdnsUpdate) -> protocol.AppMessage:
        if not await self.store.knows_device(message.device):
            self.refused += 1
            return protocol.Error(
                protocol.ErrorCode.NOT_PERMITTED, "no such device", message.request_id
            )
        if message.observed_address is not None and message.rrtype in ("A", "AAAA"):
            observed = ipaddress.ip_address(message.observed_address)
            if message.values and str(observed) not in message.values:
                # What the NAS reports and what the relay saw differ (a proxy, CGNAT): the
                # NAS's view is published, the difference is counted for operators.
                self.address_mismatches += 1
        change = Change(message.name, message.rrtype, message.ttl_s, message.values)
        try:
            await self.store.update(message.device, [change])
        except Exception:
            log.exception("storing an update from a service failed")
            return protocol.Error(
                protocol.ErrorCode.INTERNAL_ERROR, "not stored", message.request_id
            )
        self.updates += 1
        return protocol.Ack(message.request_id)
