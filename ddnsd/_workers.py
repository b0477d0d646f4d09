"""The main process's end of worker processes: every worker answers queries on the same ports
(SO_REUSEPORT) from its own copy of the zones; the main process stays the only writer, sends
each one every committed batch and device change, and acknowledges an update only once every
worker has applied it. Workers forward UPDATE messages here. The worker's end: `_worker.py`;
the messages: `_replication.py`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

import trio

from ._replication import Applied, Apply, Devices, Hello, Ready, Reply, Update, WorkerSocket

__all__ = ["WORKER_ENV", "Replica", "WorkerPool"]

log = logging.getLogger("ddnsd.workers")

WORKER_ENV: Final = "NASCLOUD_DDNSD_WORKER"  # JSON: {"socket": path, "index": n, "dns": [...]}
APPLY_TIMEOUT_S: Final = 2.0


class Replica:
    """The main process's end of one worker's socket."""

    def __init__(self, stream: trio.SocketStream, pool: WorkerPool) -> None:
        self.socket = WorkerSocket(stream)
        self.pool = pool
        self._pending: dict[int, trio.Event] = {}
        self._next_id = 0
        self.alive = True
        self.ready = False  # loaded and answering: from then on changes wait for it

    async def apply(self, message: Apply | Devices) -> None:
        """Send a change and wait until the worker has applied it (or is dropped)."""
        self._next_id += 1
        number = self._next_id
        done = self._pending[number] = trio.Event()
        try:
            await self.socket.send(dataclasses.replace(message, id=number))
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
        try:
            async with trio.open_nursery() as nursery:
                while True:
                    message = await self.socket.receive()
                    if message is None:
                        break
                    match message:
                        case Ready():
                            self.ready = True
                            self.pool.ready_changed()
                        case Applied(number):
                            event = self._pending.get(number)
                            if event is not None:
                                event.set()
                        case Update():
                            nursery.start_soon(self._forwarded_update, message)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, ValueError):
            pass
        finally:
            await self.close()

    async def _forwarded_update(self, message: Update) -> None:
        replies = await self.pool.handle_update(message.wire, message.client, message.tcp)
        try:
            await self.socket.send(Reply(message.id, tuple(replies)))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await self.close()

    async def close(self) -> None:
        if self.alive:
            self.alive = False
            self.pool.replicas.discard(self)
            for event in self._pending.values():
                event.set()
            await self.socket.aclose()


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

    async def replicate(self, message: Apply | Devices) -> None:
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
        await replica.socket.send(Hello())
        await replica.run()

    def ready_changed(self) -> None:
        self._ready.set()

    async def wait_for_workers(self, timeout_s: float = 30.0) -> None:
        with trio.fail_after(timeout_s):
            while sum(r.ready for r in self.replicas) < self.count - 1:
                await self._ready.wait()
                self._ready = trio.Event()
