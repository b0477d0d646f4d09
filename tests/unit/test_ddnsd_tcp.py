"""ddnsd's TCP listener on a real loopback socket: a client that sends queries and never
reads its answers gives its slot back within the idle timeout."""

from __future__ import annotations

import socket
from collections.abc import Callable

import dns.message
import trio

from ddnsd._answer import Responder
from ddnsd._rrl import RateLimiter
from ddnsd._server import DnsServer
from service import Boundary
from tests.unit.test_ddnsd_answer import make_zones

TIMEOUT_S = 2.0


async def wait_until(condition: Callable[[], bool]) -> None:
    """Poll the server's counter (virtual time: the autojump clock)."""
    for _ in range(100_000):
        if condition():
            return
        await trio.sleep(0.01)
    raise AssertionError("never")


async def test_a_client_that_never_reads_gives_its_slot_back(
    autojump_clock: trio.abc.Clock,
) -> None:
    server = DnsServer(
        Responder(make_zones()), RateLimiter(0), Boundary(), tcp_idle_timeout_s=TIMEOUT_S
    )
    query = dns.message.make_query("nas1.dyn.test", "A").to_wire()
    framed = len(query).to_bytes(2, "big") + query
    # Answers are longer than queries: the server's send buffer fills long before the
    # client's stops taking queries.
    blob = framed * 200_000
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
            await nursery.start(server.serve_tcp, listener)
            port = listener.socket.getsockname()[1]
            client = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await client.connect(("127.0.0.1", port))
            stream = trio.SocketStream(client)

            async def send_and_never_read() -> None:
                try:
                    await stream.send_all(blob)
                except trio.BrokenResourceError:
                    pass  # closed by the server: what this test wants

            nursery.start_soon(send_and_never_read)
            await wait_until(lambda: server.tcp_clients == 1)
            stalled = trio.current_time()
            await wait_until(lambda: server.tcp_clients == 0)
            # Held for at most one answer's deadline past the moment it stalled.
            assert trio.current_time() - stalled <= TIMEOUT_S + 1
            assert server.queries < 200_000
            nursery.cancel_scope.cancel()
        await stream.aclose()
