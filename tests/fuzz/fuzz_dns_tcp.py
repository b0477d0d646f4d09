"""Fuzz ddnsd's DNS over TCP (`ddnsd._server.DnsServer`): the connection loop and each message.

The first byte sets the read size (1 to 256); the rest is what a client writes on one
connection: messages with two-byte length prefixes (RFC 7766). A stand-in stream hands them to
`_tcp_client` in reads of that size, then EOF. Transfers (AXFR, IXFR) go to the real handler,
allowed for the client; UPDATEs to one that answers nothing (they have their own target).
Contract: no message or connection makes the Boundary count a failure; every reply is
well-formed; the loop answers the whole messages, however they are split, exactly as
`tcp_replies` answers each on its own; and a cut-off last message is answered or dropped by
`tcp_replies`, never raised.
"""

from __future__ import annotations

from typing import cast

import trio

from ddnsd._answer import Responder
from ddnsd._rrl import RateLimiter
from ddnsd._server import DnsServer
from ddnsd._xfr import Transfers
from service import Boundary

from ._dns import ZONES, check_reply

CLIENT = "192.0.2.1"


async def _nothing(message: bytes, client: str, tcp: bool) -> list[bytes]:
    await trio.lowlevel.checkpoint()
    return []


def messages(data: bytes) -> tuple[list[bytes], int]:
    """The length-prefixed messages in `data`, a cut-off last one as it is, and how many
    of them are whole."""
    out = []
    whole = 0
    while len(data) >= 2:
        size = int.from_bytes(data[:2], "big")
        out.append(data[2 : 2 + size])
        whole += len(data) >= 2 + size
        data = data[2 + size :]
    return out, whole


class _Socket:
    def getpeername(self) -> tuple[str, int]:
        return (CLIENT, 50000)


class _Stream:
    """What `_tcp_client` uses of a trio.SocketStream; it never blocks."""

    socket = _Socket()

    def __init__(self, data: bytes, read_bytes: int) -> None:
        self.data = data
        self.read_bytes = read_bytes
        self.sent = bytearray()
        self.closed = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        assert not self.closed
        chunk, self.data = self.data[: self.read_bytes], self.data[self.read_bytes :]
        return chunk

    async def send_all(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        assert not self.closed
        self.sent += data

    async def aclose(self) -> None:
        self.closed = True


# One Boundary for every input: its log budget then stops the malformed-message lines soon.
_BOUNDARY = Boundary()


def _server() -> DnsServer:
    """A server with a cold cache, so that an input's answers are its own."""
    transfers = Transfers(ZONES, ("192.0.2.0/24",), None)
    return DnsServer(
        Responder(ZONES), RateLimiter(0), _BOUNDARY, updates=_nothing, transfers=transfers.handle
    )


async def _run(read_bytes: int, data: bytes) -> None:
    queries, whole = messages(data)
    # Each message on its own, the cut-off one too.
    direct = _server()
    expected = bytearray()
    for number, query in enumerate(queries):
        for reply in await direct.tcp_replies(query, CLIENT):
            check_reply(query, reply)
            if number < whole:
                expected += len(reply).to_bytes(2, "big") + reply
    # The same bytes through the connection loop.
    stream = _Stream(data, read_bytes)
    await _server()._tcp_client(cast(trio.SocketStream, stream))
    assert stream.closed
    assert stream.sent == expected, (bytes(stream.sent), bytes(expected))


def one_input(data: bytes) -> None:
    if not data:
        return
    _BOUNDARY.errors.clear()
    trio.run(_run, data[0] + 1, data[1:])
    assert not _BOUNDARY.errors, _BOUNDARY.errors


def main() -> None:
    from ._atheris import fuzz

    fuzz(one_input)


if __name__ == "__main__":
    main()
