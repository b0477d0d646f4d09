"""The parts of the relay path measured one by one, side by side, printing ratios: what
bench/RESULTS.md cites when it explains the relay figures.

- tls: receiving one TLS stream with trio.SSLStream and with tunnel.TlsStream (the
  sender is a plain blocking `ssl` socket in a child process).
- connect: loopback TCP connects with trio.open_tcp_stream and with the agent's connect_tcp.
- splice: 64-byte round trips from a client through one middle process to an echo process,
  the middle joining its two sockets with tunnel.splice_sockets (its splicing
  thread), with a Trio task per direction (how splice_sockets worked before), or with a bare
  `select.epoll` splice loop; wall time and the middle's CPU time per round trip.
- chain: the floor of the relay's new-connection time. New connection, TLS 1.3 handshake and
  one 64-byte round trip to a TLS echo server, directly and through two processes that each
  accept, connect onwards and splice_sockets (what relayd and the agent are on that path,
  with nothing else: no ClientHello parsing, no OPEN, no ready connection to find),
  alternating; the p50 and p99 the chain adds.

Run: .venv/bin/python bench/relay_parts.py [--megabytes 512] [--connects 300] [--trips 5000]
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio
import trustme

from bench._servers import free_port, process, write_certificate
from bench.relay import ECHO, round_trips
from nasagent._agent import connect_tcp
from tunnel import TlsStream, splice_sockets

CHUNK = 256 * 1024


def _contexts(ca: trustme.CA, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for `name` from `ca`, and a client trusting `ca`."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    return server_context, client_context


def tls_receive(kind: str, megabytes: int) -> float:
    """Gbit/s received by a Trio task over TLS from a blocking sender in a child process."""
    server_context, client_context = _contexts(trustme.CA(), "relay.test")
    total = megabytes * 1024 * 1024
    listener = socket.create_server(("127.0.0.1", 0))
    child = os.fork()
    if child == 0:
        with client_context.wrap_socket(
            socket.create_connection(listener.getsockname()), server_hostname="relay.test"
        ) as tls:
            payload = b"\0" * CHUNK
            for _ in range(total // CHUNK):
                tls.sendall(payload)
            tls.recv(1)  # until the receiver is done
        os._exit(0)

    async def receive() -> float:
        raw, _ = listener.accept()
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(raw))
        started = time.perf_counter()
        tls: trio.abc.Stream
        if kind == "trio.SSLStream":
            tls = trio.SSLStream(stream, server_context, server_side=True)
        else:
            tls = await TlsStream.connect(stream, server_context, server_side=True)
        got = 0
        while got < total:
            data = await tls.receive_some(CHUNK)
            if not data:
                break
            got += len(data)
        elapsed = time.perf_counter() - started
        await trio.aclose_forcefully(tls)
        return got * 8 / elapsed / 1e9

    try:
        return trio.run(receive)
    finally:
        listener.close()
        os.waitpid(child, 0)


def connect_p50(kind: str, count: int) -> float:
    """Median milliseconds of a loopback TCP connect."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=count + 16)
    port = listener.getsockname()[1]

    async def connect() -> trio.SocketStream:
        if kind == "trio.open_tcp_stream":
            return await trio.open_tcp_stream("127.0.0.1", port)
        return await connect_tcp("127.0.0.1", port)

    async def run() -> list[float]:
        times = []
        for _ in range(count):
            started = time.perf_counter()
            stream = await connect()
            times.append(time.perf_counter() - started)
            await stream.aclose()
            listener.accept()[0].close()
        return times

    try:
        return statistics.median(trio.run(run)) * 1e3
    finally:
        listener.close()


def _epoll_splice(a: socket.socket, b: socket.socket) -> None:
    """The least a Python splicer can do: one epoll, two pipes, no event loop."""
    a.setblocking(False)
    b.setblocking(False)
    flags = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
    pipes = {a.fileno(): os.pipe(), b.fileno(): os.pipe()}
    route = {a.fileno(): b.fileno(), b.fileno(): a.fileno()}
    poller = select.epoll()
    for fd in route:
        poller.register(fd, select.EPOLLIN | select.EPOLLET)
    while True:
        for fd, _ in poller.poll():
            read_end, write_end = pipes[fd]
            while True:
                try:
                    moved = os.splice(fd, write_end, 1 << 20, flags=flags)
                except BlockingIOError:
                    break
                if moved == 0:
                    return
                while moved:
                    moved -= os.splice(read_end, route[fd], moved, flags=flags)


async def _trio_splice(a: trio.socket.SocketType, b: trio.socket.SocketType) -> None:
    """A Trio task per direction waiting on its source: splice_sockets before its thread."""

    async def one_way(source: trio.socket.SocketType, sink: trio.socket.SocketType) -> None:
        read_end, write_end = os.pipe()
        flags = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
        while True:
            try:
                moved = os.splice(source.fileno(), write_end, 1 << 16, flags=flags)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(source)
                continue
            if moved == 0:
                nursery.cancel_scope.cancel()
                return
            while moved:
                try:
                    moved -= os.splice(read_end, sink.fileno(), moved, flags=flags)
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(sink)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one_way, a, b)
        nursery.start_soon(one_way, b, a)


SPLICERS = ("splice_sockets (thread)", "a Trio task per direction", "bare epoll loop")


def splice_round_trip_us(kind: str, trips: int) -> tuple[float, float]:
    """Mean microseconds of a 64-byte round trip through a splicing middle process, and of
    the middle's CPU time (user and system) per round trip."""
    client, middle_a = socket.socketpair()
    middle_b, echo = socket.socketpair()
    middle = os.fork()
    if middle == 0:
        client.close()
        echo.close()
        if kind != "bare epoll loop":
            join = splice_sockets if kind == SPLICERS[0] else _trio_splice

            async def run() -> None:
                await join(
                    trio.socket.from_stdlib_socket(middle_a),
                    trio.socket.from_stdlib_socket(middle_b),
                )

            trio.run(run)
        else:
            _epoll_splice(middle_a, middle_b)
        os._exit(0)
    echoer = os.fork()
    if echoer == 0:
        for sock in (client, middle_a, middle_b):  # or the middle never sees the end
            sock.close()
        while data := echo.recv(65536):
            echo.sendall(data)
        os._exit(0)
    for sock in (middle_a, middle_b, echo):
        sock.close()
    message = b"x" * 64
    started = time.perf_counter()
    for _ in range(trips):
        client.sendall(message)
        got = b""
        while len(got) < 64:
            got += client.recv(64)
    elapsed = time.perf_counter() - started
    client.close()
    _, _, usage = os.wait4(middle, 0)
    os.waitpid(echoer, 0)
    return elapsed / trips * 1e6, (usage.ru_utime + usage.ru_stime) / trips * 1e6


def _forwarder(listener: socket.socket, onward: int) -> None:
    """A middle process: accept, connect to `onward`, join the two with splice_sockets."""

    async def serve() -> None:
        async def one(stream: trio.SocketStream) -> None:
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            out = await connect_tcp("127.0.0.1", onward)
            await splice_sockets(stream.socket, out.socket)

        await trio.serve_listeners(
            one, [trio.SocketListener(trio.socket.from_stdlib_socket(listener))]
        )

    trio.run(serve)


def chain_added_ms(count: int) -> tuple[float, float]:
    """p50 and p99 milliseconds two splicing middles add to a new TLS connection and one
    64-byte round trip (each chained connection made right after a direct one)."""
    second = socket.create_server(("127.0.0.1", 0), backlog=64)
    first = socket.create_server(("127.0.0.1", 0), backlog=64)
    echo = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_certificate(work, "nas", "nas.test")
        server = [sys.executable, "-c", ECHO, str(echo), str(work / "nas.crt")]
        with process([*server, str(work / "nas.key")], None, work / "echo.log", ready="ready"):
            children = []
            for listener, onward in ((second, echo), (first, second.getsockname()[1])):
                child = os.fork()
                if child == 0:
                    _forwarder(listener, onward)
                    os._exit(0)
                children.append(child)
            try:
                chained, direct = round_trips(
                    first.getsockname()[1], "nas.test", work / "ca.pem", count, echo
                )
            finally:
                for child in children:
                    os.kill(child, 9)
                    os.waitpid(child, 0)

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(len(values) * q))] * 1e3

    return pct(chained, 0.5) - pct(direct, 0.5), pct(chained, 0.99) - pct(direct, 0.99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=512)
    parser.add_argument("--connects", type=int, default=300)
    parser.add_argument("--trips", type=int, default=5000)
    args = parser.parse_args()
    print(f"TLS receive, one stream of {args.megabytes} MiB over loopback:")
    rates = {k: tls_receive(k, args.megabytes) for k in ("trio.SSLStream", "TlsStream")}
    for kind, rate in rates.items():
        print(f"  {kind:<24}{rate:>7.2f} Gbit/s")
    print(f"  TlsStream / trio.SSLStream: {rates['TlsStream'] / rates['trio.SSLStream']:.2f}x")
    print(f"\nloopback TCP connect, median of {args.connects}:")
    connects = {k: connect_p50(k, args.connects) for k in ("trio.open_tcp_stream", "connect_tcp")}
    for kind, ms in connects.items():
        print(f"  {kind:<24}{ms:>7.3f} ms")
    print(
        f"\n64-byte round trip through one splicing process, mean of {args.trips}: wall µs, "
        "and the middle process's CPU µs"
    )
    for kind in SPLICERS:
        wall, cpu = splice_round_trip_us(kind, args.trips)
        print(f"  {kind:<28}{wall:>7.1f} µs   CPU {cpu:>6.1f} µs")
    p50, p99 = chain_added_ms(args.connects)
    print(
        f"\nnew connection + TLS + 64-byte round trip through two splicing processes, "
        f"{args.connects} each:\n  added to direct: p50 {p50:+.2f} ms, p99 {p99:+.2f} ms"
    )


if __name__ == "__main__":
    main()
