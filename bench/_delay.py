"""A TCP proxy that delays every byte by a fixed time each way: a long link on loopback.

This machine's kernel has no netem, so the link between a NAS and the relay (tens of
milliseconds in real life) is modelled here: each chunk read on one side is written to the
other `--delay-ms` later, in order. A connect is not delayed (the proxy accepts at once), so a
protocol that connects on the critical path is favoured by one round trip: a lower bound on
what the real link costs it.

Run: python bench/_delay.py --listen 127.0.0.2 --upstream 127.0.0.1 --delay-ms 10 PORT...
(each PORT is listened on at --listen and forwarded to the same port at --upstream).
"""

from __future__ import annotations

import argparse
import functools
import math
from collections.abc import Awaitable, Callable

import trio


async def _pump(source: trio.SocketStream, sink: trio.SocketStream, delay_s: float) -> None:
    send, receive = trio.open_memory_channel[tuple[float, bytes]](math.inf)

    async def read() -> None:
        async with send:
            while chunk := await source.receive_some(65536):
                await send.send((trio.current_time() + delay_s, chunk))

    async def write() -> None:
        async with receive:
            async for due, chunk in receive:
                await trio.sleep_until(due)
                await sink.send_all(chunk)
        await sink.send_eof()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        nursery.start_soon(write)


def _handler(
    upstream: str, port: int, delay_s: float
) -> Callable[[trio.SocketStream], Awaitable[None]]:
    async def handle(client: trio.SocketStream) -> None:
        try:
            server = await trio.open_tcp_stream(upstream, port)
        except OSError:
            await client.aclose()
            return
        for stream in (client, server):
            stream.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, 1)
        try:
            async with client, server, trio.open_nursery() as nursery:
                nursery.start_soon(_pump, client, server, delay_s)
                nursery.start_soon(_pump, server, client, delay_s)
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # one side went away: this connection ends, the proxy goes on

    return handle


async def main(listen: str, upstream: str, ports: list[int], delay_s: float) -> None:
    async with trio.open_nursery() as nursery:
        for port in ports:
            serve = functools.partial(trio.serve_tcp, _handler(upstream, port, delay_s), port)
            await nursery.start(functools.partial(serve, host=listen))
        print("ready", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.2")
    parser.add_argument("--upstream", default="127.0.0.1")
    parser.add_argument("--delay-ms", type=float, default=10.0)
    parser.add_argument("ports", type=int, nargs="+")
    args = parser.parse_args()
    trio.run(main, args.listen, args.upstream, args.ports, args.delay_ms / 1000)
