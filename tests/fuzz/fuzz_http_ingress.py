"""Fuzz relayd's plain-HTTP ingress (`relayd._http.HttpIngress._answer`, h11 underneath).

The first byte sets the read size (1 to 256), the rest is what a browser sends. A stand-in
stream hands the bytes over in reads of that size, then EOF; the install site is a stand-in
that owns its one host name. Contract: `_answer` never raises and answers 308 (with a
Location on HTTPS), 400, 404 or 431, and the response encodes.
"""

from __future__ import annotations

from collections import Counter
from typing import cast

import h11
import trio

from config.relayd import LimitsSection
from httpapi import encode_response
from relayd._http import HttpIngress
from relayd._install import InstallSite
from relayd._names import LinkZone

LIMITS = LimitsSection(max_http_head_bytes=1024)


class _Socket:
    def getpeername(self) -> tuple[str, int]:
        return ("192.0.2.1", 50000)


class _Stream:
    socket = _Socket()

    def __init__(self, data: bytes, read_bytes: int) -> None:
        self.data = data
        self.read_bytes = read_bytes

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        chunk, self.data = self.data[: self.read_bytes], self.data[self.read_bytes :]
        return chunk


class _Install:
    def owns(self, host: str) -> bool:
        return host == "install.link.test"


def _record(*fields: object) -> None:
    pass


def one_input(data: bytes) -> None:
    if not data:
        return
    read_bytes, data = data[0] + 1, data[1:]
    ingress = HttpIngress(
        LIMITS, LinkZone("link.test"), 8443, cast(InstallSite, _Install()), _record, Counter()
    )
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=LIMITS.max_http_head_bytes)
    stream = cast(trio.SocketStream, _Stream(data, read_bytes))
    coroutine = ingress._answer(stream, conn)
    try:
        coroutine.send(None)  # the stand-in stream never blocks
    except StopIteration as done:
        response = done.value
    else:
        coroutine.close()
        raise AssertionError("_answer() blocked on a stand-in")
    assert response.status in (308, 400, 404, 431), response
    if response.status == 308:
        [(name, location)] = response.headers
        assert name == "Location" and location.startswith("https://"), location
        assert "\r" not in location and "\n" not in location, location
    encode_response(response, "relayd", keep_alive=False)


def main() -> None:
    from ._atheris import fuzz

    fuzz(one_input)


if __name__ == "__main__":
    main()
