"""The API server's request parser, and the server against clients that misbehave."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from httpapi import HttpRequest, HttpResponse, HttpServer, parse_head
from httpapi._server import HttpError

GOOD = b"GET /nic/update?hostname=a.b HTTP/1.1\r\nHost: x\r\nAuthorization: Basic eDp5"


def test_a_request_head() -> None:
    head = parse_head(GOOD, 65536)
    assert (head.method, head.target, head.keep_alive) == ("GET", "/nic/update?hostname=a.b", True)
    assert head.headers == {"host": "x", "authorization": "Basic eDp5"}


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET / HTTP/1.1", 400),  # no Host
        (b"GET  / HTTP/1.1\r\nHost: x", 400),
        (b"GET / HTTP/2.0\r\nHost: x", 505),
        (b"GET / SPDY\r\nHost: x", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\n folded: line", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: v", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 2", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999", 413),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked", 501),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: \x00", 400),
    ],
)
def test_bad_heads(head: bytes, status: int) -> None:
    with pytest.raises(HttpError) as info:
        parse_head(head, 65536)
    assert info.value.status == status


@settings(max_examples=400, deadline=1000)
@given(st.binary(max_size=512))
def test_random_heads_raise_only_http_errors(data: bytes) -> None:
    try:
        parse_head(data, 65536)
    except HttpError as error:
        assert 400 <= error.status < 600


async def _exchange(data: bytes, server: HttpServer) -> bytes:
    client, service = trio.testing.memory_stream_pair()
    reply = b""

    async def serve() -> None:
        await server._connection(service)  # type: ignore[arg-type]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        await client.send_all(data)
        await client.send_eof()
        while chunk := await client.receive_some():
            reply += chunk
    return reply


async def echo(request: HttpRequest) -> HttpResponse:
    return HttpResponse(200, f"{request.method} {request.target} {len(request.body)}\n".encode())


class _FakeSocket:
    def getpeername(self) -> tuple[str, int]:
        return ("192.0.2.1", 1234)


@pytest.fixture(autouse=True)
def peer(monkeypatch: pytest.MonkeyPatch) -> None:
    # memory streams have no socket; the server asks one for the client's address
    monkeypatch.setattr(trio.testing.MemorySendStream, "socket", _FakeSocket(), raising=False)
    monkeypatch.setattr(trio.StapledStream, "socket", _FakeSocket(), raising=False)


async def test_pipelined_requests_and_bodies() -> None:
    server = HttpServer(echo)
    reply = await _exchange(
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        server,
    )
    assert reply.count(b"HTTP/1.1 200 OK") == 3
    assert b"GET /a 0\n" in reply and b"POST /b 5\n" in reply and b"GET /c 0\n" in reply
    assert reply.rstrip().endswith(b"GET /c 0")


async def test_oversized_head_is_431_and_closes() -> None:
    server = HttpServer(echo, max_head_bytes=1024)
    reply = await _exchange(b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 5000, server)
    assert reply.startswith(b"HTTP/1.1 431 ")


async def test_a_truncated_request_is_400() -> None:
    reply = await _exchange(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc", HttpServer(echo)
    )
    assert reply.startswith(b"HTTP/1.1 400 ")


async def test_a_slow_client_gets_408(autojump_clock: trio.testing.MockClock) -> None:
    server = HttpServer(echo, request_timeout_s=5)
    client, service = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server._connection, service)  # type: ignore[arg-type]
        await client.send_all(b"GET / HTTP/1.1\r\n")  # and then nothing
        reply = b""
        while chunk := await client.receive_some():
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 408 ")


async def test_a_failing_handler_costs_its_request_a_500_and_nothing_else() -> None:
    async def broken(request: HttpRequest) -> HttpResponse:
        raise RuntimeError("a bug")

    reply = await _exchange(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", HttpServer(broken))
    assert reply.startswith(b"HTTP/1.1 500 ")
    assert b"a bug" not in reply


async def test_a_client_that_stops_reading_is_closed_at_the_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def big(request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, b"x" * 1_000_000)

    server = HttpServer(big, request_timeout_s=3)
    client, served = trio.testing.lockstep_stream_pair()  # a send waits for the reader
    started = trio.current_time()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await server.serve_stream(served, "203.0.113.9")  # the client never reads
    assert 3 <= trio.current_time() - started < 4
    assert server.requests == 1


@pytest.mark.parametrize("length", ["\xb9", "4\xb2", "\u0663"])
def test_a_content_length_of_unicode_digits_is_400(length: str) -> None:
    # Found by tests/fuzz/fuzz_http_head.py: str.isdigit() accepts them, int() does not.
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + length.encode("latin-1", "replace")
    with pytest.raises(HttpError) as raised:
        parse_head(head, 65536)
    assert raised.value.status == 400
