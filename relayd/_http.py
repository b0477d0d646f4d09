"""Browsers' plain HTTP: the Host header (read with h11) names a device or the install site,
and the answer is a redirect to the same URL on HTTPS. Nothing else is served in the clear;
a connection record notes the redirect (metadata only)."""

from __future__ import annotations

import time
from collections import Counter

import h11
import trio

from config.relayd import LimitsSection
from httpapi import HttpResponse, encode_response

from ._install import InstallSite, Recorder
from ._names import LinkZone, host_of, port_suffix

__all__ = ["HttpIngress"]

WRITE_TIMEOUT_S = 5.0  # for the one short answer


class HttpIngress:
    def __init__(
        self,
        limits: LimitsSection,
        names: LinkZone,
        https_port: int | None,
        install: InstallSite | None,
        record: Recorder,
        counts: Counter[str],
    ) -> None:
        self.limits = limits
        self.names = names
        self.https_port = https_port  # where the redirects point
        self.install = install
        self.record = record
        self.counts = counts

    async def connection(self, stream: trio.SocketStream) -> None:
        limits = self.limits
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_http_head_bytes)
        try:
            response = HttpResponse(408, b"request timeout\n")
            with trio.move_on_after(limits.handshake_timeout_s):
                response = await self._answer(stream, conn)
            self.counts[f"http_{response.status}"] += 1
            with trio.move_on_after(WRITE_TIMEOUT_S):
                await stream.send_all(encode_response(response, "relayd", keep_alive=False))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def _answer(self, stream: trio.SocketStream, conn: h11.Connection) -> HttpResponse:
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if exc.error_status_hint == 431 or "too long" in str(exc):
                    return HttpResponse(431, b"request header fields too large\n")
                return HttpResponse(400, b"bad request\n")
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return HttpResponse(400, b"bad request\n")
                conn.receive_data(data)
                continue
            if not isinstance(event, h11.Request):
                return HttpResponse(400, b"bad request\n")
            hostname = host_of(dict(event.headers).get(b"host", b"").decode("latin-1"))
            target = event.target.decode("latin-1")
            redirect = HttpResponse(
                308,
                b"use https\n",
                headers=[("Location", f"https://{hostname}{port_suffix(self.https_port)}{target}")],
            )
            if self.install is not None and self.install.owns(hostname):
                return redirect  # the relay's own site
            device = self.names.device_for(hostname)
            if device is None:
                return HttpResponse(404, b"not found\n")
            client = stream.socket.getpeername()[0]
            self.record(time.time(), device, client, "http", 0, 0, "redirected")
            return redirect
