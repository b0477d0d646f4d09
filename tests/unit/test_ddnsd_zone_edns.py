"""The server's own EDNS options: NSID (RFC 5001) when configured and asked for; DNS cookies
(RFC 7873, RFC 9018's layout): a server cookie for each client cookie, bound to the client's
address, valid for an hour, never served from the exact-bytes cache to another client,
FORMERR for a malformed option; with RRL, a valid server cookie lifts the limit and a client
cookie alone gets BADCOOKIE where a truncated answer would have gone."""

from __future__ import annotations

import socket
import time

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest
import trio

from ddnsd._answer import COOKIE_CLIENT, COOKIE_NONE, COOKIE_VALID, Responder
from ddnsd._rrl import RateLimiter
from ddnsd._server import DnsServer
from service import Boundary
from tests.unit.test_ddnsd_answer import make_zones

CLIENT_COOKIE = bytes(range(1, 9))


def cookie_query(
    name: str = "nas1.dyn.test", server: bytes = b"", client: bytes = CLIENT_COOKIE
) -> dns.message.QueryMessage:
    options: list[dns.edns.Option] = [
        dns.edns.GenericOption(dns.edns.OptionType.COOKIE, client + server)
    ]
    return dns.message.make_query(name, "A", use_edns=0, options=options)


def cookie_of(response: dns.message.Message) -> bytes | None:
    for option in response.options:
        if option.otype == dns.edns.OptionType.COOKIE:
            return bytes(option.to_wire())
    return None


def answer(responder: Responder, query: dns.message.Message, client: str) -> dns.message.Message:
    wire = responder.respond(query.to_wire(), False, client)
    assert wire is not None
    return dns.message.from_wire(wire)


def test_nsid_is_sent_when_configured_and_asked_for() -> None:
    responder = Responder(make_zones())
    responder.configure(nsid=b"ddnsd-1")
    asking = dns.message.make_query(
        "nas1.dyn.test", "A", use_edns=0, options=[dns.edns.NSIDOption(b"")]
    )
    for _ in range(3):  # built, then from the caches
        response = answer(responder, asking, "192.0.2.1")
        [nsid] = [o for o in response.options if o.otype == dns.edns.OptionType.NSID]
        assert nsid.nsid == b"ddnsd-1"
        assert response.answer[0][0].address == "198.51.100.4"
        plain = answer(responder, dns.message.make_query("nas1.dyn.test", "A", use_edns=0), "x")
        assert plain.options == ()
    unnamed = Responder(make_zones())
    assert answer(unnamed, asking, "192.0.2.1").options == ()


def test_a_client_cookie_gets_a_server_cookie_that_is_valid_for_that_client_only() -> None:
    responder = Responder(make_zones())
    responder.configure(cookies=True)
    first = answer(responder, cookie_query(), "192.0.2.1")
    assert responder.cookie == COOKIE_CLIENT
    cookie = cookie_of(first)
    assert cookie is not None and len(cookie) == 24 and cookie[:8] == CLIENT_COOKIE
    assert first.answer[0][0].address == "198.51.100.4" and first.flags & dns.flags.AA
    again = cookie_query(server=cookie[8:])
    for _ in range(2):
        assert answer(responder, again, "192.0.2.1").answer[0][0].address == "198.51.100.4"
        assert responder.cookie == COOKIE_VALID
        # The same bytes from another address: not its cookie, and not the first one's
        # answer from a cache either.
        other = answer(responder, again, "2001:db8::1")
        assert responder.cookie == COOKIE_CLIENT
        assert cookie_of(other) != cookie_of(answer(responder, again, "192.0.2.1"))
    answer(responder, cookie_query(client=b"\xff" * 8, server=cookie[8:]), "192.0.2.1")
    assert responder.cookie == COOKIE_CLIENT  # another client cookie: not the same pair
    answer(responder, dns.message.make_query("nas1.dyn.test", "A", use_edns=0), "192.0.2.1")
    assert responder.cookie == COOKIE_NONE


def test_a_server_cookie_is_renewed_after_half_an_hour_and_valid_for_an_hour(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    responder = Responder(make_zones())
    responder.configure(cookies=True)
    now = time.time()
    cookie = cookie_of(answer(responder, cookie_query(), "192.0.2.1"))
    assert cookie is not None
    monkeypatch.setattr(time, "time", lambda: now + 1700)  # the same one given again
    assert cookie_of(answer(responder, cookie_query(server=cookie[8:]), "192.0.2.1")) == cookie
    assert responder.cookie == COOKIE_VALID
    monkeypatch.setattr(time, "time", lambda: now + 3500)  # renewed, the old one still valid
    assert cookie_of(answer(responder, cookie_query(server=cookie[8:]), "192.0.2.1")) != cookie
    assert responder.cookie == COOKIE_VALID
    monkeypatch.setattr(time, "time", lambda: now + 3700)
    renewed = cookie_of(answer(responder, cookie_query(server=cookie[8:]), "192.0.2.1"))
    assert responder.cookie == COOKIE_CLIENT and renewed != cookie


@pytest.mark.parametrize("length", [0, 5, 9, 15, 41])
def test_a_malformed_cookie_is_formerr(length: int) -> None:
    responder = Responder(make_zones())
    responder.configure(cookies=True)
    query = cookie_query(client=bytes(length))
    assert answer(responder, query, "192.0.2.1").rcode() == dns.rcode.FORMERR
    responder.configure(cookies=False)  # without cookies, an option like any other
    response = answer(responder, query, "192.0.2.1")
    assert response.rcode() == dns.rcode.NOERROR and cookie_of(response) is None


def test_badcookie_carries_the_question_and_a_server_cookie() -> None:
    responder = Responder(make_zones())
    responder.configure(cookies=True)
    query = cookie_query()
    wire = responder.badcookie(query.to_wire(), "192.0.2.1")
    assert wire is not None
    response = dns.message.from_wire(wire)
    assert response.rcode() == dns.rcode.BADCOOKIE and response.id == query.id
    assert response.question == query.question and not response.answer
    cookie = cookie_of(response)
    assert cookie is not None and cookie[:8] == CLIENT_COOKIE
    answer(responder, cookie_query(server=cookie[8:]), "192.0.2.1")
    assert responder.cookie == COOKIE_VALID


async def test_rrl_spares_a_valid_cookie_and_answers_badcookie_for_a_client_cookie() -> None:
    responder = Responder(make_zones())
    responder.configure(cookies=True)
    server = DnsServer(responder, RateLimiter(1, slip=1), Boundary())
    listening = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listening.bind(("127.0.0.1", 0))
    rcodes: dict[str, list[int]] = {"none": [], "client": [], "valid": []}
    with listening, trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve_udp, listening)
            client = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
            with client:
                await client.connect(listening.getsockname())

                async def ask(query: dns.message.Message) -> dns.message.Message:
                    await client.send(query.to_wire())
                    return dns.message.from_wire(await client.recv(65535))

                cookie = cookie_of(await ask(cookie_query()))  # within the limit
                assert cookie is not None
                for kind, query in (
                    ("none", dns.message.make_query("nas1.dyn.test", "A", use_edns=0)),
                    ("client", cookie_query()),
                    ("valid", cookie_query(server=cookie[8:])),
                ):
                    for _ in range(3):
                        response = await ask(query)
                        truncated = bool(response.flags & dns.flags.TC)
                        rcodes[kind].append(-1 if truncated else response.rcode())
            nursery.cancel_scope.cancel()
    # Slip 1: every answer over the limit goes out short; one second is far off.
    assert rcodes == {
        "none": [-1, -1, -1],
        "client": [dns.rcode.BADCOOKIE] * 3,
        "valid": [dns.rcode.NOERROR] * 3,
    }
