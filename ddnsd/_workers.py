"""The main process's end of worker processes: every worker answers queries on the same ports
(SO_REUSEPORT) from its own copy of the zones; the main process stays the only writer, sends
each one every committed batch and device change, and acknowledges an update only once every
worker has applied it or is gone (a worker that did not apply a change in time is killed
first). A worker that ends is started again. Workers forward UPDATE messages here. The
worker's end: `_worker.py`; the messages: `_replication.py`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import socket
import struct
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

import trio

from httpapi import Metric
from tunnel import Backoff

from ._replication import (
    Applied,
    Apply,
    Devices,
    Hello,
    Ready,
    Reply,
    Serve,
    Update,
    WorkerSocket,
)

__all__ = ["WORKER_ENV", "Replica", "WorkerPool"]

log = logging.getLogger("ddnsd.workers")

WORKER_ENV: Final = "NASCLOUD_DDNSD_WORKER"  # JSON: {"socket": path, "index": n, "dns": [...]}
APPLY_TIMEOUT_S: Final = 2.0
KILL_TIMEOUT_S: Final = 5.0
_PEERCRED: Final = struct.Struct("3i")  # SO_PEERCRED: pid, uid, gid


class Replica:
    """The main process's end of one worker's socket."""

    def __init__(self, stream: trio.SocketStream, pool: WorkerPool) -> None:
        self.socket = WorkerSocket(stream)
        self.pool = pool
        # The worker's pid, from the kernel (not from what it says): the process to end if
        # it does not apply a change.
        pid, _, _ = _PEERCRED.unpack(
            stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        )
        self.pid: int = pid
        self._pending: dict[int, trio.Event] = {}
        self._applied: set[int] = set()
        self._next_id = 0
        self.alive = True
        self.ready = False  # it said Ready and was sent Serve: from then on changes wait for it

    async def apply(self, message: Apply | Devices) -> None:
        """Send a change and wait until the worker has applied it, or until it is gone: a
        worker that did not apply it answers no one once this returns."""
        self._next_id += 1
        number = self._next_id
        done = self._pending[number] = trio.Event()
        try:
            # The send is under the deadline too: a worker that reads nothing fills its
            # socket, and the ack must not wait for it for ever.
            with trio.move_on_after(APPLY_TIMEOUT_S) as scope:
                await self.socket.send(dataclasses.replace(message, id=number))
                if not self.ready:
                    return  # it applies this before Serve, and answers no one until then
                await done.wait()
            if scope.cancelled_caught:
                log.error("worker pid %d did not apply a change in time; ending it", self.pid)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self._pending.pop(number, None)
        if number not in self._applied:
            await self.close()
            await self.pool.end_worker(self.pid)
        self._applied.discard(number)

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            # Inside the nursery: an error raised in its body would come out of it in an
            # ExceptionGroup, past these excepts (and end the main process).
            try:
                while True:
                    message = await self.socket.receive()
                    if message is None:
                        break
                    match message:
                        case Ready():
                            # Every change sent before Serve reaches it first: those did not
                            # wait for it. From here on each one does.
                            self.ready = True
                            await self.socket.send(Serve())
                            self.pool.ready_changed()
                        case Applied(number):
                            event = self._pending.get(number)
                            if event is not None:
                                self._applied.add(number)
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
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.dns_addresses = dns_addresses
        self.socket_path = socket_path
        self.count = count
        self.config_path = config_path
        self.handle_update = handle_update
        self.replicas: set[Replica] = set()
        #: The running worker process of each index (1 .. count - 1).
        self.processes: dict[int, trio.Process] = {}
        #: Worker processes that ended while the pool ran (each started again), by why.
        self.ended: dict[str, int] = {"exited": 0, "killed": 0}
        self._ready = trio.Event()
        self._random = rng or random.SystemRandom()

    async def replicate(self, message: Apply | Devices) -> None:
        """Send to every worker and wait until each has applied it or is gone."""
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
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.serve_listeners, self._accept, [listener])
                for index in range(1, self.count):
                    await nursery.start(self._keep_running, index)
                task_status.started()
        finally:
            with trio.CancelScope(shield=True):
                processes = list(self.processes.values())
                for process in processes:
                    process.terminate()
                with trio.move_on_after(5):
                    for process in processes:
                        await process.wait()
                for process in processes:
                    if process.returncode is None:
                        process.kill()

    async def _keep_running(
        self, index: int, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Worker `index`, started again whenever it ends (a worker that cannot apply a change
        exits on purpose), after a capped backoff so that one that always fails is no loop."""
        environment = dict(os.environ)
        environment[WORKER_ENV] = json.dumps(
            {"socket": str(self.socket_path), "index": index, "dns": self.dns_addresses}
        )
        backoff = Backoff(0.5, 30.0, random=self._random)
        while True:
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "ddnsd", "--config", str(self.config_path)],
                env=environment,
            )
            self.processes[index] = process
            task_status.started()
            task_status = trio.TASK_STATUS_IGNORED
            started = trio.current_time()
            code = await process.wait()
            self.ended["killed" if code < 0 else "exited"] += 1
            if trio.current_time() - started > 60:
                backoff.reset()  # it ran a while: this is not a loop
            delay = backoff.next_delay()
            log.error(
                "worker %d (pid %d) ended (%s); starting it again in %.1f s",
                index,
                process.pid,
                f"signal {-code}" if code < 0 else f"exit code {code}",
                delay,
            )
            await trio.sleep(delay)

    async def end_worker(self, pid: int) -> None:
        """Kill the worker process `pid` and wait until it is gone: then it answers no one."""
        for process in self.processes.values():
            if process.pid == pid:
                with trio.CancelScope(shield=True):
                    process.kill()
                    with trio.move_on_after(KILL_TIMEOUT_S):
                        await process.wait()
                    if process.returncode is None:
                        log.error("worker pid %d did not end after SIGKILL", pid)
                return
        # Not a running worker: it ended already (and another may run in its place).
        await trio.lowlevel.checkpoint()

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

    def metric(self) -> Metric:
        return Metric.by(
            "nascloud_dns_workers_ended_total",
            "counter",
            "Worker processes that ended and were started again, by how.",
            "how",
            {how: float(n) for how, n in self.ended.items()},
        )
