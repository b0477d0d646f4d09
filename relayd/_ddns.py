"""relayd's link to ddnsd: one authenticated tunnel, kept up, that carries the DDNS updates
agents send, each answered with the agent's own request id.

The relay vouches for one thing only: that the device named in an update is the device whose
tunnel it came from. It adds the address it saw the device connect from.
"""

from __future__ import annotations

import itertools
import logging
import random
import ssl

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import protocol
from config import HostPort
from tunnel import Backoff, Ending, Tunnel, open_tunnel, tunnel_ending

__all__ = ["DdnsLink"]

log = logging.getLogger("relayd.ddns")
REPLY_TIMEOUT_S = 10.0


class DdnsLink:
    def __init__(
        self,
        address: HostPort,
        server_name: str,
        service_name: str,
        key: Ed25519PrivateKey,
        context: ssl.SSLContext,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.address = address
        self.server_name = server_name
        self.service_name = service_name
        self.key = key
        self.context = context
        self._tunnel: Tunnel | None = None
        self._up = trio.Event()
        self._ids = itertools.count(1)
        self._waiting: dict[int, tuple[trio.Event, list[protocol.AppMessage]]] = {}
        self.forwarded = 0
        self.unexpected_replies = 0  # answers from ddnsd neither ACK nor ERROR
        self._random = rng or random.SystemRandom()

    async def run(self) -> None:
        backoff = Backoff(0.2, 30.0, random=self._random)
        while True:
            # A refusal is this relay's misconfiguration (its key is not listed): an error.
            with tunnel_ending(
                log, f"tunnel to ddnsd at {self.address}", client=True, refused_level=logging.ERROR
            ) as end:
                await self._session()
            if end.ending is Ending.CLOSED:
                backoff.reset()
            await trio.sleep(backoff.next_delay())

    async def _session(self) -> None:
        with trio.fail_after(30):
            stream = await trio.open_tcp_stream(self.address.host, self.address.port)
            tls = trio.SSLStream(stream, self.context, server_hostname=self.server_name)
            try:
                await tls.do_handshake()
            except BaseException:
                await trio.aclose_forcefully(stream)  # open_tunnel closes it from here on
                raise
        conn = protocol.Connection(
            protocol.Role.CLIENT,
            server_name=self.server_name,
            credentials=protocol.Credentials(
                protocol.AuthKind.SERVICE, self.service_name, self.key
            ),
        )
        async with open_tunnel(
            tls, conn, keepalive_interval_s=15, keepalive_timeout_s=45
        ) as tunnel:
            self._tunnel = tunnel
            self._up.set()
            log.info("connected to ddnsd at %s", self.address)
            try:
                while True:
                    reply = await tunnel.receive_message()
                    request_id = getattr(reply, "request_id", None)
                    waiting = None if request_id is None else self._waiting.get(request_id)
                    if waiting is not None:
                        waiting[1].append(reply)
                        waiting[0].set()
            except trio.BrokenResourceError:
                pass
            finally:
                self._tunnel = None
                self._up = trio.Event()
                for event, _ in self._waiting.values():
                    event.set()

    async def forward(
        self, update: protocol.DdnsUpdate, observed: str | None = None
    ) -> protocol.AppMessage:
        """Send an update on (an agent's, with the address it connected from; or relayd's
        own) and return ddnsd's answer, under the update's id."""
        ours = next(self._ids) % 2**32
        seen = None if observed is None else protocol.canonical_address(observed)
        done = trio.Event()
        replies: list[protocol.AppMessage] = []
        self._waiting[ours] = (done, replies)
        try:
            with trio.move_on_after(REPLY_TIMEOUT_S):
                await self._up.wait()
                tunnel = self._tunnel
                if tunnel is not None:
                    await tunnel.send_message(
                        protocol.DdnsUpdate(
                            ours,
                            update.device,
                            update.name,
                            update.rrtype,
                            update.values,
                            update.ttl_s,
                            seen[1] if seen is not None else None,
                        )
                    )
                    await done.wait()
        except trio.BrokenResourceError:
            pass
        finally:
            self._waiting.pop(ours, None)
        if not replies:
            return protocol.Error(
                protocol.ErrorCode.SERVICE_UNAVAILABLE,
                "DNS updates are unavailable",
                update.request_id,
            )
        self.forwarded += 1
        reply = replies[0]
        if isinstance(reply, protocol.Ack):
            return protocol.Ack(update.request_id)
        if isinstance(reply, protocol.Error):
            return protocol.Error(reply.error_code, reply.message, update.request_id)
        # ddnsd's fault, not the agent's nor ours: the agent hears that DNS updates are out
        # of order, the operator hears it once (a ddnsd that does it once does it for each).
        self.unexpected_replies += 1
        if self.unexpected_replies == 1:
            log.warning(
                "ddnsd at %s answered an update with %s, not ACK or ERROR; "
                "each such answer becomes an error to the agent",
                self.address,
                type(reply).__name__,
            )
        return protocol.Error(
            protocol.ErrorCode.SERVICE_UNAVAILABLE,
            "DNS updates are unavailable",
            update.request_id,
        )
