"""relayd as a process: wiring only. It binds the listeners of its config, builds each part
complete (the ports they announce are known by then), serves until stopped, and drains.

The parts: `Agents` (the agents' tunnels), `HttpsIngress` (browsers' HTTPS, passed through
by SNI), `DataConnections` (the agents' data connections and ready pools), `HttpIngress`
(plain HTTP, redirected), `InstallSite` (Cloud Install), `LookupApi`, `DdnsLink` (to ddnsd).
"""

from __future__ import annotations

import functools
import logging
import ssl
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import trio

from config import HostPort, RelaydConfig
from httpapi import HttpServer, Metric, metrics_handler
from registry import AccessLogKeys, AccessLogWriter, Registry, RegistryGone, steady_clock
from service import (
    Accepting,
    Boundary,
    Handler,
    Listening,
    Serve,
    config_reloader,
    drain,
    end_when_gone,
    exit_for_gone,
    own,
    port_of,
    serve_contained,
    server_tls_context,
    until_stopped,
)
from tunnel import Tunnel, load_key

from ._agents import Agents
from ._data import DataConnections
from ._ddns import DdnsLink
from ._http import HttpIngress
from ._https import HttpsIngress
from ._install import InstallSite, Recorder, pages_chrome, tls_context
from ._lookup import LookupApi
from ._metrics import relay_metrics
from ._names import LinkZone
from ._site_certs import SiteCertificates

__all__ = ["Relayd", "main_async", "serve"]

log = logging.getLogger("relayd")


@dataclass
class Relayd:
    """The running parts, for the entry point and for tests that run relayd in-process."""

    config: RelaydConfig
    registry: Registry
    agents: Agents
    https: HttpsIngress
    data: DataConnections | None
    install: InstallSite | None
    access_log: AccessLogWriter | None
    boundary: Boundary
    accepting: Accepting  # the tunnel and browser listeners, closed first on a stop
    counts: Counter[str] = field(default_factory=Counter)
    listening: Listening = field(default_factory=Listening)
    state: str = "starting"  # then "serving", then "draining": what /healthz answers

    def metrics(self) -> list[Metric]:
        parts = relay_metrics(self.counts, self.agents, self.https, self.data, self.install)
        return [*parts, self.boundary.metric()]

    def reload(self, new: RelaydConfig) -> None:
        """Take a new configuration without dropping a tunnel or a stream: limits and
        timeouts apply to what comes next, certificates are read again. Listening
        addresses need a restart."""
        old = self.config
        if (old.tunnel.listen, old.ingress.https_listen, old.ingress.http_listen) != (
            new.tunnel.listen,
            new.ingress.https_listen,
            new.ingress.http_listen,
        ) or old.relay.name != new.relay.name:
            log.warning("listening addresses and the relay name change only with a restart")
        self.agents.context = _tunnel_tls(new)
        self.agents.config = new
        self.https.limits = new.limits
        if self.data is not None:
            self.data.reload(new.tunnel, new.limits)
        if (old.install is None) != (new.install is None):
            log.warning("the install site is turned on or off only with a restart")
        elif self.install is not None and new.install is not None:
            if new.install.cert_file is not None:  # else relayd's own, kept by ACME
                self.install.context = tls_context(new.install)
            self.install.config = new.install
            self.install.chrome = pages_chrome(new.install)
            self.install.pairings.url = new.install.pairing_url
            self.install.limits = new.limits
        self.config = new
        log.info("configuration reloaded")


def _tunnel_tls(config: RelaydConfig) -> ssl.SSLContext:
    return server_tls_context(config.tunnel.cert_file, config.tunnel.key_file)


def _ddns_link(config: RelaydConfig) -> DdnsLink | None:
    link = config.ddnsd
    if link is None:
        return None
    client = ssl.create_default_context(cafile=str(link.ca_file) if link.ca_file else None)
    return DdnsLink(
        link.address, link.server_name, link.service_name, load_key(link.key_file), client
    )


async def serve(
    config: RelaydConfig, *, task_status: trio.TaskStatus[Relayd] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run relayd until cancelled; `task_status.started` gets the running parts once every
    listener is serving and `listening.json` is written."""
    state_dir = config.relay.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    # Lifetimes (install windows, retention) by a clock a wall-clock step does not move.
    registry = Registry.open(
        config.relay.registry_url or config.relay.registry, clock=steady_clock(), create=False
    )
    counts: Counter[str] = Counter()
    listening = Listening()
    boundary = Boundary()
    ingress, tunnels = config.ingress, config.tunnel
    try:
        async with trio.open_nursery() as nursery:
            accepting = Accepting(nursery)
            # Bound first: the parts announce these ports (OPEN, redirects, lookups).
            tunnel_listeners = await listening.bind("tunnel", tunnels.listen)
            data_listeners = []
            if tunnels.data_connections:
                data_addresses = tunnels.data_listen or tuple(
                    HostPort(address.host, 0) for address in tunnels.listen
                )
                data_listeners = await listening.bind("data", data_addresses)
            https_listeners = await listening.bind("https", ingress.https_listen)
            https_port = port_of(https_listeners)

            access_log = None
            if config.relay.access_log_key_file is not None:
                access_log = AccessLogWriter(
                    registry,
                    AccessLogKeys(config.relay.access_log_key_file),
                    config.relay.access_log_retention_days,
                )
            # The access log's writer is the recorder of every part that records; without
            # an access log key file, relayd keeps no connection records.
            recorder: Recorder = access_log.add if access_log else lambda *record: None
            install = None
            if config.install is not None:
                install = InstallSite(
                    config.install,
                    config.limits,
                    registry,
                    ingress.link_zone,
                    recorder,
                    counts,
                    https_port=https_port,
                )
            data_port = port_of(data_listeners)
            data = None
            if data_port is not None:
                data = DataConnections(data_port, tunnels, config.limits, counts)
            ddns = _ddns_link(config)
            agents = Agents(
                config,
                registry,
                _tunnel_tls(config),
                capabilities=data.capabilities if data is not None else frozenset(),
                install=install,
                ddns=ddns,
                on_tunnel_end=data.drop if data is not None else _nothing_to_drop,
                counts=counts,
            )
            names = LinkZone(ingress.link_zone)
            https = HttpsIngress(config.limits, names, agents, data, install, recorder, counts)
            relay = Relayd(
                config,
                registry,
                agents,
                https,
                data,
                install,
                access_log,
                boundary,
                accepting,
                counts,
                listening,
            )

            def contained(handler: Handler, unit: str) -> Serve:
                return functools.partial(accepting.serve, boundary.contained(handler, unit))

            if ddns is not None:
                nursery.start_soon(ddns.run)
                if install is not None and install.context is None and config.acme is not None:
                    site_certs = SiteCertificates(config.acme, state_dir, ddns, install)
                    nursery.start_soon(site_certs.run)
            for listener in tunnel_listeners:
                await nursery.start(contained(agents.connection, "agent_connection"), listener)
            if data is not None:
                # Not closed on a stop: browsers already taken may still wait for theirs.
                serve_data = functools.partial(
                    serve_contained, data.connection, boundary, "data_connection"
                )
                for listener in data_listeners:
                    await nursery.start(serve_data, listener)
                nursery.start_soon(data.sweep_pools)
            for listener in https_listeners:
                await nursery.start(contained(https.connection, "https_connection"), listener)
            if https_listeners and install is not None:
                nursery.start_soon(install.run)
            if config.api.listen:
                api = LookupApi(registry, agents.presence, ingress.link_zone, https_port)
                server = HttpServer(api.handle, server_name="relayd")
                await listening.serve(nursery, "api", config.api.listen, server.serve)
            if ingress.http_listen:
                http = HttpIngress(config.limits, names, https_port, install, recorder, counts)
                await listening.serve(
                    nursery,
                    "http",
                    ingress.http_listen,
                    contained(http.connection, "http_connection"),
                )
            nursery.start_soon(agents.follow_deletions)
            if access_log is not None:
                nursery.start_soon(access_log.run)
            if config.relay.metrics_listen:
                metrics = HttpServer(
                    metrics_handler(relay.metrics, lambda: relay.state), server_name="relayd"
                )
                await listening.serve(
                    nursery, "metrics", config.relay.metrics_listen, metrics.serve
                )
            listening.write(state_dir)
            log.info("relay %s listening: %s", config.relay.name, own(dict(listening)))
            relay.state = "serving"
            task_status.started(relay)
    finally:
        with trio.CancelScope(shield=True):
            await registry.aclose()


def _nothing_to_drop(device: str, tunnel: Tunnel) -> None:
    """Without data connections a tunnel leaves nothing behind when it ends."""


async def main_async(config: RelaydConfig, config_path: Path | None = None) -> int:
    """Serve until SIGTERM or SIGINT (then GOAWAY and drain); reload on SIGHUP; end (exit
    3) when the registry is gone."""
    gone: list[RegistryGone] = []
    try:
        await _serve_until_stopped(config, config_path, gone)
    except* RegistryGone as group:  # at start-up: opening it
        gone += [e for e in group.exceptions if isinstance(e, RegistryGone)]
    return exit_for_gone(gone, log)


async def _serve_until_stopped(
    config: RelaydConfig, config_path: Path | None, gone: list[RegistryGone]
) -> None:
    async with trio.open_nursery() as nursery:
        relay: Relayd = await nursery.start(serve, config)
        nursery.start_soon(end_when_gone, relay.registry, nursery.cancel_scope, gone)
        name = await until_stopped(config_reloader(RelaydConfig, config_path, relay.reload, log))
        log.info("stopping on %s", name)
        relay.state = "draining"
        timeout_s = relay.config.limits.drain_timeout_s
        # No new tunnels or browsers; GOAWAY to every agent; browser connections already
        # passed through go on (their bytes travel outside the tunnels) until they end or
        # the deadline comes.
        await drain(
            relay.accepting,
            timeout_s,
            functools.partial(relay.agents.drain, timeout_s),
            relay.https.browsers_done,
        )
        if relay.https.active:
            log.info(
                "cutting %d browser connections at the drain deadline",
                sum(relay.https.active.values()),
            )
        nursery.cancel_scope.cancel()
