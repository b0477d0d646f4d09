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


def address_request(query: str, client: str = "198.51.100.7") -> HttpRequest:
    auth = base64.b64encode(b"nas1.dyn.test:s3cret").decode()
    return HttpRequest(
        "GET",
        f"/nic/update?hostname=nas1.dyn.test&{query}",
        {"authorization": f"Basic {auth}"},
        b"",
        client,
    )


UNREACHABLE = [
    "127.0.0.1",  # loopback
    "127.1.2.3",
    "::1",
    "::ffff:127.0.0.1",  # the IPv4 it carries is what would be published
    "0.0.0.0",  # unspecified
    "::",
    "169.254.10.1",  # link-local
    "fe80::1",
    "224.0.0.251",  # multicast
    "ff02::1",
    "255.255.255.255",  # broadcast: never a host
]
PRIVATE = ["10.1.2.3", "172.16.0.9", "172.31.255.1", "192.168.1.20", "fd12:3456::1", "fc00::1"]


# A scope means nothing off the link (and the zone cannot hold one: dnslib raised when the
# batch was applied, after it was written).
SCOPED = ["2001:db8::1%25eth0"]


@pytest.mark.parametrize("address", UNREACHABLE + PRIVATE + SCOPED)
async def test_addresses_nobody_can_reach_are_refused(address: str) -> None:
    store = FakeStore()
    dyndns2 = DynDns2(cast(Registry, FakeRegistry()), cast(ZoneStore, store))
    for query in (f"myip={address}", f"myip=203.0.113.5,{address}", f"myipv6={address}"):
        response = await dyndns2.handle(address_request(query))
        assert (response.status, response.body) == (200, b"dnserr\n"), query
    assert store.updates == []


@pytest.mark.parametrize("address", UNREACHABLE)
async def test_the_connection_address_is_refused_too_when_unreachable(address: str) -> None:
    store = FakeStore()
    dyndns2 = DynDns2(cast(Registry, FakeRegistry()), cast(ZoneStore, store))
    response = await dyndns2.handle(address_request("", client=address))
    assert response.body == b"dnserr\n"
    assert store.updates == []


@pytest.mark.parametrize("address", PRIVATE)
async def test_private_addresses_only_when_allowed(address: str) -> None:
    store = FakeStore()
    dyndns2 = DynDns2(
        cast(Registry, FakeRegistry()), cast(ZoneStore, store), allow_private_addresses=True
    )
    response = await dyndns2.handle(address_request(f"myip={address}"))
    assert response.body.decode().split()[0] == "good"
    assert len(store.updates) == 1


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        ("myip=%5B2001:db8::6%5D", "2001:db8::6"),  # bracketed, as in URLs
        ("myip=[2001:db8::6]", "2001:db8::6"),
        ("myipv6=[2001:DB8::6]", "2001:db8::6"),
        ("myip=203.0.113.5,[2001:db8::6]", "203.0.113.5,2001:db8::6"),
        # Documentation and shared ranges are public as far as this check goes (Python's
        # ipaddress calls the documentation ranges "private").
        ("myip=192.0.2.1", "192.0.2.1"),
        ("myip=198.51.100.1", "198.51.100.1"),
        ("myip=2001:db8::1", "2001:db8::1"),
        ("myip=172.32.0.1", "172.32.0.1"),
        ("myip=2a00:1450::1", "2a00:1450::1"),
    ],
)
async def test_public_addresses_are_accepted(query: str, shown: str) -> None:
    dyndns2 = DynDns2(cast(Registry, FakeRegistry()), cast(ZoneStore, FakeStore()))
    response = await dyndns2.handle(address_request(query))
    assert response.body.decode() == f"good {shown}\n"


@pytest.mark.parametrize("value", ["[203.0.113.5]", "[2001:db8::6", "2001:db8::6]", "[[::6]]"])
async def test_malformed_brackets_are_still_malformed(value: str) -> None:
    dyndns2 = DynDns2(cast(Registry, FakeRegistry()), cast(ZoneStore, FakeStore()))
    response = await dyndns2.handle(address_request(f"myip={value}"))
    assert response.body == b"dnserr\n"
