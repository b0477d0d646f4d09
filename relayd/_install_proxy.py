"""A relayed setup session's requests, one at a time, from the browser (TLS ended by the
relay) through the install tunnel to the NAS's setup page and back: h11 on both sides,
hop-by-hop headers dropped, `Forwarded` added, bodies bounded. Knows no registration.
"""

from __future__ import annotations

import h11
import trio

import protocol
from config.relayd import LimitsSection
from httpapi import HttpResponse, encode_response
from tunnel import Tunnel

from . import _install_pages as pages

__all__ = ["Closed", "answer", "forward", "header", "next_request"]

WRITE_TIMEOUT_S = 5.0  # for one of the relay's own pages

# Connection-level headers are the relay's business, not forwarded (RFC 9110 7.6.1).
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"upgrade",
        b"forwarded",
    }
)


class Closed(Exception):
    """The browser went away or broke HTTP: close its connection, nothing to answer."""


async def next_request(
    browser: h11.Connection, tls: trio.abc.Stream, limits: LimitsSection, *, first: bool
) -> object:
    """The next request's head. It must arrive whole within the handshake timeout of its
    first byte (slowloris); between requests a connection may idle for a minute."""
    head_s = limits.handshake_timeout_s
    deadline = trio.current_time() + (head_s if first else min(60.0, limits.idle_timeout_s))
    started = first
    while True:
        event = browser.next_event()
        if event is not h11.NEED_DATA:
            return event
        with trio.move_on_at(deadline):
            data = await tls.receive_some(65536)
            if data and not started:
                started = True
                deadline = trio.current_time() + head_s
            browser.receive_data(bytes(data))
            continue
        if started:
            raise trio.TooSlowError
        return h11.ConnectionClosed()  # idle between requests: close quietly


async def forward(
    browser: h11.Connection,
    tls: trio.abc.Stream,
    request: h11.Request,
    nas_tunnel: Tunnel,
    client: str,
    port: int,
    moved: list[int],
    limits: LimitsSection,
    max_body_bytes: int,
) -> bool:
    """One request to the NAS and its response back. False: close the connection."""
    try:
        stream = await nas_tunnel.open_stream(protocol.Open(protocol.SETUP_SERVICE, client, port))
    except (trio.BrokenResourceError, protocol.LocalProtocolError):
        await answer(browser, tls, pages.message_page(502, "NAS unreachable", "Try again."))
        return False
    nas = h11.Connection(h11.CLIENT)
    try:
        headers = [(n, v) for n, v in request.headers if n not in _HOP_BY_HOP]
        headers += [(b"forwarded", _forwarded(client)), (b"connection", b"close")]
        await stream.send_all(
            nas.send(h11.Request(method=request.method, target=request.target, headers=headers))
        )
        while True:
            event = await _next_event(browser, tls, limits.handshake_timeout_s)
            if isinstance(event, h11.Data):
                moved[0] += len(event.data)
                if moved[0] > max_body_bytes:
                    await answer(browser, tls, pages.message_page(413, "Too large", "Too large."))
                    return False
                await stream.send_all(nas.send(h11.Data(data=event.data)))
            elif isinstance(event, h11.EndOfMessage):
                await stream.send_all(nas.send(h11.EndOfMessage()))
                break
            else:
                raise Closed()
        answered = False
        while True:
            try:
                event = await _next_event(nas, stream, limits.idle_timeout_s)
            except (h11.RemoteProtocolError, trio.BrokenResourceError, trio.TooSlowError):
                if not answered:
                    await answer(browser, tls, pages.message_page(502, "Bad answer", "."))
                return False
            if isinstance(event, h11.Response):
                answered = True
                response_headers = [(n, v) for n, v in event.headers if n not in _HOP_BY_HOP]
                await tls.send_all(
                    browser.send(
                        h11.Response(
                            status_code=event.status_code,
                            headers=response_headers,
                            reason=event.reason,
                        )
                    )
                )
            elif isinstance(event, h11.Data):
                moved[1] += len(event.data)
                await tls.send_all(browser.send(h11.Data(data=event.data)))
            elif isinstance(event, h11.EndOfMessage):
                await tls.send_all(browser.send(h11.EndOfMessage()))
                return True
            elif isinstance(event, h11.ConnectionClosed):
                if not answered:
                    await answer(browser, tls, pages.message_page(502, "No answer", "."))
                return False
    finally:
        await stream.aclose()


def header(request: h11.Request, name: bytes) -> str:
    for key, value in request.headers:
        if key == name:
            return value.decode("latin-1")
    return ""


def _forwarded(client: str) -> bytes:
    node = f'"[{client}]"' if ":" in client else client
    return f"for={node};proto=https".encode()


async def _next_event(conn: h11.Connection, stream: trio.abc.Stream, timeout_s: float) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        with trio.fail_after(timeout_s):
            data = await stream.receive_some(65536)
        conn.receive_data(bytes(data))


async def answer(browser: h11.Connection, stream: trio.abc.Stream, response: HttpResponse) -> None:
    """Send one of our own pages on a session connection, then the connection closes."""
    if browser.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    with trio.move_on_after(WRITE_TIMEOUT_S):
        await stream.send_all(encode_response(response, "relayd", keep_alive=False))
