"""protocol.tls.TlsStream honours the Trio stream contract (trio.testing's own checks) over a
real socket pair, and fails cleanly on a bad certificate, garbage and a peer that leaves."""

from __future__ import annotations

import ssl

import pytest
import trio
import trio.testing
import trustme

from tunnel import TlsStream

CA = trustme.CA()
CERT = CA.issue_cert("relay.test")


def contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    CERT.configure_cert(server)
    client = ssl.create_default_context()
    CA.configure_trust(client)
    return server, client


async def tls_pair() -> tuple[TlsStream, TlsStream]:
    a, b = trio.socket.socketpair()
    server_context, client_context = contexts()
    pair: dict[str, TlsStream] = {}

    async def server() -> None:
        pair["server"] = await TlsStream.connect(
            trio.SocketStream(a), server_context, server_side=True
        )

    async def client() -> None:
        pair["client"] = await TlsStream.connect(
            trio.SocketStream(b), client_context, server_hostname="relay.test"
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        nursery.start_soon(client)
    return pair["client"], pair["server"]


async def test_tls_stream_passes_trios_stream_checks() -> None:
    await trio.testing.check_two_way_stream(tls_pair, None)


async def test_many_records_arrive_in_one_receive() -> None:
    client, server = await tls_pair()
    # Thirteen TLS records. A socketpair is a Unix socket: once send_all returns, every byte is
    # in the server's receive queue already, so no wait is needed before the one receive.
    await client.send_all(b"x" * 200_000)
    data = await server.receive_some(262144)
    assert len(data) > 16384
    while len(data) < 200_000:
        data += await server.receive_some(262144)
    assert data == b"x" * 200_000
    await client.aclose()
    assert await server.receive_some(100) == b""
    await server.aclose()


async def test_a_wrong_certificate_and_garbage_fail_the_handshake() -> None:
    a, b = trio.socket.socketpair()
    _, client_context = contexts()
    other = trustme.CA().issue_cert("relay.test")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    other.configure_cert(server_context)

    async def serve() -> None:
        with pytest.raises(trio.BrokenResourceError):
            await TlsStream.connect(trio.SocketStream(a), server_context, server_side=True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        with pytest.raises(trio.BrokenResourceError, match="certificate verify failed"):
            await TlsStream.connect(
                trio.SocketStream(b), client_context, server_hostname="relay.test"
            )
    c, d = trio.socket.socketpair()
    await d.send(b"GET / HTTP/1.1\r\n\r\n")
    server_context, _ = contexts()
    with pytest.raises(trio.BrokenResourceError):
        await TlsStream.connect(trio.SocketStream(c), server_context, server_side=True)
    d.close()
