"""DynDNS2 without sockets or a database: every reply word with its exact body (docs/ddnsd.md),
A and AAAA updated independently, the per-host limit answers `abuse` (with 200), refused
requests do not count against the device, and addresses nobody outside can reach are refused."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import pytest
import trio

from ddnsd._answer import Responder
from ddnsd._dyndns2 import CHALLENGE, DynDns2
from ddnsd._store import UpdateResult, ZoneStore
from ddnsd._zone import Change, SoaFields, Zone, ZoneSet
from httpapi import HttpRequest, HttpResponse
from registry import DnsRRset, Registry, Token, TokenKind


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


# Every reply word, exact bodies, against the real ZoneStore (the registry is a stand-in).


class StoreRegistry:
    """The registry as DynDns2 and ZoneStore use it: two devices, nas1 and nas2, each with
    its own DynDNS2 password; `failing` makes the durable write fail, `deleted` a device."""

    def __init__(self) -> None:
        self.secrets = {"s3cret": "nas1", "other": "nas2"}
        self.devices = {"nas1", "nas2"}
        self.failing: Exception | None = None
        self.written = 0

    async def verify_token(self, kind: TokenKind, secret: str) -> Token | None:
        await trio.lowlevel.checkpoint()
        device = self.secrets.get(secret)
        if kind is not TokenKind.DYNDNS2 or device is None or device not in self.devices:
            return None
        return Token("tok_" + device, kind, None, device, 0.0)

    async def get_device(self, name: str) -> object | None:
        await trio.lowlevel.checkpoint()
        return object() if name in self.devices else None

    async def commit_dns(self, rrsets: list[DnsRRset], serials: dict[str, int]) -> None:
        await trio.lowlevel.checkpoint()
        if self.failing is not None:
            raise self.failing
        self.written += 1


@dataclass
class Service:
    dyndns2: DynDns2
    registry: StoreRegistry
    store: ZoneStore

    def current(self, rrtype: str) -> tuple[str, ...]:
        return self.store.zones.current("nas1", rrtype)

    async def respond(
        self, query: str, user: str = "nas1.dyn.test", secret: str | None = "s3cret"
    ) -> HttpResponse:
        headers = {}
        if secret is not None:
            auth = base64.b64encode(f"{user}:{secret}".encode()).decode()
            headers["authorization"] = f"Basic {auth}"
        return await self.dyndns2.handle(
            HttpRequest("GET", f"/nic/update?{query}", headers, b"", "198.51.100.7")
        )

    async def get(self, query: str) -> tuple[int, str]:
        response = await self.respond(query)
        return response.status, response.body.decode()


@asynccontextmanager
async def service(**options: Any) -> AsyncIterator[Service]:
    zones = ZoneSet(Zone("dyn.test", SoaFields("ns1.dyn.test", "hostmaster.dyn.test"), ()))
    zones.add_device("nas1")
    zones.add_device("nas2")
    registry = StoreRegistry()
    store = ZoneStore(cast(Registry, registry), zones, Responder(zones))
    dyndns2 = DynDns2(cast(Registry, registry), store, **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        yield Service(dyndns2, registry, store)
        nursery.cancel_scope.cancel()


OWN = "hostname=nas1.dyn.test"


async def test_good_then_nochg_carry_the_address() -> None:
    async with service() as s:
        assert await s.get(f"{OWN}&myip=192.0.2.1") == (200, "good 192.0.2.1\n")
        assert await s.get(f"{OWN}&myip=192.0.2.1") == (200, "nochg 192.0.2.1\n")
        assert await s.get(f"{OWN}") == (200, "good 198.51.100.7\n")  # the connection's own
        assert await s.get(f"{OWN}&myip=192.0.2.1,2001:db8::1") == (
            200,
            "good 192.0.2.1,2001:db8::1\n",
        )
        assert s.current("A") == ("192.0.2.1",) and s.current("AAAA") == ("2001:db8::1",)
        assert s.dyndns2.counts == {"good": 3, "nochg": 1}


async def test_badauth_is_401_with_a_challenge_and_changes_nothing() -> None:
    cases: list[tuple[str, str | None]] = [
        ("nas1.dyn.test", "wrong"),
        ("nas1.dyn.test", None),  # no Authorization header at all
        ("nas2.dyn.test", "s3cret"),  # nas1's password under another name
        ("nas1.other.test", "s3cret"),
        ("nas1.dyn.test", "other"),  # nas2's password
    ]
    async with service() as s:
        for user, secret in cases:
            response = await s.respond(f"{OWN}&myip=192.0.2.1", user, secret)
            assert (response.status, response.body) == (401, b"badauth\n"), (user, secret)
            assert response.headers == CHALLENGE
        assert s.current("A") == () and s.registry.written == 0
        assert s.dyndns2.counts == {"badauth": len(cases)}


async def test_a_deleted_device_gets_badauth_even_while_its_token_is_cached() -> None:
    async with service() as s:
        assert await s.get(f"{OWN}&myip=192.0.2.1") == (200, "good 192.0.2.1\n")
        s.registry.devices.discard("nas1")  # `nascloud device delete`: token goes with it
        s.store.zones.remove_device("nas1")
        assert await s.get(f"{OWN}&myip=192.0.2.2") == (401, "badauth\n")
        assert await s.get(f"{OWN}&myip=192.0.2.2") == (401, "badauth\n")
        assert s.registry.written == 1


async def test_notfqdn_nohost_and_numhost() -> None:
    async with service() as s:
        assert await s.get("hostname=&myip=192.0.2.1") == (200, "notfqdn\n")
        assert await s.get("myip=192.0.2.1") == (200, "notfqdn\n")
        assert await s.get("hostname=nas1&myip=192.0.2.1") == (200, "notfqdn\n")
        assert await s.get("hostname=nas2.dyn.test&myip=192.0.2.1") == (200, "nohost\n")
        assert await s.get("hostname=example.org&myip=192.0.2.1") == (200, "nohost\n")
        many = ",".join(["nas1.dyn.test"] * 21)
        assert await s.get(f"hostname={many}&myip=192.0.2.1") == (200, "numhost\n")
        assert s.current("A") == () and s.registry.written == 0
        twenty = ",".join(["nas1.dyn.test"] * 20)  # the limit itself is served
        assert await s.get(f"hostname={twenty}&myip=192.0.2.1") == (
            200,
            "\n".join(["good 192.0.2.1"] * 20) + "\n",
        )


async def test_abuse_past_the_per_host_limit_is_200_and_not_stored() -> None:
    async with service(updates_per_host_per_minute=1) as s:
        assert await s.get(f"{OWN}&myip=192.0.2.1") == (200, "good 192.0.2.1\n")
        assert await s.get(f"{OWN}&myip=192.0.2.2") == (200, "abuse\n")
        assert s.current("A") == ("192.0.2.1",)


async def test_dnserr_for_an_address_that_is_not_one() -> None:
    async with service() as s:
        for value in ("bogus", "192.0.2.300", "2001:db8::g", "192.0.2.1,bogus"):
            assert await s.get(f"{OWN}&myip={value}") == (200, "dnserr\n"), value
        assert s.current("A") == () and s.registry.written == 0


async def test_911_when_the_write_fails_and_nothing_is_acknowledged() -> None:
    async with service() as s:
        s.registry.failing = OSError(28, "No space left on device")
        assert await s.get(f"{OWN}&myip=192.0.2.1") == (200, "911\n")
        assert s.current("A") == ()
        s.registry.failing = None  # space came back: the same request now works
        assert await s.get(f"{OWN}&myip=192.0.2.1") == (200, "good 192.0.2.1\n")


async def test_911_when_the_handler_fails_unexpectedly() -> None:
    async with service() as s:

        async def broken(kind: TokenKind, secret: str) -> Token | None:
            raise RuntimeError("registry gone")

        s.registry.verify_token = broken  # type: ignore[method-assign]
        assert await s.get(f"{OWN}&myip=192.0.2.1") == (200, "911\n")
        assert s.dyndns2.boundary.errors == {"dyndns2": 1}


async def test_offline_yes_removes_both_families_and_the_next_update_restores() -> None:
    async with service() as s:
        await s.get(f"{OWN}&myip=192.0.2.1,2001:db8::1")
        assert await s.get(f"{OWN}&myip=192.0.2.1&offline=YES") == (200, "good 192.0.2.1\n")
        assert (s.current("A"), s.current("AAAA")) == ((), ())
        assert await s.get(f"{OWN}&myip=192.0.2.1&offline=YES") == (200, "nochg 192.0.2.1\n")
        assert await s.get(f"{OWN}&myip=192.0.2.1&offline=NO") == (200, "good 192.0.2.1\n")
        assert (s.current("A"), s.current("AAAA")) == (("192.0.2.1",), ())


async def test_a_and_aaaa_are_updated_independently() -> None:
    async with service() as s:
        assert await s.get(f"{OWN}&myip=192.0.2.1") == (200, "good 192.0.2.1\n")
        assert await s.get(f"{OWN}&myipv6=2001:db8::1") == (200, "good 2001:db8::1\n")
        assert (s.current("A"), s.current("AAAA")) == (("192.0.2.1",), ("2001:db8::1",))
        assert await s.get(f"{OWN}&myip=192.0.2.2") == (200, "good 192.0.2.2\n")
        assert (s.current("A"), s.current("AAAA")) == (("192.0.2.2",), ("2001:db8::1",))
        assert await s.get(f"{OWN}&myip=2001:db8::2") == (200, "good 2001:db8::2\n")
        assert (s.current("A"), s.current("AAAA")) == (("192.0.2.2",), ("2001:db8::2",))
        # nas2's names are untouched by all of it.
        assert s.store.zones.current("nas2", "A") == ()


# RFC 6598 shared space (CGNAT) and the reserved 240/4 are as unreachable from outside as a
# LAN: published only with allow_private_addresses. Their neighbours are public.
NOT_ROUTED = ["100.64.0.1", "100.127.255.254", "240.0.0.1", "254.255.255.254"]
ROUTED_NEIGHBOURS = ["100.63.255.255", "100.128.0.1", "223.255.255.254"]


@pytest.mark.parametrize("address", NOT_ROUTED)
async def test_cgnat_and_reserved_addresses_are_refused_unless_private_ones_are_allowed(
    address: str,
) -> None:
    async with service() as s:
        assert await s.get(f"{OWN}&myip={address}") == (200, "dnserr\n")
        assert s.current("A") == ()
        s.dyndns2.allow_private_addresses = True  # what a reload sets
        assert await s.get(f"{OWN}&myip={address}") == (200, f"good {address}\n")
        assert s.current("A") == (address,)


@pytest.mark.parametrize("address", ROUTED_NEIGHBOURS)
async def test_the_neighbours_of_the_refused_ranges_are_published(address: str) -> None:
    async with service() as s:
        assert await s.get(f"{OWN}&myip={address}") == (200, f"good {address}\n")


@pytest.mark.parametrize("target", ["//i[c/J", "//[::1/nic/update", "http://[/nic/update"])
async def test_a_target_urlsplit_cannot_read_is_not_found_not_a_failure(target: str) -> None:
    # Found by tests/fuzz/fuzz_dyndns2.py: urlsplit raised ValueError ("Invalid IPv6 URL").
    dyndns2 = DynDns2(cast(Registry, FakeRegistry()), cast(ZoneStore, FakeStore()))
    response = await dyndns2.handle(HttpRequest("GET", target, {}, b"", "198.51.100.7"))
    assert (response.status, response.body) == (404, b"not found\n")
    assert not dyndns2.boundary.errors


def forwarded_request(peer: str, forwarded: str | None) -> HttpRequest:
    auth = base64.b64encode(b"nas1.dyn.test:s3cret").decode()
    headers = {"authorization": f"Basic {auth}"}
    if forwarded is not None:
        headers["x-forwarded-for"] = forwarded
    return HttpRequest("GET", "/nic/update?hostname=nas1.dyn.test", headers, b"", peer)


@pytest.mark.parametrize(
    ("peer", "forwarded", "published"),
    [
        # From the trusted proxy: the address it saw (the last one), not what came before.
        ("127.0.0.1", "203.0.113.66", "203.0.113.66"),
        ("127.0.0.1", "198.51.100.1, 203.0.113.66", "203.0.113.66"),
        ("::ffff:127.0.0.1", "2001:db8::66", "2001:db8::66"),
        # From anyone else the header is the client's own word: the connection decides.
        ("198.51.100.9", "203.0.113.66", "198.51.100.9"),
        # The proxy said nothing readable: its own address, which is refused (loopback).
        ("127.0.0.1", "not an address", None),
        ("127.0.0.1", None, None),
    ],
)
async def test_behind_a_trusted_proxy_the_client_is_who_the_proxy_saw(
    peer: str, forwarded: str | None, published: str | None
) -> None:
    store = FakeStore()
    dyndns2 = DynDns2(
        cast(Registry, FakeRegistry()), cast(ZoneStore, store), trusted_proxies=("127.0.0.0/8",)
    )
    response = await dyndns2.handle(forwarded_request(peer, forwarded))
    if published is None:
        assert (response.status, response.body) == (200, b"dnserr\n")
        assert store.updates == []
    else:
        assert response.body == f"good {published}\n".encode()
        [[change]] = store.updates
        assert change.values == (published,)


async def test_without_trusted_proxies_the_header_is_ignored() -> None:
    store = FakeStore()
    dyndns2 = DynDns2(cast(Registry, FakeRegistry()), cast(ZoneStore, store))
    response = await dyndns2.handle(forwarded_request("198.51.100.9", "203.0.113.66"))
    assert response.body == b"good 198.51.100.9\n"
