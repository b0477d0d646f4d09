"""Fuzz ddnsd's DynDNS2 API (`ddnsd._dyndns2.DynDns2.handle`): the query, the form body and
Basic auth.

The input's lines are: method, target, Authorization header, body, client address. An
Authorization line that starts with "!" is sent as Basic auth of the rest as user name and
the device's real token, so that the update rules behind authentication are reached too.
Contract: `handle` never fails (the Boundary counts nothing), and the reply is one of the
words ddclient and inadyn read, with the status they expect.
"""

from __future__ import annotations

import base64
from typing import cast

from ddnsd._dyndns2 import DynDns2
from ddnsd._store import UpdateResult, ZoneStore
from ddnsd._zone import RECORD_TYPES, Change, RRset
from httpapi import HttpRequest
from registry import Registry, Token, TokenKind
from service import Boundary

from ._quiet import captured, unexpected

TOKEN = "s3cret-token-of-nas1"
WORDS = {"good", "nochg", "badauth", "notfqdn", "nohost", "numhost", "abuse", "dnserr", "911"}


class _Registry:
    async def verify_token(self, kind: TokenKind, secret: str) -> Token | None:
        if kind is TokenKind.DYNDNS2 and secret == TOKEN:
            return Token("tok_1", kind, None, "nas1", 0.0)
        return None


class _Zone:
    origin = "dyn.test"


class _Zones:
    device_zone = _Zone()


class _Store:
    zones = _Zones()

    async def knows_device(self, name: str) -> bool:
        return name == "nas1"

    async def update(self, device: str, changes: list[Change]) -> UpdateResult:
        for change in changes:  # what the real store builds before it writes
            RRset.build(RECORD_TYPES[change.rrtype], change.ttl, change.values)
        return UpdateResult(True, 2)


def request(data: bytes) -> HttpRequest:
    method, target, auth, body, client = (data.split(b"\n", 4) + [b""] * 5)[:5]
    authorization = auth.decode("latin-1")
    if authorization.startswith("!"):
        user = authorization[1:].encode("utf-8", "surrogateescape")
        authorization = "Basic " + base64.b64encode(user + b":" + TOKEN.encode()).decode()
    return HttpRequest(
        method.decode("latin-1"),
        target.decode("latin-1"),
        {"authorization": authorization} if authorization else {},
        body,
        client.decode("latin-1") or "192.0.2.1",
    )


def one_input(data: bytes) -> None:
    boundary = Boundary()
    api = DynDns2(
        cast(Registry, _Registry()), cast(ZoneStore, _Store()), clock=lambda: 0.0, boundary=boundary
    )
    with captured("ddnsd.dyndns2") as records:
        coroutine = api.handle(request(data))
        try:
            coroutine.send(None)  # the stand-ins never block: the first step finishes it
        except StopIteration as done:
            response = done.value
        else:
            coroutine.close()
            raise AssertionError("handle() blocked on a stand-in")
    assert not boundary.errors, boundary.errors
    assert not unexpected(records), unexpected(records)
    assert response.status in (200, 401, 404, 405), response
    lines = response.body.decode().splitlines()
    assert (lines and all(line.split(" ", 1)[0] in WORDS for line in lines)) or (
        response.status in (404, 405)
    ), response


def main() -> None:
    from ._atheris import fuzz

    fuzz(one_input)


if __name__ == "__main__":
    main()
