"""Cloud Install's logic with trio's mock clock: a registration ends at its lifetime and leaves
no row; the agent's window survives restarts; the site's forms and rate limits."""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
import trio.testing
import trustme
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

import protocol
from config import loads
from config.relayd import InstallSiteSection, LimitsSection
from httpapi import HttpRequest
from nasagent._install import _ALPHABET as cloud_key_alphabet
from nasagent._install import InstallWindow, load_or_create_cloud_key, new_cloud_key
from registry import Registry, hash_secret, normalize_cloud_key
from relayd._install import InstallSite
from service import SlidingWindow
from tests.database import database_bytes
from tunnel import Tunnel, open_tunnel

from .pairs import SERVER_NAME

CLOUD_KEY = "K7QD-XM2P-9HTA-4R3B"


def site_config(tmp_path: Path, **values: object) -> InstallSiteSection:
    ca = trustme.CA()
    cert = ca.issue_cert("install.link.test", "*.install.link.test")
    cert.private_key_pem.write_to_path(str(tmp_path / "install.key"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "install.crt"))
    extra = "\n".join(f"{k} = {v!r}" for k, v in values.items())
    text = f'[install]\ncert_file = "install.crt"\nkey_file = "install.key"\n{extra}\n'
    return loads(_InstallOnly, text, "relayd.toml", tmp_path).install


def make_site(
    directory: Path, registry: Registry, counts: Counter[str] | None = None, **values: object
) -> InstallSite:
    """An install site on link.test that records nothing, with [install] `values`."""
    return InstallSite(
        site_config(directory, **values),
        LimitsSection(),
        registry,
        "link.test",
        lambda *a: None,
        counts if counts is not None else Counter(),
    )


@dataclass(frozen=True)
class _InstallOnly:
    """relayd's [install] table alone, loaded and checked as relayd loads it."""

    install: InstallSiteSection


@asynccontextmanager
async def install_tunnel(
    site: InstallSite, address: str, key: Ed25519PrivateKey | None = None
) -> AsyncIterator[Tunnel]:
    """An agent's install tunnel (over memory) served by `site`."""
    a, b = trio.testing.memory_stream_pair()
    client = protocol.Connection(
        protocol.Role.CLIENT,
        server_name=SERVER_NAME,
        credentials=protocol.Credentials(
            protocol.AuthKind.INSTALL, "install", key or Ed25519PrivateKey.generate()
        ),
    )
    server = protocol.Connection(
        protocol.Role.SERVER,
        server_name=SERVER_NAME,
        nonce=bytes(32),
        accepted_kinds=frozenset({protocol.AuthKind.INSTALL}),
    )

    async def accept(request: protocol.AuthenticationRequested) -> bytes | None:
        return request.public_key

    async def serve() -> None:
        async with open_tunnel(b, server, authenticate=accept) as tunnel:
            await site.serve_tunnel(tunnel, address)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        async with open_tunnel(a, client) as tunnel:
            yield tunnel
        nursery.cancel_scope.cancel()


def register(lifetime_s: int | None = None, key: str = CLOUD_KEY) -> protocol.InstallRegister:
    return protocol.InstallRegister(1, key, ("192.168.1.30",), 8080, "http", lifetime_s)


def rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM install_registrations").fetchone()[0])


async def test_an_install_ends_at_its_lifetime_and_leaves_nothing(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    autojump_clock.autojump_threshold = 0.05  # the registry works in a thread: let it finish
    registry = Registry.open_sqlite(tmp_path / "registry.sqlite3", clock=trio.current_time)
    site = make_site(tmp_path, registry)
    async with install_tunnel(site, "198.51.100.7") as tunnel:
        await tunnel.send_message(register())
        assert isinstance(await tunnel.receive_message(), protocol.Ack)
        started = trio.current_time()
        assert await registry.find_install(CLOUD_KEY) is not None
        await trio.sleep(86400 - 1)
        assert not tunnel.closed
        assert await registry.find_install(CLOUD_KEY) is not None
        await tunnel.wait_closed()
        assert trio.current_time() - started == pytest.approx(86400, abs=1)
        assert tunnel.goaway is not None
        assert tunnel.goaway.error_code == protocol.ErrorCode.INSTALL_ENDED
    assert await registry.find_install(CLOUD_KEY) is None
    assert site.installs == {} and site.sessions == {} and site.by_public_key == {}
    await registry.aclose()
    assert rows(tmp_path / "registry.sqlite3") == 0
    assert hash_secret(normalize_cloud_key(CLOUD_KEY)) not in database_bytes(
        tmp_path / "registry.sqlite3"
    )


async def test_a_reconnecting_nas_gets_only_what_is_left_of_its_window(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    autojump_clock.autojump_threshold = 0.05
    registry = Registry.open_sqlite(tmp_path / "registry.sqlite3", clock=trio.current_time)
    site = make_site(tmp_path, registry)
    async with install_tunnel(site, "198.51.100.7") as tunnel:
        await tunnel.send_message(register(lifetime_s=600))
        assert isinstance(await tunnel.receive_message(), protocol.Ack)
        started = trio.current_time()
        await tunnel.wait_closed()
        assert trio.current_time() - started == pytest.approx(600, abs=1)
    await registry.aclose()


async def test_the_same_cloud_key_twice_and_a_device_key_are_refused(tmp_path: Path) -> None:
    registry = Registry.open_sqlite(tmp_path / "registry.sqlite3")
    owner = await registry.create_account("o@example.org", "Owner")
    device_key = Ed25519PrivateKey.generate()
    await registry.enrol_device(owner.account_id, "nas1", protocol.public_key_bytes(device_key))
    site = make_site(tmp_path, registry)
    async with install_tunnel(site, "198.51.100.7") as first:
        await first.send_message(register())
        assert isinstance(await first.receive_message(), protocol.Ack)
        async with install_tunnel(site, "198.51.100.8") as second:
            await second.send_message(register())
            answer = await second.receive_message()
            assert isinstance(answer, protocol.Error)
            assert answer.error_code == protocol.ErrorCode.NOT_PERMITTED
            assert "registered already" in answer.message
            await second.wait_closed()
        async with install_tunnel(site, "198.51.100.9", device_key) as third:
            await third.send_message(register(key="OTHERKEY1234"))
            answer = await third.receive_message()
            assert isinstance(answer, protocol.Error)
            assert answer.error_code == protocol.ErrorCode.NOT_PERMITTED
            assert "enrolled device" in answer.message
        assert not first.closed  # the first NAS is not disturbed
        assert len(site.installs) == 1
    await registry.aclose()


async def test_a_tunnel_that_does_not_register_is_closed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    autojump_clock.autojump_threshold = 0.05
    registry = Registry.open_sqlite(tmp_path / "registry.sqlite3")
    counts: Counter[str] = Counter()
    site = make_site(tmp_path, registry, counts=counts)
    async with install_tunnel(site, "198.51.100.7") as tunnel:
        await tunnel.wait_closed()
        assert tunnel.goaway is not None
        assert tunnel.goaway.error_code == protocol.ErrorCode.INVALID_REQUEST
    assert counts["install_refused"] == 1
    await registry.aclose()


def test_the_install_window_survives_restarts_and_ends_for_good(tmp_path: Path) -> None:
    now = [1000.0]
    path = tmp_path / "install-window.json"
    window = InstallWindow(path, 86400, clock=lambda: now[0])
    assert window.open() == 86400
    now[0] += 3600
    again = InstallWindow(path, 86400, clock=lambda: now[0])  # the agent restarted
    assert again.open() == pytest.approx(86400 - 3600)
    now[0] += 86400
    assert InstallWindow(path, 86400, clock=lambda: now[0]).open() == 0
    path.unlink()
    fresh = InstallWindow(path, 86400, clock=lambda: now[0])
    assert fresh.open() == 86400
    fresh.end()  # the owner stopped, or setup completed
    assert InstallWindow(path, 86400, clock=lambda: now[0]).open() == 0
    path.write_text("{not json")
    assert InstallWindow(path, 86400, clock=lambda: now[0]).open() == 0  # unreadable: ended


def test_cloud_keys_are_80_bits_in_an_unambiguous_alphabet(tmp_path: Path) -> None:
    keys = {new_cloud_key() for _ in range(1000)}
    assert len(keys) == 1000
    for key in keys:
        assert len(key) == 19 and key.count("-") == 3
        assert not set(key) & set("ILOU")
        assert normalize_cloud_key(key.lower().replace("-", " ")) == key.replace("-", "")
    assert len(set(cloud_key_alphabet)) == 32  # so 16 characters are 80 bits
    path = tmp_path / "cloud.key"
    key = load_or_create_cloud_key(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert load_or_create_cloud_key(path) == key  # made once


def test_sliding_window_limits_per_key_and_forgets_idle_keys() -> None:
    now = [0.0]
    window = SlidingWindow(3, 60.0, max_keys=2, clock=lambda: now[0])
    assert [window.allow("a") for _ in range(5)] == [True, True, True, False, False]
    assert window.allow("b")
    now[0] = 61.0
    assert window.allow("a")  # the window moved on
    assert window.allow("c")  # "b" is forgotten to make room
    assert set(window._events) <= {"a", "c"}


def _form(
    body: bytes,
    client: str = "203.0.113.9",
    host: str = "install.link.test",
    path: str = "/find",
    content_type: str = "application/x-www-form-urlencoded",
) -> HttpRequest:
    """A POST to the install site, as its own form sends it unless told otherwise."""
    return HttpRequest("POST", path, {"host": host, "content-type": content_type}, body, client)


async def test_lookups_are_rate_limited_and_answer_alike(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    autojump_clock.autojump_threshold = 0.05
    registry = Registry.open_sqlite(tmp_path / "registry.sqlite3")
    site = make_site(tmp_path, registry, lookups_per_minute=3, lookup_floor_s=0.25)
    answers = []
    for key in (b"K7QD-XM2P-9HTA-4R3C", b"ZZZZ-ZZZZ-ZZZZ-ZZZZ", b"x"):
        started = trio.current_time()
        answers.append(await site._page(_form(b"cloud_key=" + key)))
        assert trio.current_time() - started >= 0.25  # the floor, found or not
    assert {a.status for a in answers} == {404}
    # A near miss says nothing more than garbage: the same page but for what was typed,
    # which is given back to be corrected.
    for answer, key in zip(
        answers, (b"K7QD-XM2P-9HTA-4R3C", b"ZZZZ-ZZZZ-ZZZZ-ZZZZ", b"x"), strict=True
    ):
        assert b'value="' + key + b'"' in answer.body
        assert b'class="error" role="alert"' in answer.body
    assert len({re.sub(rb'value="[^"]*"', b"", a.body) for a in answers}) == 1
    limited = await site._page(_form(b"cloud_key=K7QD-XM2P-9HTA-4R3B"))
    assert limited.status == 429
    other = await site._page(_form(b"cloud_key=K7QD-XM2P-9HTA-4R3B", client="203.0.113.10"))
    assert other.status == 404  # another address is not limited by the first
    await registry.aclose()


async def test_the_site_refuses_wrong_hosts_methods_and_forms(tmp_path: Path) -> None:
    registry = Registry.open_sqlite(tmp_path / "registry.sqlite3")
    site = make_site(tmp_path, registry, lookup_floor_s=0.0)
    assert (await site._page(_form(b"cloud_key=A", host="evil.example"))).status == 421
    get = HttpRequest("GET", "/", {"host": "install.link.test"}, b"", "203.0.113.9")
    page = await site._page(get)
    assert page.status == 200 and b'name="cloud_key"' in page.body
    assert ("X-Frame-Options", "DENY") in page.headers
    wrong = HttpRequest("GET", "/find", {"host": "install.link.test"}, b"", "203.0.113.9")
    assert (await site._page(wrong)).status == 405
    json_body = _form(b"{}", path="/find", content_type="application/json")
    assert (await site._page(json_body)).status == 400
    many = _form(b"&".join(b"f%d=1" % i for i in range(20)))
    assert (await site._page(many)).status == 400
    stop = _form(b"session=forged", path="/stop")
    assert (await site._page(stop)).status == 404
    await registry.aclose()


_requests = st.builds(
    HttpRequest,
    method=st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"]),
    target=st.sampled_from(["/", "/find", "/stop", "/x", "/find?cloud_key=A"])
    | st.text(max_size=40),
    headers=st.fixed_dictionaries(
        {},
        optional={
            "host": st.sampled_from(["install.link.test", "INSTALL.LINK.TEST:8443", "[::1]"])
            | st.text(max_size=30),
            "content-type": st.sampled_from(["application/x-www-form-urlencoded", "text/plain", ""])
            | st.text(max_size=30),
        },
    ),
    body=st.binary(max_size=512)
    | st.text(max_size=200).map(lambda t: ("cloud_key=" + t).encode("utf-8")),
    client=st.sampled_from(["203.0.113.9", "2001:db8::1", "::ffff:203.0.113.9"]),
)


@settings(max_examples=40, deadline=None)
@given(requests=st.lists(_requests, min_size=1, max_size=12))
def test_any_request_gets_a_page_never_a_failure(
    tmp_path_factory: pytest.TempPathFactory, requests: list[HttpRequest]
) -> None:
    directory = tmp_path_factory.mktemp("site")

    async def main() -> None:
        registry = Registry.open_sqlite(directory / "registry.sqlite3")
        site = make_site(directory, registry, lookup_floor_s=0.0)
        for request in requests:
            response = await site._page(request)
            assert response.status in {200, 400, 404, 405, 421, 429}, (request, response)
            assert response.content_type == "text/html; charset=utf-8"
            assert all("\n" not in v and "\r" not in v for _, v in response.headers)
        await registry.aclose()

    trio.run(main)


def test_lan_urls_are_built_from_registered_addresses_only() -> None:
    from registry import InstallRegistration

    def urls(scheme: str, port: int, *addresses: str) -> tuple[str, ...]:
        return InstallRegistration("i", bytes(32), addresses, port, "x", 0, 1, scheme).lan_urls

    assert urls("http", 8080, "192.168.1.30") == ("http://192.168.1.30:8080/",)
    assert urls("https", 443, "192.168.1.30", "fd00::5") == (
        "https://192.168.1.30/",
        "https://[fd00::5]/",
    )
    assert urls("http", 80, "10.0.0.2") == ("http://10.0.0.2/",)


def test_a_clock_stepped_back_never_lengthens_the_install_window(tmp_path: Path) -> None:
    wall, running = [1_000_000.0], [0.0]
    path = tmp_path / "install-window.json"

    def window() -> InstallWindow:
        return InstallWindow(path, 86400, clock=lambda: wall[0], monotonic=lambda: running[0])

    first = window()
    assert first.open() == 86400
    wall[0] += 10 * 3600
    running[0] += 10 * 3600
    first.count()  # the agent keeps its running time every minute
    wall[0] -= 5 * 3600  # then the clock is set back five hours, and the agent restarts
    assert window().open() == pytest.approx(14 * 3600)  # not 19
    # While it runs, too: the running time counts, whatever the wall clock says.
    running_window = window()
    running_window.open()
    running[0] += 3600
    wall[0] -= 3600
    assert running_window.remaining() == pytest.approx(13 * 3600)
    # Time while the agent is down counts by the wall clock.
    running_window.count()
    wall[0] += 20 * 3600
    assert window().open() == 0


async def test_the_site_speaks_french_to_a_browser_that_asks_and_names_its_operator(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    registry = Registry.open_sqlite(tmp_path / "registry.sqlite3")
    site = make_site(
        tmp_path,
        registry,
        operator_name="Exemple <Cloud>",
        privacy_url="https://example.test/confidentialite",
        lookup_floor_s=0,
    )
    french = {"host": "install.link.test", "accept-language": "fr-CH, fr;q=0.9, en;q=0.8"}
    page = await site._page(HttpRequest("GET", "/", french, b"", "203.0.113.9"))
    body = page.body.decode()
    assert '<html lang="fr">' in body and "Configurer votre nouveau NAS" in body
    assert "Service exploité par Exemple &lt;Cloud&gt;" in body
    assert 'href="https://example.test/confidentialite">Confidentialité</a>' in body
    english = await site._page(HttpRequest("GET", "/", {"host": "install.link.test"}, b"", "x"))
    assert '<html lang="en">' in english.body.decode()
    wrong = HttpRequest(
        "POST",
        "/find",
        {**french, "content-type": "application/x-www-form-urlencoded"},
        b"cloud_key=K7QD-XM2P-9HTA-4R3C",
        "203.0.113.9",
    )
    answer = (await site._page(wrong)).body.decode()
    assert "Aucun nouveau NAS n&#x27;attend sous cette clé" in answer
    assert 'value="K7QD-XM2P-9HTA-4R3C"' in answer
    await registry.aclose()
