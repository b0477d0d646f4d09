"""Fuzz ddnsd's TCP entry point (`ddnsd._server.DnsServer.tcp_replies`) on a byte stream.

The input is what a client writes on one connection: messages with two-byte length prefixes
(RFC 7766), cut where the bytes end, each handled as ddnsd's TCP loop does. UPDATE and
transfer requests go to handlers that answer nothing, as the routing is what is fuzzed here.
Contract: no message makes the Boundary count a failure, and every reply is well-formed.
"""

from __future__ import annotations

import trio

from ddnsd._answer import Responder
from ddnsd._rrl import RateLimiter
from ddnsd._server import DnsServer
from service import Boundary

from ._dns import ZONES, check_reply


async def _nothing(message: bytes, client: str, tcp: bool) -> list[bytes]:
    await trio.lowlevel.checkpoint()
    return []


def messages(data: bytes) -> list[bytes]:
    """The length-prefixed messages in `data`; a cut-off last one is taken as it is."""
    out = []
    while len(data) >= 2:
        size = int.from_bytes(data[:2], "big")
        out.append(data[2 : 2 + size])
        data = data[2 + size :]
    return out


async def _serve(server: DnsServer, queries: list[bytes]) -> None:
    for query in queries:
        for reply in await server.tcp_replies(query, "192.0.2.1"):
            check_reply(query, reply)


# One server for every input: its log budget then stops the malformed-message lines soon.
_BOUNDARY = Boundary()
_SERVER = DnsServer(
    Responder(ZONES), RateLimiter(0), _BOUNDARY, updates=_nothing, transfers=_nothing
)


def one_input(data: bytes) -> None:
    _BOUNDARY.errors.clear()
    _SERVER.responder = Responder(ZONES)  # a cold cache: an input's answers are its own
    trio.run(_serve, _SERVER, messages(data))
    assert not _BOUNDARY.errors, _BOUNDARY.errors


def main() -> None:
    from ._atheris import fuzz

    fuzz(one_input)


if __name__ == "__main__":
    main()
