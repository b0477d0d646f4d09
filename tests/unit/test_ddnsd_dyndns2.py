"""DynDNS2 without sockets or a database: the per-host limit answers `abuse` (with 200), and
refused requests do not count against the device."""

from __future__ import annotations

import base64
from typing import cast

import pytest

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


def hosts_request(hostnames: str, address: str = "192.0.2.1") -> HttpRequest:
    auth = base64.b64encode(b"nas1.dyn.test:s3cret").decode()
    return HttpRequest(
        "GET",
        f"/nic/update?hostname={hostnames}&myip={address}",
        {"authorization": f"Basic {auth}"},
        b"",
        "198.51.100.7",
    )


@pytest.mark.parametrize(
    ("hostnames", "lines", "stored"),
    [
        # One line per host, in request order (the dyndns2 return codes; ddclient reads the
        # i-th line as the i-th host's result).
        ("nas1.dyn.test,nas2.dyn.test", ["good 192.0.2.1", "nohost"], True),
        ("nas2.dyn.test,nas1.dyn.test", ["nohost", "good 192.0.2.1"], True),
        ("nas1.dyn.test,nas1", ["good 192.0.2.1", "notfqdn"], True),
        ("nas1.dyn.test,NAS1.dyn.test.", ["good 192.0.2.1", "good 192.0.2.1"], True),
        ("nas2.dyn.test,nas3.dyn.test", ["nohost", "nohost"], False),
        ("nas2.dyn.test", ["nohost"], False),
        ("", ["notfqdn"], False),  # no host at all: once
    ],
)
async def test_one_reply_line_per_host_in_request_order(
    hostnames: str, lines: list[str], stored: bool
) -> None:
    store = FakeStore()
    dyndns2 = DynDns2(cast(Registry, FakeRegistry()), cast(ZoneStore, store))
    response = await dyndns2.handle(hosts_request(hostnames))
    assert response.status == 200
    assert response.body.decode().splitlines() == lines
    assert bool(store.updates) is stored


async def test_outcomes_are_counted_as_decided_not_read_back_from_the_body() -> None:
    dyndns2 = DynDns2(cast(Registry, FakeRegistry()), cast(ZoneStore, FakeStore()))
    await dyndns2.handle(hosts_request("nas1.dyn.test,nas2.dyn.test"))
    await dyndns2.handle(HttpRequest("PUT", "/nic/update", {}, b"", "198.51.100.7"))
    await dyndns2.handle(HttpRequest("GET", "/index.html", {}, b"", "198.51.100.7"))
    assert dyndns2.counts == {"good": 1, "nohost": 1, "method_not_allowed": 1, "not_found": 1}
