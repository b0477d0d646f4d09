"""A reload's rate limiter (`Ddnsd.reload` replaces `DnsServer.rate_limiter`) limits the
UDP answers from the next datagram on, not only after a restart of the listener."""

from __future__ import annotations

import socket

import dns.flags
import dns.message
import trio

from ddnsd._answer import Responder
from ddnsd._rrl import RateLimiter
from ddnsd._server import DnsServer
from service import Boundary
from tests.unit.test_ddnsd_answer import make_zones


async def test_a_new_rate_limiter_applies_at_once() -> None:
    server = DnsServer(Responder(make_zones()), RateLimiter(0), Boundary())
    listening = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listening.bind(("127.0.0.1", 0))
    truncated: list[bool] = []
    with listening, trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve_udp, listening)
            client = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
            with client:
                await client.connect(listening.getsockname())
                query = dns.message.make_query("nas1.dyn.test", "A").to_wire()
                for i in range(6):
                    if i == 3:
                        server.rate_limiter = RateLimiter(1, slip=1)  # what reload does
                    await client.send(query)
                    reply = dns.message.from_wire(await client.recv(65535))
                    truncated.append(bool(reply.flags & dns.flags.TC))
            nursery.cancel_scope.cancel()
    assert truncated == [False, False, False, False, True, True]
