"""A worker process: answers queries on the main process's ports from its own copy of the
zones, applies every change the main process sends, forwards UPDATE messages to it.

The worker's end of the worker socket; the main process's end is `_workers.py`.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import trio

from config import DdnsdConfig, HostPort
from registry import Registry

from ._answer import Responder
from ._parts import bind_dns_pair, build_dns_server, build_zones, serve_dns_pair
from ._store import ZoneStore, decode_changes
from ._workers import read_frame, write_frame
from ._xfr import Transfers, load_key
from ._zone import serial_newer

__all__ = ["WorkerFeed", "serve_worker"]

log = logging.getLogger("ddnsd")


class WorkerFeed:
    """A worker's end: applies what the main process sends, forwards UPDATE messages."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buffer = bytearray()
        self._send_lock = trio.Lock()
        self._replies: dict[int, tuple[trio.Event, list[bytes]]] = {}
        self._next_id = 0

    async def send(self, message: dict[str, Any]) -> None:
        async with self._send_lock:
            await write_frame(self.stream, message)

    async def receive(self) -> dict[str, Any] | None:
        return await read_frame(self.stream, self._buffer)

    async def forward_update(self, wire: bytes, client: str, tcp: bool) -> list[bytes]:
        self._next_id += 1
        number = self._next_id
        done = trio.Event()
        self._replies[number] = (done, [])
        try:
            await self.send(
                {"t": "update", "id": number, "wire": wire, "client": client, "tcp": tcp}
            )
            with trio.move_on_after(30):
                await done.wait()
            return self._replies[number][1]
        finally:
            self._replies.pop(number, None)

    def deliver_reply(self, message: dict[str, Any]) -> None:
        entry = self._replies.get(message.get("id", -1))
        if entry is not None:
            entry[1].extend(message.get("replies", []))
            entry[0].set()


async def serve_worker(
    config: DdnsdConfig,
    worker: dict[str, Any],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A worker process: answers queries from its own copy, kept current by the main one."""
    feed = WorkerFeed(await trio.open_unix_socket(worker["socket"]))
    if await feed.receive() is None:  # "hello": the main process now sends us every change
        return
    registry = Registry.open_sqlite(config.ddnsd.registry)
    zones = build_zones(config)
    responder = Responder(zones, edns_buffer_bytes=config.dns.edns_buffer_bytes)
    store = ZoneStore(registry, zones, responder)
    await store.load()
    await registry.aclose()
    transfer = config.transfer
    transfer_key = load_key(transfer.tsig_key_name, transfer.tsig_secret_file)
    transfers = Transfers(zones, transfer.allow, transfer_key)
    dns = build_dns_server(
        config, responder, updates=feed.forward_update, transfers=transfers.handle
    )
    sockets: list[socket.socket] = []
    try:
        async with trio.open_nursery() as nursery:
            for shown in worker["dns"]:
                udp, tcp = bind_dns_pair(HostPort.parse(shown), reuse_port=True)
                sockets += [udp, tcp]
                await serve_dns_pair(nursery, dns, udp, tcp)
            await feed.send({"t": "ready"})
            task_status.started()
            while True:
                message = await feed.receive()
                if message is None:
                    log.info("the main process is gone; worker %d stops", worker["index"])
                    nursery.cancel_scope.cancel()
                    return
                _apply_from_main(message, store, responder)
                if message.get("t") == "reply":
                    feed.deliver_reply(message)
                elif "id" in message:
                    await feed.send({"t": "applied", "id": message["id"]})
    finally:
        for sock in sockets:
            sock.close()


def _apply_from_main(message: dict[str, Any], store: ZoneStore, responder: Responder) -> None:
    zones = store.zones
    kind = message.get("t")
    if kind == "apply":
        zone = zones.device_zone
        serial = message["serial"]
        # A batch already in the database when this worker loaded it is not applied twice.
        if serial_newer(serial, zone.serial):
            _, names = zones.apply(decode_changes(message["changes"]), serial=serial)
            responder.invalidate(names, [zone])
    elif kind == "devices":
        wanted = set(message["devices"])
        changed: list[str] = []
        for name in wanted - zones.devices:
            changed += zones.add_device(name)
        for name in zones.devices - wanted:
            changed += zones.remove_device(name)
        for zone in zones.zones:
            zone.serial = message["serials"].get(zone.origin, zone.serial)
        responder.invalidate(changed, zones.zones)
