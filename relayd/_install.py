"""Cloud Install: install tunnels of uninitialised NAS, and the install site (privacy rule 4).

An uninitialised NAS's agent opens an install tunnel (SPEC.md 7.4) and registers its cloud key
with its LAN addresses. Its owner types the key on https://install.<link zone>/. From the NAS's
own network (the same public address) the browser is sent to a LAN URL the NAS registered, and
setup goes directly between them. From anywhere else an install session gets a host of its own,
`<token>.install.<link zone>`: the relay ends TLS there with its own certificate and forwards
each HTTP request through the install tunnel (h11 on both sides), keeping connection metadata
only. The owner may stop instead. A registration, its sessions and its tunnel end when the
tunnel does, and at the latest `lifetime_s` after the NAS registered; then they are deleted.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import math
import secrets
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import parse_qs

import h11
import trio

import protocol
from config.relayd import InstallSiteSection, LimitsSection
from httpapi import STYLESHEET_PATH, HttpRequest, HttpResponse, HttpServer, choose_language
from registry import Conflict, InstallRegistration, InvalidValue, Registry, mask_address
from service import SlidingWindow, server_tls_context
from tunnel import Tunnel

from . import _install_pages as pages
from ._install_proxy import Closed, answer, forward, header, next_request
from ._names import host_of, port_suffix
from ._pairing import Pairings

__all__ = ["InstallSite", "PrefixedStream", "Recorder", "pages_chrome", "tls_context"]

log = logging.getLogger("relayd.install")

MAX_FORM_BYTES = 4096
# The install site's pages, and the stylesheet every page people see shares.
_ROUTES: Final = {"/": "GET", "/find": "POST", "/stop": "POST", STYLESHEET_PATH: "GET"}
Recorder = Callable[[float, str, str, str, int, int, str], None]


class PrefixedStream(trio.abc.Stream):
    """A connection whose first bytes (the ClientHello, read to route by server name) are
    received again first, so that TLS can be ended on it."""

    def __init__(self, stream: trio.abc.Stream, prefix: bytes) -> None:
        self.stream = stream
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            size = len(self._prefix) if max_bytes is None else max_bytes
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            return data
        return bytes(await self.stream.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.stream.aclose()


@dataclass
class _Install:
    registration: InstallRegistration
    tunnel: Tunnel
    public_key: bytes
    sessions: list[str] = field(default_factory=list)  # tokens, oldest first


class InstallSite:
    def __init__(
        self,
        config: InstallSiteSection,
        limits: LimitsSection,
        registry: Registry,
        link_zone: str,
        record: Recorder,
        counts: Counter[str],
        *,
        https_port: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.limits = limits
        self.registry = registry
        self.host = f"install.{link_zone}"
        self.record = record
        self.counts = counts
        self.https_port = https_port  # as bound: the site's URLs point browsers there
        # None until relayd's own certificate for the site is issued ([acme]): until then
        # its connections are closed after the ClientHello.
        self.context: ssl.SSLContext | None = tls_context(config)
        self.chrome = pages_chrome(config)
        self.installs: dict[str, _Install] = {}  # by install id
        self.by_public_key: dict[bytes, str] = {}
        self.sessions: dict[str, str] = {}  # session token -> install id
        self.pairings = Pairings(
            registry,
            config.pairing_url,
            config.pairing_codes_per_address_per_hour,
            counts,
            clock=clock,
        )
        self.per_address = SlidingWindow(config.lookups_per_minute, clock=clock)
        self.in_all = SlidingWindow(config.lookups_per_minute_total, clock=clock)
        self.pages = HttpServer(
            self._page,
            server_name="relayd",
            max_head_bytes=limits.max_http_head_bytes,
            max_body_bytes=MAX_FORM_BYTES,
            request_timeout_s=limits.handshake_timeout_s,
        )

    def owns(self, server_name: str) -> bool:
        """True for the install site's name and the session names under it."""
        name = server_name.lower().rstrip(".")
        return name == self.host or name.endswith("." + self.host)

    def url(self, host: str) -> str:
        return f"https://{host}{port_suffix(self.https_port)}/"

    def _attempt_allowed(self, client: str) -> bool:
        """Cloud-key attempts (lookups and registrations) per client address and in all."""
        allowed = self.per_address.allow(client) and self.in_all.allow("*")
        if not allowed:
            self.counts["install_rate_limited"] += 1
        return allowed

    # -- install tunnels -------------------------------------------------------------------

    async def serve_tunnel(self, tunnel: Tunnel, address: str) -> None:
        """Run one install tunnel: registration first, then until it closes or its window
        ends. Its registration and sessions are deleted on the way out, whatever the cause."""
        request: protocol.AppMessage | None = None
        with trio.move_on_after(self.limits.handshake_timeout_s):
            request = await tunnel.receive_message()
        if isinstance(request, protocol.PairRequest):
            await self.pairings.serve_tunnel(tunnel, address, request)
            return
        if not isinstance(request, protocol.InstallRegister):
            self.counts["install_refused"] += 1
            await tunnel.aclose(protocol.ErrorCode.INVALID_REQUEST, "register first")
            return
        install = await self._register(tunnel, address, request)
        if install is None:
            return
        install_id = install.registration.install_id
        lifetime = install.registration.expires_at - install.registration.created_at
        try:
            with trio.move_on_after(lifetime):
                while True:
                    try:
                        message = await tunnel.receive_message()
                    except trio.BrokenResourceError:
                        return
                    request_id = getattr(message, "request_id", None)
                    await tunnel.send_message(
                        protocol.Error(
                            protocol.ErrorCode.INVALID_REQUEST,
                            "not handled in install mode",
                            request_id,
                        )
                    )
            self.counts["install_expired"] += 1
            log.info("install window of %s ended", install_id)
            await self.end(install_id, "the install window ended")
        finally:
            with trio.CancelScope(shield=True):
                await self._forget(install_id)

    async def _register(
        self, tunnel: Tunnel, address: str, request: protocol.InstallRegister
    ) -> _Install | None:
        async def refuse(code: int, why: str) -> None:
            self.counts["install_refused"] += 1
            log.info("install registration from %s refused: %s", mask_address(address), why)
            try:
                await tunnel.send_message(protocol.Error(code, why, request.request_id))
            finally:
                await tunnel.aclose(code, why)

        if not self._attempt_allowed(address):
            await refuse(protocol.ErrorCode.RATE_LIMITED, "too many cloud keys tried")
            return None
        public_key = tunnel.conn.peer_public_key
        previous = self.by_public_key.get(public_key)
        if previous is not None:
            # The same NAS again (it reconnected before the relay noticed): the new one wins.
            self.counts["install_replaced"] += 1
            old = self.installs.get(previous)
            await self._forget(previous)
            if old is not None:
                await old.tunnel.aclose(protocol.ErrorCode.CANCEL, "replaced by a new tunnel")
        lifetime = min(self.config.lifetime_s, request.lifetime_s or math.inf)
        try:
            registration = await self.registry.register_install(
                request.cloud_key,
                public_key,
                request.lan_addresses,
                request.setup_port,
                address,
                lifetime,
                request.setup_scheme or "https",
            )
        except InvalidValue as exc:
            await refuse(protocol.ErrorCode.INVALID_REQUEST, str(exc))
            return None
        except Conflict as exc:
            await refuse(protocol.ErrorCode.NOT_PERMITTED, str(exc))
            return None
        install = _Install(registration, tunnel, public_key)
        self.installs[registration.install_id] = install
        self.by_public_key[public_key] = registration.install_id
        await tunnel.send_message(protocol.Ack(request.request_id))
        self.counts["install_registered"] += 1
        log.info(
            "install %s registered from %s for %.0f s",
            registration.install_id,
            mask_address(address),
            lifetime,
        )
        return install

    async def end(self, install_id: str, why: str) -> None:
        """End an install now: its sessions, its registration, and its tunnel, telling the
        NAS to stop reporting (GOAWAY INSTALL_ENDED)."""
        install = self.installs.get(install_id)
        await self._forget(install_id)
        if install is not None:
            await install.tunnel.aclose(protocol.ErrorCode.INSTALL_ENDED, why)

    async def _forget(self, install_id: str) -> None:
        install = self.installs.pop(install_id, None)
        if install is not None:
            for token in install.sessions:
                self.sessions.pop(token, None)
            if self.by_public_key.get(install.public_key) == install_id:
                del self.by_public_key[install.public_key]
        await self.registry.delete_install(install_id)

    async def run(self) -> None:
        """Registrations live with their tunnels: none survives a restart. Rows whose time
        is up are purged as a safety net should a tunnel's own ending have failed."""
        await self.registry.delete_all_installs()
        while True:
            await trio.sleep(min(60.0, self.config.lifetime_s / 2))
            try:
                await self.registry.purge_expired_installs()
            except Exception:
                log.exception("purging expired install registrations failed; will retry")

    # -- the site --------------------------------------------------------------------------

    async def https_connection(
        self, stream: trio.SocketStream, hello: bytes, server_name: str, client: str, port: int
    ) -> None:
        """A browser connection for install.<zone> or a session under it: end TLS here."""
        if self.context is None:
            self.counts["install_no_certificate"] += 1
            await trio.aclose_forcefully(stream)
            return
        tls = trio.SSLStream(PrefixedStream(stream, hello), self.context, server_side=True)
        try:
            with trio.fail_after(self.limits.handshake_timeout_s):
                await tls.do_handshake()
        except (trio.TooSlowError, trio.BrokenResourceError, ssl.SSLError, OSError):
            self.counts["install_tls_failed"] += 1
            await trio.aclose_forcefully(tls)
            return
        name = server_name.lower().rstrip(".")
        if name == self.host:
            await self.pages.serve_stream(tls, client)
            return
        await self._session_connection(tls, name[: -len(self.host) - 1], client, port)

    async def _page(self, request: HttpRequest) -> HttpResponse:
        if host_of(request.headers.get("host", "")) != self.host:
            return pages.message_page(421, "Wrong site", "This is the install site only.")
        path = request.target.split("?", 1)[0]
        if path not in _ROUTES:
            return pages.message_page(404, "Not found", "There is no such page here.")
        if request.method != _ROUTES[path] and not (path == "/" and request.method == "HEAD"):
            response = pages.message_page(405, "Not allowed", f"Use {_ROUTES[path]} here.")
            response.headers.append(("Allow", _ROUTES[path]))
            return response
        chrome = self.chrome.speaking(
            choose_language(None, request.headers.get("accept-language", ""), pages.LANGUAGES)
        )
        if path == "/":
            return pages.key_form(chrome)
        if path == STYLESHEET_PATH:
            return pages.stylesheet()
        form = _form(request)
        if form is None:
            return pages.message_page(400, "Bad request", "Send the form from the install page.")
        if path == "/find":
            return await self._find(chrome, form.get("cloud_key", ""), request.client)
        return await self._stop(chrome, form.get("session", ""))

    async def _find(self, chrome: pages.Chrome, cloud_key: str, client: str) -> HttpResponse:
        """Look a cloud key up. Every answer but the rate limit takes `lookup_floor_s` at
        least, and a wrong key gets one answer however close it was."""
        if not self._attempt_allowed(client):
            return pages.said(chrome, 429, "too_many")
        done = trio.current_time() + self.config.lookup_floor_s
        try:
            registration = await self.registry.find_install(cloud_key)
            install = self.installs.get(registration.install_id) if registration else None
            if install is None:
                self.counts["install_lookup_missed"] += 1
                return pages.wrong_key(chrome, cloud_key)
            self.counts["install_lookup_found"] += 1
            registration = install.registration
            if _same_address(client, registration.source_address):
                return pages.found_on_this_network(chrome, registration.lan_urls)
            token = _session_token()
            install.sessions.append(token)
            self.sessions[token] = registration.install_id
            while len(install.sessions) > self.config.max_sessions_per_install:
                self.sessions.pop(install.sessions.pop(0), None)
            self.counts["install_sessions"] += 1
            return pages.found_relayed(chrome, self.url(f"{token}.{self.host}"), token)
        finally:
            await trio.sleep_until(done)

    async def _stop(self, chrome: pages.Chrome, token: str) -> HttpResponse:
        install_id = self.sessions.get(token)
        if install_id is None:
            return pages.said(chrome, 404, "no_session")
        self.counts["install_stopped"] += 1
        await self.end(install_id, "stopped by the owner")
        return pages.said(chrome, 200, "stopped")

    # -- relayed sessions ------------------------------------------------------------------

    async def _session_connection(
        self, tls: trio.SSLStream[PrefixedStream], token: str, client: str, port: int
    ) -> None:
        """Forward each request on this connection through the session's install tunnel."""
        host = f"{token}.{self.host}"
        browser = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self.limits.max_http_head_bytes
        )
        started = time.time()
        moved = [0, 0]  # bytes from the browser, to the browser (bodies)
        result = "ok"
        forwarded = False
        try:
            while True:
                try:
                    request = await next_request(browser, tls, self.limits, first=not forwarded)
                except trio.TooSlowError:
                    await answer(browser, tls, pages.message_page(408, "Too slow", "."))
                    result = "timeout"
                    return
                except h11.RemoteProtocolError as exc:
                    status = 431 if exc.error_status_hint == 431 else 400
                    await answer(browser, tls, pages.message_page(status, "Bad request", "."))
                    result = "bad_request"
                    return
                if not isinstance(request, h11.Request):
                    return  # the browser closed between requests
                install = self.installs.get(self.sessions.get(token, ""))
                if host_of(header(request, b"host")) != host:
                    response = pages.message_page(421, "Wrong site", "Wrong host for session.")
                elif install is None:
                    self.counts["install_session_unknown"] += 1
                    result = "no_session"
                    response = pages.message_page(
                        404,
                        "No such setup session",
                        f"This setup session does not exist or has ended. Start again at "
                        f"{self.url(self.host)}",
                    )
                else:
                    forwarded = True
                    if not await forward(
                        browser,
                        tls,
                        request,
                        install.tunnel,
                        client,
                        port,
                        moved,
                        self.limits,
                        self.config.max_request_body_bytes,
                    ):
                        return
                    if browser.our_state is h11.DONE and browser.their_state is h11.DONE:
                        browser.start_next_cycle()
                        continue
                    return
                await answer(browser, tls, response)
                return
        except (Closed, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            result = "closed"
        except (h11.LocalProtocolError, ssl.SSLError, OSError):
            result = "closed"
        finally:
            await trio.aclose_forcefully(tls)
            if forwarded or result != "closed":
                self.record(started, "install", client, "install", moved[0], moved[1], result)


def _session_token() -> str:
    """160 random bits as one DNS label (32 lower-case base32 characters)."""
    return base64.b32encode(secrets.token_bytes(20)).decode().lower()


def _same_address(a: str, b: str) -> bool:
    try:
        first, second = ipaddress.ip_address(a), ipaddress.ip_address(b)
    except ValueError:
        return False
    if isinstance(first, ipaddress.IPv6Address) and first.ipv4_mapped:
        first = first.ipv4_mapped
    if isinstance(second, ipaddress.IPv6Address) and second.ipv4_mapped:
        second = second.ipv4_mapped
    return first == second


def _form(request: HttpRequest) -> dict[str, str] | None:
    """A URL-encoded form's fields (the first value of each), or None if it is not one."""
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return None
    try:
        fields = parse_qs(request.body.decode("ascii"), max_num_fields=8, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return None
    return {name: values[0] for name, values in fields.items()}


def pages_chrome(config: InstallSiteSection) -> pages.Chrome:
    """What the site's pages show around them, from its configuration."""
    return pages.Chrome(config.operator_name, config.help_url, config.privacy_url)


def tls_context(config: InstallSiteSection) -> ssl.SSLContext | None:
    """The install site's certificate given by hand (None if relayd gets its own): the relay
    ends TLS for it (and only for it)."""
    if config.cert_file is None or config.key_file is None:
        return None
    return site_context(config.cert_file, config.key_file)


def site_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    return server_tls_context(cert_file, key_file, alpn=["http/1.1"])
