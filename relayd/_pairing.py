"""Pairing on the relay: a NAS with no device identity opens an install-kind tunnel with its
own device key and asks for a code (PairRequest); relayd answers the code and the portal's
pairing page (PairCode), then looks every few seconds whether an owner has taken it, says
Paired with the device's name when one has, and ends the tunnel. A code lives ten minutes;
the NAS asks again after. The registry keeps the code's hash only."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Final

import trio

import protocol
from registry import Registry, mask_address
from service import SlidingWindow
from tunnel import Tunnel

__all__ = ["Pairings"]

log = logging.getLogger("relayd.pairing")

CODE_LIFETIME_S: Final = 600
POLL_INTERVAL_S: Final = 2.0


class Pairings:
    def __init__(
        self,
        registry: Registry,
        url: str | None,
        per_address_per_hour: int,
        counts: Counter[str],
        *,
        clock: Callable[[], float] = time.monotonic,
        poll_interval_s: float = POLL_INTERVAL_S,
    ) -> None:
        self.registry = registry
        self.url = url
        self.counts = counts
        self.poll_interval_s = poll_interval_s
        self.per_address = SlidingWindow(per_address_per_hour, 3600.0, clock=clock)

    async def serve_tunnel(
        self, tunnel: Tunnel, address: str, request: protocol.PairRequest
    ) -> None:
        key = tunnel.conn.peer_public_key
        if self.url is None:
            await self._refuse(tunnel, request, protocol.ErrorCode.NOT_PERMITTED, "no pairing here")
            return
        if not self.per_address.allow(address):
            await self._refuse(
                tunnel, request, protocol.ErrorCode.RATE_LIMITED, "too many pairing codes"
            )
            return
        known = await self.registry.paired_device(key)
        if known is not None:  # paired while it was away: it only needs its name
            await self._paired(tunnel, known)
            return
        code = await self.registry.create_pairing(key, CODE_LIFETIME_S)
        await tunnel.send_message(
            protocol.PairCode(request.request_id, code, self.url, CODE_LIFETIME_S)
        )
        self.counts["pairing_codes"] += 1
        log.info("pairing code given to a NAS at %s", mask_address(address))
        with trio.move_on_after(CODE_LIFETIME_S):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_when_closed, tunnel, nursery.cancel_scope)
                while True:
                    await trio.sleep(self.poll_interval_s)
                    name = await self.registry.paired_device(key)
                    if name is not None:
                        await self._paired(tunnel, name)
                        nursery.cancel_scope.cancel()
                        return
        if not tunnel.closed:
            self.counts["pairing_expired"] += 1
            await tunnel.aclose(protocol.ErrorCode.NO_ERROR, "the pairing code expired")

    async def _paired(self, tunnel: Tunnel, name: str) -> None:
        await tunnel.send_message(protocol.Paired(name))
        self.counts["paired"] += 1
        log.info("NAS paired as %s", name)
        await tunnel.aclose(protocol.ErrorCode.NO_ERROR, "paired")

    async def _refuse(
        self, tunnel: Tunnel, request: protocol.PairRequest, code: int, why: str
    ) -> None:
        self.counts["pairing_refused"] += 1
        try:
            await tunnel.send_message(protocol.Error(code, why, request.request_id))
        finally:
            await tunnel.aclose(code, why)


async def _cancel_when_closed(tunnel: Tunnel, scope: trio.CancelScope) -> None:
    await tunnel.wait_closed()
    scope.cancel()
