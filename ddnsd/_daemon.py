"""ddnsd as a process: binds the listeners of its config, loads the zone, serves until stopped.

After binding it writes `<state_dir>/listening.json` with every bound address (ports given as
0 in the config are resolved there), so tests and `nascloud run` can find it. A registry that
is gone for good (`RegistryGone`) ends the process with one log line and exit code 3.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import os
import signal
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import trio

from config import DdnsdConfig
from httpapi import HttpServer, Metric, metrics_handler
from registry import AccessLogKeys, AccessLogWriter, Registry, RegistryGone
from service import (
    Boundary,
    Listening,
    config_reloader,
    end_when_gone,
    exit_for_gone,
    own,
    serve_contained,
    server_tls_context,
    until_stopped,
)

from ._answer import Responder
from ._channel import ServiceChannel
from ._dyndns2 import DynDns2
from ._parts import (
    bind_dns_pair,
    build_dns_server,
    build_zones,
    notify_sources,
    serve_dns_pair,
)
from ._rfc2136 import UpdateHandler
from ._rrl import RateLimiter
from ._server import DnsServer
from ._store import ZoneStore
from ._worker import serve_worker
from ._workers import WORKER_ENV, WorkerPool
from ._xfr import Notifier, Transfers, load_key
from ._zone import ZoneSet

__all__ = ["Ddnsd", "main_async", "serve"]

log = logging.getLogger("ddnsd")
DEVICE_SYNC_INTERVAL_S = 2.0  # also how soon a deleted or unmounted registry is noticed
#: The exit code when the registry is gone: not a bad config (1) nor a usage error (2);
#: systemd's Restart=on-failure starts ddnsd again, which opens the registry afresh.


@dataclass
class Ddnsd:
    """The running parts, for the entry point and for tests that run ddnsd in-process."""

    config: DdnsdConfig
    registry: Registry
    zones: ZoneSet
    responder: Responder
    store: ZoneStore
    dns: DnsServer
    updates: UpdateHandler
    transfers: Transfers
    notifier: Notifier
    #: Units of work that failed unexpectedly (each alone), by unit.
    boundary: Boundary = field(default_factory=Boundary)
    listening: Listening = field(default_factory=Listening)
    dyndns2: DynDns2 | None = None
    channel: ServiceChannel | None = None
    pool: WorkerPool | None = None
    state: str = "starting"  # then "serving", then "draining": what /healthz answers

    def metrics(self) -> list[Metric]:
        """Counters and gauges only, labelled with fixed words (privacy rule 8)."""
        names = {
            0: "noerror",
            1: "formerr",
            2: "servfail",
            3: "nxdomain",
            4: "notimp",
            5: "refused",
        }
        rcodes = {names.get(i, f"rcode{i}"): float(n) for i, n in enumerate(self.dns.rcodes) if n}
        updates = {
            "dyndns2_" + k: float(v)
            for k, v in (self.dyndns2.counts if self.dyndns2 else {}).items()
        }
        updates.update({"rfc2136_" + k: float(v) for k, v in self.updates.counts.items()})
        if self.channel is not None:
            updates["protocol_ok"] = float(self.channel.updates)
            updates["protocol_refused"] = float(self.channel.refused)
            updates["protocol_throttled"] = float(self.channel.throttled)
        rrl = self.dns.rate_limiter
        pool = [self.pool.metric()] if self.pool is not None else []
        return [
            *pool,
            self.dns.latency.metric(),
            Metric.single(
                "nascloud_dns_queries_total", "counter", "DNS messages received.", self.dns.queries
            ),
            Metric.by(
                "nascloud_dns_responses_total",
                "counter",
                "UDP responses by rcode.",
                "rcode",
                rcodes,
            ),
            Metric.by(
                "nascloud_dns_cache_total",
                "counter",
                "Answer cache lookups.",
                "result",
                {"hit": self.responder.hits, "miss": self.responder.misses},
            ),
            Metric.by(
                "nascloud_dns_rate_limited_total",
                "counter",
                "Responses held back by RRL.",
                "action",
                {"dropped": rrl.dropped, "slipped": rrl.slipped},
            ),
            Metric.single(
                "nascloud_dns_malformed_total", "counter", "Malformed messages.", self.dns.malformed
            ),
            Metric.by(
                "nascloud_ddns_updates_total",
                "counter",
                "Update requests by channel and outcome.",
                "outcome",
                updates,
            ),
            Metric.single(
                "nascloud_ddns_batches_total",
                "counter",
                "Durable commit batches.",
                self.store.batches,
            ),
            Metric.single(
                "nascloud_dns_zone_serial",
                "gauge",
                "The device zone's SOA serial.",
                self.zones.device_zone.serial,
            ),
            Metric.single(
                "nascloud_dns_devices", "gauge", "Devices with names.", len(self.zones.devices)
            ),
            Metric.by(
                "nascloud_dns_transfers_total",
                "counter",
                "Zone transfer requests by what was sent (axfr, ixfr from the journal, "
                "ixfr_whole, ixfr_current, soa) or refused.",
                "outcome",
                {k: float(v) for k, v in self.transfers.counts.items()},
            ),
            Metric.by(
                "nascloud_dns_notify_total",
                "counter",
                "NOTIFY messages to secondaries.",
                "event",
                {"sent": self.notifier.sent, "acknowledged": self.notifier.acknowledged},
            ),
            self.boundary.metric(),
        ]

    def reload(self, new: DdnsdConfig) -> None:
        """Take what can change while running: rate limits, the DynDNS2 per-host limit and
        address rule, the protocol listener's certificate. Zones, addresses and workers need
        a restart."""
        self.dns.rate_limiter = RateLimiter.from_config(new.rrl)
        if self.dyndns2 is not None:
            self.dyndns2.per_host.limit = new.dyndns2.updates_per_host_per_minute
            self.dyndns2.allow_private_addresses = new.dyndns2.allow_private_addresses
            self.dyndns2.trusted_proxies = new.dyndns2.trusted_proxies
        if self.channel is not None:
            self.channel.ssl_context = _server_tls(new)
        if (new.zone, new.dns.listen, new.ddnsd.workers) != (
            self.config.zone,
            self.config.dns.listen,
            self.config.ddnsd.workers,
        ):
            log.warning("zones, listening addresses and workers change only with a restart")
        self.config = new
        log.info("configuration reloaded")


async def serve(
    config: DdnsdConfig,
    config_path: Path | None = None,
    *,
    task_status: trio.TaskStatus[Ddnsd] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ddnsd until cancelled; `task_status.started` gets the running parts once bound.

    With `[ddnsd].workers` above 1 (and the config's path, which workers read), the extra
    workers are started and waited for before `started`.
    """
    workers = config.ddnsd.workers if config_path is not None else 1
    state_dir = config.ddnsd.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    registry = Registry.open(config.ddnsd.registry_url or config.ddnsd.registry, create=False)
    boundary = Boundary()
    zones = build_zones(config)
    responder = Responder(zones, edns_buffer_bytes=config.dns.edns_buffer_bytes)
    transfer = config.transfer
    transfer_key = load_key(transfer.tsig_key_name, transfer.tsig_secret_file)
    notifier = Notifier(zones, transfer.notify, transfer_key, boundary, notify_sources(config))
    store = ZoneStore(registry, zones, responder, on_change=notifier.changed)
    await store.load()
    updates = UpdateHandler(registry, store)
    access_log = None
    if config.ddnsd.access_log_key_file is not None:
        access_log = AccessLogWriter(
            registry,
            AccessLogKeys(config.ddnsd.access_log_key_file),
            config.ddnsd.access_log_retention_days,
        )
        updates.access_log = access_log
    transfers = Transfers(zones, transfer.allow, transfer_key)
    dns = build_dns_server(
        config,
        responder,
        boundary,
        updates=updates.handle,
        transfers=transfers.handle,
        transfer_key=transfers.key.name if transfers.key is not None else None,
    )
    daemon = Ddnsd(
        config, registry, zones, responder, store, dns, updates, transfers, notifier, boundary
    )
    sockets: list[socket.socket] = []
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            await nursery.start(notifier.run)
            for address in config.dns.listen:
                udp, tcp = bind_dns_pair(address, reuse_port=workers > 1)
                sockets += [udp, tcp]
                daemon.listening.note("dns", udp)
                await serve_dns_pair(nursery, dns, udp, tcp)
            if workers > 1:
                assert config_path is not None
                pool = WorkerPool(
                    state_dir / "workers.sock",
                    workers,
                    config_path,
                    dns.update,  # forwarded UPDATE messages are units of work here too
                    daemon.listening["dns"],
                )
                daemon.pool = pool
                store.replicate = pool.replicate
                await nursery.start(pool.run)
                await pool.wait_for_workers()
            if config.dyndns2.listen:
                dyndns2 = DynDns2(
                    registry,
                    store,
                    updates_per_host_per_minute=config.dyndns2.updates_per_host_per_minute,
                    default_ttl_s=config.zone.default_ttl_s,
                    allow_private_addresses=config.dyndns2.allow_private_addresses,
                    trusted_proxies=config.dyndns2.trusted_proxies,
                    boundary=boundary,
                )
                dyndns2.access_log = access_log
                daemon.dyndns2 = dyndns2
                http = HttpServer(dyndns2.handle, server_name="ddnsd")
                await daemon.listening.serve(nursery, "dyndns2", config.dyndns2.listen, http.serve)
            if config.protocol.listen:
                channel = ServiceChannel(
                    store,
                    config.protocol.server_name,
                    {n: base64.b64decode(k) for n, k in config.protocol.services.items()},
                    _server_tls(config),
                    boundary=boundary,
                )
                daemon.channel = channel
                # Each service connection is one unit: a failure closes it alone.
                contained = functools.partial(
                    serve_contained, channel.connection, boundary, "protocol_connection"
                )
                await daemon.listening.serve(nursery, "protocol", config.protocol.listen, contained)
            if config.ddnsd.metrics_listen:
                metrics = HttpServer(
                    metrics_handler(daemon.metrics, lambda: daemon.state), server_name="ddnsd"
                )
                await daemon.listening.serve(
                    nursery, "metrics", config.ddnsd.metrics_listen, metrics.serve
                )
            nursery.start_soon(_sync_devices, store)
            if access_log is not None:
                nursery.start_soon(access_log.run)
            daemon.listening.write(state_dir)
            log.info(
                "serving %s (serial %d) on %s",
                zones.device_zone.origin,
                zones.device_zone.serial,
                own(dict(daemon.listening)),
            )
            daemon.state = "serving"
            task_status.started(daemon)
    finally:
        for sock in sockets:
            sock.close()
        with trio.CancelScope(shield=True):
            await registry.aclose()


def _server_tls(config: DdnsdConfig) -> ssl.SSLContext:
    cert, key = config.protocol.cert_file, config.protocol.key_file
    assert cert is not None and key is not None  # the config requires them with listen
    return server_tls_context(cert, key)


async def _sync_devices(store: ZoneStore) -> None:
    """Follow the registry's devices: at once when it notifies a change (PostgreSQL), and
    every DEVICE_SYNC_INTERVAL_S whatever it says (SQLite tells nobody)."""
    seen = 0
    while True:
        try:
            seen = await store.registry.wait_change(seen, DEVICE_SYNC_INTERVAL_S)
            await store.sync_devices()
        except RegistryGone:
            return  # main_async ends the process
        except Exception:
            log.exception("reading the device list from the registry failed; will retry")


async def main_async(config: DdnsdConfig, config_path: Path | None = None) -> int:
    """Serve until SIGTERM or SIGINT, reloading on SIGHUP (as a worker when started as one
    by the main process: workers stop with it and are not reloaded)."""
    worker = os.environ.get(WORKER_ENV)
    if worker is not None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:

                async def stop_on_signal() -> None:
                    async for _ in signals:
                        nursery.cancel_scope.cancel()
                        return

                nursery.start_soon(stop_on_signal)
                # When it returns (the main process is gone), the worker ends too.
                await serve_worker(config, json.loads(worker))
                nursery.cancel_scope.cancel()
        return 0
    gone: list[RegistryGone] = []
    try:
        async with trio.open_nursery() as nursery:
            daemon: Ddnsd = await nursery.start(serve, config, config_path)
            nursery.start_soon(end_when_gone, daemon.registry, nursery.cancel_scope, gone)
            reload = config_reloader(DdnsdConfig, config_path, daemon.reload, log)
            name = await until_stopped(reload)
            log.info("stopping on %s", name)
            daemon.state = "draining"
            nursery.cancel_scope.cancel()
    except* RegistryGone as group:  # at start-up: opening or loading it
        gone += [e for e in group.exceptions if isinstance(e, RegistryGone)]
    return exit_for_gone(gone, log)
