"""A small HTTP/1.1 server on h11: keep-alive, bounded heads and bodies, per-request deadlines.

It parses and frames; the handler decides. Malformed requests get 400, oversized heads 431,
oversized bodies 413, slow clients 408, and the connection closes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus

import h11
import trio

__all__ = ["HttpRequest", "HttpResponse", "HttpServer"]

log = logging.getLogger("ddnsd.http")
_KNOWN = frozenset(s.value for s in HTTPStatus)


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    target: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    client: str


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


class HttpServer:
    def __init__(
        self,
        handler: Handler,
        *,
        server_name: str = "nascloud",
        max_head_bytes: int = 16384,
        max_body_bytes: int = 65536,
        request_timeout_s: float = 10.0,
        idle_timeout_s: float = 60.0,
    ) -> None:
        self.handler = handler
        self.server_name = server_name
        self.max_head_bytes = max_head_bytes
        self.max_body_bytes = max_body_bytes
        self.request_timeout_s = request_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.requests = 0

    async def serve(
        self,
        listener: trio.SocketListener,
        *,
        task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        await trio.serve_listeners(self._connection, [listener], task_status=task_status)

    async def _connection(self, stream: trio.SocketStream) -> None:
        try:
            client = stream.socket.getpeername()[0]
            conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_head_bytes)
            while True:
                request = await self._read_request(stream, conn, client)
                if request is None:
                    return
                response = await self.handler(request)
                self.requests += 1
                await self._send(stream, conn, response)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def _read_request(
        self, stream: trio.SocketStream, conn: h11.Connection, client: str
    ) -> HttpRequest | None:
        head: h11.Request | None = None
        body = bytearray()
        waited_for_first_byte = True
        timeout = self.idle_timeout_s
        with trio.move_on_after(timeout) as idle:
            while True:
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError as exc:
                    status = exc.error_status_hint
                    if "incomplete" in str(exc) or "too long" in str(exc) or status == 431:
                        status = 431
                    await self._fail(stream, conn, status)
                    return None
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    conn.receive_data(data)
                    if waited_for_first_byte and data:
                        # The rest of the request must follow promptly: no slowloris.
                        waited_for_first_byte = False
                        idle.deadline = trio.current_time() + self.request_timeout_s
                    continue
                if isinstance(event, h11.Request):
                    head = event
                elif isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > self.max_body_bytes:
                        await self._fail(stream, conn, 413)
                        return None
                elif isinstance(event, h11.EndOfMessage):
                    assert head is not None
                    headers: dict[str, str] = {}
                    for name, value in head.headers:
                        key = name.decode("latin-1").lower()
                        text = value.decode("latin-1")
                        headers[key] = f"{headers[key]}, {text}" if key in headers else text
                    return HttpRequest(
                        head.method.decode("ascii", "replace"),
                        head.target.decode("latin-1"),
                        headers,
                        bytes(body),
                        client,
                    )
                elif isinstance(event, h11.ConnectionClosed):
                    return None
        if not waited_for_first_byte:
            await self._fail(stream, conn, 408)
        return None

    async def _fail(self, stream: trio.SocketStream, conn: h11.Connection, status: int) -> None:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        reason = {
            400: "bad request",
            408: "request timeout",
            413: "request too large",
            431: "request header fields too large",
        }.get(status, "error")
        response = HttpResponse(status, f"{reason}\n".encode(), headers=[("Connection", "close")])
        try:
            with trio.move_on_after(2):
                await self._send(stream, conn, response)
        except h11.LocalProtocolError:
            pass

    async def _send(
        self, stream: trio.SocketStream, conn: h11.Connection, response: HttpResponse
    ) -> None:
        headers = [
            ("Server", self.server_name),
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            *response.headers,
        ]
        reason = HTTPStatus(response.status).phrase if response.status in _KNOWN else ""
        data = conn.send(
            h11.Response(status_code=response.status, headers=headers, reason=reason.encode())
        )
        data += conn.send(h11.Data(data=response.body)) if response.body else b""
        data += conn.send(h11.EndOfMessage())
        await stream.send_all(data)
