"""DynDNS2 without sockets or a database: the per-host limit answers `abuse` (with 200), and
refused requests do not count against the device."""

from __future__ import annotations

import base64
from typing import cast

from ddnsd._dyndns2 import DynDns2
from ddnsd._store import UpdateResult, ZoneStore
from ddnsd._zone import Change
from httpapi import HttpRequest
from registry import Registry, Token, TokenKind


class FakeRegistry:
    async def verify_token(self, kind: TokenKind, secret: str) -> Token | None:
        if kind is TokenKind.DYNDNS2 and secret == "s3cret":
            return Token("tok_1", kind, None, "nas1", 0.0)
        return None


class _Zone:
    origin = "dyn.test"


class _Zones:
    device_zone = _Zone()


class FakeStore:
    zones = _Zones()

    def __init__(self) -> None:
        self.updates: list[list[Change]] = []

    async def knows_device(self, name: str) -> bool:
        return name == "nas1"

    async def update(self, device: str, changes: list[Change]) -> UpdateResult:
        self.updates.append(changes)
        return UpdateResult(True, len(self.updates))


def request(address: str) -> HttpRequest:
    auth = base64.b64encode(b"nas1.dyn.test:s3cret").decode()
    return HttpRequest(
        "GET",
        f"/nic/update?hostname=nas1.dyn.test&myip={address}",
        {"authorization": f"Basic {auth}"},
        b"",
        "198.51.100.7",
    )


async def test_per_host_limit_answers_abuse_and_refusals_do_not_count() -> None:
    now = [0.0]
    store = FakeStore()
    dyndns2 = DynDns2(
        cast(Registry, FakeRegistry()),
        cast(ZoneStore, store),
        updates_per_host_per_minute=2,
        clock=lambda: now[0],
    )
    answers = []
    for t in (0, 1, 2, 30, 59, 60, 61, 62):
        now[0] = t
        response = await dyndns2.handle(request(f"192.0.2.{t + 1}"))
        assert response.status == 200
        answers.append(response.body.decode().split()[0])
    assert answers == ["good", "good", "abuse", "abuse", "abuse", "good", "good", "abuse"]
    assert len(store.updates) == 4
    assert dyndns2.counts == {"good": 4, "abuse": 4}


async def test_basic_auth_with_non_ascii_text_is_badauth_not_a_failure() -> None:
    # Found by tests/fuzz/fuzz_dyndns2.py: b64decode raised ValueError on non-ASCII text.
    dyndns2 = DynDns2(cast(Registry, FakeRegistry()), cast(ZoneStore, FakeStore()))
    bad = HttpRequest(
        "GET", "/nic/update?hostname=nas1.dyn.test", {"authorization": "Basic \xe9=="}, b"", "::1"
    )
    response = await dyndns2.handle(bad)
    assert (response.status, response.body) == (401, b"badauth\n")
    assert not dyndns2.boundary.errors
