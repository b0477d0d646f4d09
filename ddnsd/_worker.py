"""A worker process: answers queries on the main process's ports from its own copy of the
zones, applies every change the main process sends, forwards UPDATE messages to it.

The worker's end of the worker socket; the main process's end is `_workers.py`.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any, Final, NoReturn

import trio

from config import DdnsdConfig, HostPort
from registry import Registry
from service import Boundary

from ._answer import Responder
from ._parts import bind_dns_pair, build_dns_server, build_zones, serve_dns_pair
from ._replication import (
    Applied,
    Apply,
    Devices,
    Message,
    Ready,
    Reply,
    Serve,
    Update,
    WorkerSocket,
)
from ._store import ZoneStore
from ._xfr import Transfers, load_key
from ._zone import serial_newer

__all__ = ["WorkerFeed", "serve_worker"]

log = logging.getLogger("ddnsd")


class WorkerFeed:
    """A worker's end: applies what the main process sends, forwards UPDATE messages."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.socket = WorkerSocket(stream)
        self._replies: dict[int, tuple[trio.Event, list[bytes]]] = {}
        self._next_id = 0

    async def send(self, message: Ready | Applied | Update) -> None:
        await self.socket.send(message)

    async def receive(self) -> Message | None:
        return await self.socket.receive()

    async def forward_update(self, wire: bytes, client: str, tcp: bool) -> list[bytes]:
        self._next_id += 1
        number = self._next_id
        done = trio.Event()
        self._replies[number] = (done, [])
        try:
            await self.send(Update(number, wire, client, tcp))
            with trio.move_on_after(30):
                await done.wait()
            return self._replies[number][1]
        finally:
            self._replies.pop(number, None)

    def deliver_reply(self, message: Reply) -> None:
        entry = self._replies.get(message.id)
        if entry is not None:
            entry[1].extend(message.replies)
            entry[0].set()


#: A worker's exit code when it could not apply a change: its copy differs from the main
#: one, so it stops answering at once and the main process starts a fresh one.
EXIT_DIVERGED: Final = 4  # 3 is the main process's: the registry is gone


async def serve_worker(
    config: DdnsdConfig,
    worker: dict[str, Any],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A worker process: answers queries from its own copy, kept current by the main one.

    It answers no one until it has applied every change the main process sent before its
    Serve (those may be acknowledged already); a change it cannot apply ends the process.
    """
    feed = WorkerFeed(await trio.open_unix_socket(worker["socket"]))
    if await feed.receive() is None:  # "hello": the main process now sends us every change
        return
    registry = Registry.open(config.ddnsd.registry_url or config.ddnsd.registry, create=False)
    zones = build_zones(config)
    responder = Responder(zones, edns_buffer_bytes=config.dns.edns_buffer_bytes)
    store = ZoneStore(registry, zones, responder)
    await store.load()
    await registry.aclose()
    transfer = config.transfer
    transfer_key = load_key(transfer.tsig_key_name, transfer.tsig_secret_file)
    transfers = Transfers(zones, transfer.allow, transfer_key)
    # The worker's own failures are logged here; its counts are not exported (the main
    # process serves the metrics).
    dns = build_dns_server(
        config,
        responder,
        Boundary(),
        updates=feed.forward_update,
        transfers=transfers.handle,
        transfer_key=transfers.key.name if transfers.key is not None else None,
    )
    pairs: list[tuple[socket.socket, socket.socket]] = []
    sockets: list[socket.socket] = []
    try:
        async with trio.open_nursery() as nursery:
            for shown in worker["dns"]:
                # Bound now, served after Serve: what the kernel hands this worker meanwhile
                # waits in its queues and is answered from the caught-up copy.
                pairs.append(bind_dns_pair(HostPort.parse(shown), reuse_port=True))
                sockets += pairs[-1]
            await feed.send(Ready())
            task_status.started()
            serving = False
            while True:
                message = await feed.receive()
                if message is None:
                    log.info(
                        "the main process closed the worker socket; worker %d stops",
                        worker["index"],
                    )
                    _stop(sockets, 0)
                match message:
                    case Reply():
                        feed.deliver_reply(message)
                    case Serve() if not serving:
                        serving = True
                        for udp, tcp in pairs:
                            await serve_dns_pair(nursery, dns, udp, tcp)
                    case Apply() | Devices():
                        try:
                            _apply_from_main(message, store, responder)
                        except Exception:
                            log.exception(
                                "worker %d could not apply a change from the main process; "
                                "its copy of the zones is no longer the main one, so it stops "
                                "answering and exits (%d) for the main process to start a "
                                "fresh one",
                                worker["index"],
                                EXIT_DIVERGED,
                            )
                            _stop(sockets, EXIT_DIVERGED)
                        await feed.send(Applied(message.id))
    finally:
        for sock in sockets:
            sock.close()


def _stop(sockets: list[socket.socket], code: int) -> NoReturn:
    """End the worker process now: its DNS sockets first (it answers no one from here on),
    then everything else. Nothing in it is worth unwinding, and an exception would leave the
    process waiting for a signal (or print an unmasked traceback)."""
    for sock in sockets:
        sock.close()
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(code)


def _apply_from_main(message: Apply | Devices, store: ZoneStore, responder: Responder) -> None:
    zones = store.zones
    match message:
        case Apply(serial, changes):
            zone = zones.device_zone
            # A batch already in the database when this worker loaded it is not applied twice.
            if serial_newer(serial, zone.serial):
                _, names = zones.apply(changes, serial=serial)
                responder.invalidate(names, zones.zones)
        case Devices(devices, serials, _, link_off):
            wanted = set(devices)
            changed: list[str] = []
            for name in set(link_off) ^ zones.link_off:
                changed += zones.set_link(name, name not in link_off)
            for name in wanted - zones.devices:
                changed += zones.add_device(name)
            for name in zones.devices - wanted:
                changed += zones.remove_device(name)
            for zone in zones.zones:
                zone.serial = serials.get(zone.origin, zone.serial)
            responder.invalidate(changed, zones.zones)
