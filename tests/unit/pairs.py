"""Connected protocol endpoints for tests: sans-IO pairs and Trio tunnels over memory streams."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import protocol
from tunnel import Tunnel, open_tunnel

SERVER_NAME = "relay.test"
NONCE = bytes(range(32))


def client(
    name: str = "nas1",
    key: Ed25519PrivateKey | None = None,
    kind: str = protocol.AuthKind.DEVICE,
    settings: protocol.Settings | None = None,
) -> tuple[protocol.Connection, Ed25519PrivateKey]:
    key = key or Ed25519PrivateKey.generate()
    conn = protocol.Connection(
        protocol.Role.CLIENT,
        server_name=SERVER_NAME,
        credentials=protocol.Credentials(kind, name, key),
        settings=settings,
    )
    return conn, key


def server(nonce: bytes = NONCE, settings: protocol.Settings | None = None) -> protocol.Connection:
    return protocol.Connection(
        protocol.Role.SERVER, server_name=SERVER_NAME, nonce=nonce, settings=settings
    )


def shuttle(src: protocol.Connection, dst: protocol.Connection) -> list[protocol.Event]:
    """Move what `src` queued into `dst` (nothing queued: no call, since b"" means EOF)."""
    data = src.data_to_send()
    return dst.receive_data(data) if data else []


def open_pair(
    client_settings: protocol.Settings | None = None,
    server_settings: protocol.Settings | None = None,
) -> tuple[protocol.Connection, protocol.Connection]:
    """A client and a server that completed the handshake."""
    c, key = client(settings=client_settings)
    s = server(settings=server_settings)
    shuttle(c, s)
    shuttle(s, c)
    [request] = shuttle(c, s)
    assert isinstance(request, protocol.AuthenticationRequested)
    s.accept_authentication(protocol.public_key_bytes(key))
    [done] = shuttle(s, c)
    assert isinstance(done, protocol.HandshakeComplete)
    return c, s


TransportPair = Callable[[], tuple[trio.abc.Stream, trio.abc.Stream]]


@asynccontextmanager
async def tunnel_pair(
    make_transports: TransportPair = trio.testing.memory_stream_pair,
    client_settings: protocol.Settings | None = None,
    server_settings: protocol.Settings | None = None,
    keepalive_s: tuple[float, float] | None = None,
    max_tasks: int = 64,
    max_unsent_messages: int = 64,
) -> AsyncIterator[tuple[Tunnel, Tunnel]]:
    """Two tunnels joined by an in-memory transport, both running until the block exits."""
    a, b = make_transports()
    c, key = client(settings=client_settings)
    s = server(settings=server_settings)
    registered = protocol.public_key_bytes(key)

    async def authenticate(request: protocol.AuthenticationRequested) -> bytes | None:
        return registered if request.name == "nas1" else None

    tunnels: dict[str, Tunnel] = {}
    ready = trio.Event()

    async def run(side: str, transport: trio.abc.Stream, conn: protocol.Connection) -> None:
        auth = authenticate if side == "server" else None
        interval, timeout = keepalive_s or (None, None)
        async with open_tunnel(
            transport,
            conn,
            authenticate=auth,
            keepalive_interval_s=interval,
            keepalive_timeout_s=timeout,
            max_tasks=max_tasks,
            max_unsent_messages=max_unsent_messages,
        ) as tunnel:
            tunnels[side] = tunnel
            if len(tunnels) == 2:
                ready.set()
            await tunnel.wait_closed()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "client", a, c)
        nursery.start_soon(run, "server", b, s)
        await ready.wait()
        try:
            yield tunnels["client"], tunnels["server"]
        finally:
            nursery.cancel_scope.cancel()
