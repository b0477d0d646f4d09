"""The portal as a daemon: its registry, its secret, its listeners (TLS when configured),
its metrics and health, the purge of ended sessions; SIGHUP reloads the texts it shows and
its limits, SIGTERM stops it; exit 3 when the registry is gone."""

from __future__ import annotations

import functools
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import trio

from config import PortalConfig
from httpapi import HttpServer, Metric, metrics_handler
from registry import Registry, RegistryGone, steady_clock
from service import (
    Listening,
    config_reloader,
    end_when_gone,
    exit_for_gone,
    own,
    server_tls_context,
    until_stopped,
)

from ._app import Portal

__all__ = ["main_async", "serve"]

log = logging.getLogger("portal")

SECRET_BYTES: Final = 32
PURGE_INTERVAL_S: Final = 600.0
MAX_FORM_BYTES: Final = 16 * 1024


def load_secret(path: Path) -> bytes:
    """The key of the CSRF tokens: made once (mode 0600), the same across restarts, so that
    a form opened before one still posts after it."""
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(os.urandom(SECRET_BYTES))
        secret = path.read_bytes()
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"{path} is not a portal secret ({SECRET_BYTES} bytes)")
    return secret


@dataclass
class Running:
    config: PortalConfig
    registry: Registry
    portal: Portal
    listening: Listening
    state: str = "starting"

    def metrics(self) -> list[Metric]:
        counts = self.portal.counts
        return [
            Metric.by(
                "nascloud_portal_sign_ins_total",
                "counter",
                "Sign-in attempts by outcome.",
                "outcome",
                {
                    "signed_in": counts["sign_in"],
                    "refused": counts["sign_in_refused"],
                    "rate_limited": counts["sign_in_limited"],
                },
            ),
            Metric.single(
                "nascloud_portal_sign_ups_total", "counter", "Accounts created.", counts["sign_up"]
            ),
            Metric.single(
                "nascloud_portal_csrf_refused_total",
                "counter",
                "Forms refused for a missing or foreign CSRF token.",
                counts["csrf_refused"],
            ),
        ]

    def reload(self, new: PortalConfig) -> None:
        if new.portal.listen != self.config.portal.listen:
            log.warning("listening addresses change only with a restart")
        self.portal.config = new.portal
        self.config = new
        log.info("configuration reloaded")


async def serve(
    config: PortalConfig, *, task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED
) -> None:
    section = config.portal
    section.state_dir.mkdir(parents=True, exist_ok=True)
    registry = Registry.open(
        section.registry_url or section.registry, clock=steady_clock(), create=False
    )
    portal = Portal(section, registry, load_secret(section.state_dir / "portal.secret"))
    server = HttpServer(portal.handle, server_name="nascloud-portal", max_body_bytes=MAX_FORM_BYTES)
    listening = Listening()
    running = Running(config, registry, portal, listening)
    context = (
        server_tls_context(section.cert_file, section.key_file, alpn=["http/1.1"])
        if section.cert_file is not None and section.key_file is not None
        else None
    )
    try:
        async with trio.open_nursery() as nursery:
            serve_one = (
                server.serve if context is None else functools.partial(_serve_tls, server, context)
            )
            await listening.serve(nursery, "portal", section.listen, serve_one)
            if section.metrics_listen:
                metrics = HttpServer(
                    metrics_handler(running.metrics, lambda: running.state),
                    server_name="nascloud-portal",
                )
                await listening.serve(nursery, "metrics", section.metrics_listen, metrics.serve)
            nursery.start_soon(_purge_sessions, registry)
            listening.write(section.state_dir)
            log.info("portal listening: %s", own(dict(listening)))
            running.state = "serving"
            task_status.started(running)
    finally:
        with trio.CancelScope(shield=True):
            await registry.aclose()


async def _serve_tls(
    server: HttpServer,
    context: ssl.SSLContext,
    listener: trio.SocketListener,
    *,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    async def connection(stream: trio.SocketStream) -> None:
        try:
            client = stream.socket.getpeername()[0]
        except OSError:
            await trio.aclose_forcefully(stream)
            return
        tls = trio.SSLStream(stream, context, server_side=True)
        try:
            with trio.fail_after(server.request_timeout_s):
                await tls.do_handshake()
        except (trio.TooSlowError, trio.BrokenResourceError, ssl.SSLError, OSError):
            await trio.aclose_forcefully(tls)
            return
        await server.serve_stream(tls, client)

    await trio.serve_listeners(connection, [listener], task_status=task_status)


async def _purge_sessions(registry: Registry) -> None:
    while True:
        await trio.sleep(PURGE_INTERVAL_S)
        try:
            await registry.purge_expired_sessions()
        except RegistryGone:
            raise
        except Exception:
            log.exception("purging ended sessions failed; will retry")


async def main_async(config: PortalConfig, config_path: Path | None = None) -> int:
    gone: list[RegistryGone] = []
    try:
        async with trio.open_nursery() as nursery:
            running: Running = await nursery.start(serve, config)
            nursery.start_soon(end_when_gone, running.registry, nursery.cancel_scope, gone)
            name = await until_stopped(
                config_reloader(PortalConfig, config_path, running.reload, log)
            )
            log.info("stopping on %s", name)
            running.state = "draining"
            nursery.cancel_scope.cancel()
    except* RegistryGone as group:
        gone += [e for e in group.exceptions if isinstance(e, RegistryGone)]
    return exit_for_gone(gone, log)
