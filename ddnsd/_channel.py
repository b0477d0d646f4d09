"""DDNS updates from relayd over the nascloud protocol, on a TLS listener.

Only services listed in the config (by name and Ed25519 key) may connect. Each DdnsUpdate is
checked by the protocol codec (a device's own names only), stored durably like any other
update, and answered with Ack or Error carrying its request id. Each message is one unit of
work of the daemon's Boundary, run as one of the tunnel's bounded tasks.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl
from typing import Final

import trio

import protocol
from registry import RESERVED_DEVICE_NAMES, RegistryFull, RegistryGone
from service import Boundary
from tunnel import Tunnel, open_tunnel, tunnel_ending

from ._store import FeatureOff, RefusedChange, ZoneStore
from ._zone import Change

__all__ = ["ServiceChannel"]

log = logging.getLogger("ddnsd.channel")
#: The Boundary's unit for one message from a service (nascloud_handler_errors_total).
UNIT: Final = "dns_channel_message"
#: Updates one service connection may have waiting on the store at once; beyond that each is
#: refused RATE_LIMITED at once (relayd passes that on to the agent), so a relayd that floods
#: gets refusals, not a task and a queued change each. Group commit takes them all in one batch.
MAX_UPDATES_IN_FLIGHT: Final = 64
#: Replies queued for the writer at once: every update in flight can be acknowledged by the
#: same batch at the same moment, and refusals come on top; beyond this a peer that does not
#: read its answers gets no more of them, rather than our memory.
MAX_UNSENT_REPLIES: Final = 2 * MAX_UPDATES_IN_FLIGHT


class ServiceChannel:
    def __init__(
        self,
        store: ZoneStore,
        server_name: str,
        services: dict[str, bytes],
        ssl_context: ssl.SSLContext,
        *,
        handshake_timeout_s: float = 10.0,
        boundary: Boundary | None = None,
    ) -> None:
        self.store = store
        self.server_name = server_name
        self.services = services
        self.ssl_context = ssl_context
        self.handshake_timeout_s = handshake_timeout_s
        self.boundary = boundary if boundary is not None else Boundary()
        self.updates = 0
        self.refused = 0
        self.throttled = 0  # updates refused because MAX_UPDATES_IN_FLIGHT were in flight
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
                    max_tasks=MAX_UPDATES_IN_FLIGHT,
                    max_unsent_messages=MAX_UNSENT_REPLIES,
                ) as tunnel:
                    # Before any await: the reader may hand over a message at once.
                    tunnel.on_message = self._on_message
                    log.info("service %s connected", conn.peer_name)
                    await tunnel.wait_closed()
        finally:
            await trio.aclose_forcefully(tls)

    def _on_message(self, tunnel: Tunnel, message: protocol.AppMessage) -> None:
        """A service's message, from its tunnel's reader: updates run as the tunnel's own
        tasks, every reply is queued on the tunnel, both bounded by the tunnel."""
        request_id = getattr(message, "request_id", None)
        if not isinstance(message, protocol.DdnsUpdate):
            tunnel.send_message_soon(
                protocol.Error(
                    protocol.ErrorCode.INVALID_REQUEST, "ddnsd takes DDNS updates only", request_id
                )
            )
        elif not tunnel.start_soon(self._answer, tunnel, message):
            self.throttled += 1
            tunnel.send_message_soon(
                protocol.Error(
                    protocol.ErrorCode.RATE_LIMITED, "too many updates at once", request_id
                )
            )

    async def _answer(self, tunnel: Tunnel, message: protocol.DdnsUpdate) -> None:
        """One update, one unit of work: an unexpected failure answers it INTERNAL_ERROR,
        and the connection and the other updates go on (a task's exception would end the
        tunnel)."""
        reply: protocol.AppMessage
        try:
            reply = await self._update(message)
        except Exception:
            self.boundary.failed(UNIT)
            reply = protocol.Error(
                protocol.ErrorCode.INTERNAL_ERROR, "internal error", message.request_id
            )
        tunnel.send_message_soon(reply)

    async def _update(self, message: protocol.DdnsUpdate) -> protocol.AppMessage:
        if message.device in RESERVED_DEVICE_NAMES:
            # The relay's own site (install.<link zone>, *.install.<link zone>): only its
            # DNS-01 challenge, which only a service (relayd, with its key) can ask for.
            if (
                message.name != protocol.ACME_PREFIX + message.device
                or not self.store.zones.link_zone
            ):
                self.refused += 1
                log.info(
                    "refused %s %s from a service: not a challenge of its own site",
                    message.rrtype,
                    message.name,
                )
                return protocol.Error(
                    protocol.ErrorCode.NOT_PERMITTED,
                    "only the challenge of the relay's own site may be set under a reserved name",
                    message.request_id,
                )
        elif not await self.store.knows_device(message.device):
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
        except FeatureOff:
            self.refused += 1
            return protocol.Error(
                protocol.ErrorCode.NOT_PERMITTED,
                "DDNS is off for this device",
                message.request_id,
            )
        except RefusedChange:
            # The codec already checks what the zone checks; this is the zone's last word.
            self.refused += 1
            return protocol.Error(
                protocol.ErrorCode.INVALID_REQUEST, "the zone cannot hold it", message.request_id
            )
        except (RegistryFull, RegistryGone) as exc:  # one line: expected, not a bug
            log.warning("an update from a service was not stored: %s", exc)
            return protocol.Error(
                protocol.ErrorCode.INTERNAL_ERROR, "not stored", message.request_id
            )
        except Exception:
            log.exception("storing an update from a service failed")
            return protocol.Error(
                protocol.ErrorCode.INTERNAL_ERROR, "not stored", message.request_id
            )
        self.updates += 1
        return protocol.Ack(message.request_id)
