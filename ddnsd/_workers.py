"""Worker processes for machines with more cores: every worker answers queries on the same
ports (SO_REUSEPORT), from its own copy of the zones.

The main process stays the only writer. It sends every committed batch and every device
change to each worker over a Unix socket and acknowledges an update only once every worker
has applied it, so all workers answer an update as soon as it is acknowledged. A worker
forwards the UPDATE messages it receives to the main process and relays the reply.
This is the main process's end of the worker socket; the worker's end is `_worker.py`.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import msgpack
import trio

__all__ = ["WORKER_ENV", "Replica", "WorkerPool", "read_frame", "write_frame"]

log = logging.getLogger("ddnsd.workers")

WORKER_ENV: Final = "NASCLOUD_DDNSD_WORKER"  # JSON: {"socket": path, "index": n}
APPLY_TIMEOUT_S: Final = 2.0
_LENGTH = struct.Struct("!I")
MAX_FRAME: Final = 64 * 1024 * 1024


async def write_frame(stream: trio.abc.SendStream, message: dict[str, Any]) -> None:
    body = msgpack.packb(message, use_bin_type=True)
    await stream.send_all(_LENGTH.pack(len(body)) + body)


async def read_frame(stream: trio.abc.ReceiveStream, buffer: bytearray) -> dict[str, Any] | None:
    """The next message, or None at EOF. `buffer` carries bytes between calls."""
    while True:
        if len(buffer) >= 4:
            size = _LENGTH.unpack_from(buffer)[0]
            if size > MAX_FRAME:
                raise ValueError("oversized frame on the worker socket")
            if len(buffer) >= 4 + size:
                body = bytes(buffer[4 : 4 + size])
                del buffer[: 4 + size]
                message = msgpack.unpackb(body, raw=False)
                if not isinstance(message, dict):
                    raise ValueError("malformed frame on the worker socket")
                return message
        data = await stream.receive_some(65536)
        if not data:
            return None
        buffer += data


class Replica:
    """The main process's end of one worker's socket."""

    def __init__(self, stream: trio.SocketStream, pool: WorkerPool) -> None:
        self.stream = stream
        self.pool = pool
        self._send_lock = trio.Lock()
        self._pending: dict[int, trio.Event] = {}
        self._next_id = 0
        self.alive = True
        self.ready = False  # loaded and answering: from then on changes wait for it

    async def send(self, message: dict[str, Any]) -> None:
        async with self._send_lock:
            await write_frame(self.stream, message)

    async def apply(self, message: dict[str, Any]) -> None:
        """Send a change and wait until the worker has applied it (or is dropped)."""
        self._next_id += 1
        number = self._next_id
        done = self._pending[number] = trio.Event()
        try:
            await self.send({**message, "id": number})
            if not self.ready:
                return  # it applies this after loading, before it answers anyone
            with trio.move_on_after(APPLY_TIMEOUT_S) as scope:
                await done.wait()
            if scope.cancelled_caught:
                log.error("a worker did not apply a change in time; dropping it")
                await self.close()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await self.close()
        finally:
            self._pending.pop(number, None)

    async def run(self) -> None:
        buffer = bytearray()
        try:
            async with trio.open_nursery() as nursery:
                while True:
                    message = await read_frame(self.stream, buffer)
                    if message is None:
                        break
                    kind = message.get("t")
                    if kind == "ready":
                        self.ready = True
                        self.pool.ready_changed()
                    elif kind == "applied":
                        event = self._pending.get(message.get("id", -1))
                        if event is not None:
                            event.set()
                    elif kind == "update":
                        nursery.start_soon(self._forwarded_update, message)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, ValueError):
            pass
        finally:
            await self.close()

    async def _forwarded_update(self, message: dict[str, Any]) -> None:
        replies = await self.pool.handle_update(message["wire"], message["client"], message["tcp"])
        try:
            await self.send({"t": "reply", "id": message["id"], "replies": replies})
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await self.close()

    async def close(self) -> None:
        if self.alive:
            self.alive = False
            self.pool.replicas.discard(self)
            for event in self._pending.values():
                event.set()
            await trio.aclose_forcefully(self.stream)


class WorkerPool:
    """The main process's side: the worker socket, the worker processes, replication."""

    def __init__(
        self,
        socket_path: Path,
        count: int,
        config_path: Path,
        handle_update: Callable[[bytes, str, bool], Awaitable[list[bytes]]],
        dns_addresses: list[str],
    ) -> None:
        self.dns_addresses = dns_addresses
        self.socket_path = socket_path
        self.count = count
        self.config_path = config_path
        self.handle_update = handle_update
        self.replicas: set[Replica] = set()
        self.processes: list[trio.Process] = []
        self._ready = trio.Event()

    async def replicate(self, message: dict[str, Any]) -> None:
        """Send to every worker and wait until all have applied it."""
        if not self.replicas:
            return
        async with trio.open_nursery() as nursery:
            for replica in list(self.replicas):
                nursery.start_soon(replica.apply, message)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.socket_path.unlink(missing_ok=True)
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        await sock.bind(str(self.socket_path))
        sock.listen(64)
        listener = trio.SocketListener(sock)
        environment = dict(os.environ)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.serve_listeners, self._accept, [listener])
                for index in range(1, self.count):
                    environment[WORKER_ENV] = json.dumps(
                        {"socket": str(self.socket_path), "index": index, "dns": self.dns_addresses}
                    )
                    self.processes.append(
                        await trio.lowlevel.open_process(
                            [sys.executable, "-m", "ddnsd", "--config", str(self.config_path)],
                            env=environment,
                        )
                    )
                task_status.started()
                await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                for process in self.processes:
                    process.terminate()
                with trio.move_on_after(5):
                    for process in self.processes:
                        await process.wait()
                for process in self.processes:
                    if process.returncode is None:
                        process.kill()

    async def _accept(self, stream: trio.SocketStream) -> None:
        replica = Replica(stream, self)
        self.replicas.add(replica)  # from now on it gets every change
        await replica.send({"t": "hello"})
        await replica.run()

    def ready_changed(self) -> None:
        self._ready.set()

    async def wait_for_workers(self, timeout_s: float = 30.0) -> None:
        with trio.fail_after(timeout_s):
            while sum(r.ready for r in self.replicas) < self.count - 1:
                await self._ready.wait()
                self._ready = trio.Event()
