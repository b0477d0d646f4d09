"""A worker that fails, stalls or starts late never answers from a copy an acknowledgement has
left behind: it is ended before the acknowledgement, or catches up before it answers, and
the main process starts a fresh one."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dns.message

from tests.ddnsd_harness import Ddnsd, DdnsdOptions, prepare, start, stop

from .ddnsd_updates import http_update
from .test_ddnsd_workers import answers_from_many_ports, socket_holders, wait_until, workers

NAME = "nas1.dyn.test"

# Loaded by every process of the ddnsd under test (PYTHONPATH); acts in worker 1 only. The
# test and the worker meet through files in DDNSD_TEST_MARKS, each wait bounded.
HOOK = """
import json, os
from pathlib import Path

_worker = json.loads(os.environ.get("NASCLOUD_DDNSD_WORKER", "null"))
_fault = os.environ.get("DDNSD_TEST_FAULT", "")
_marks = Path(os.environ.get("DDNSD_TEST_MARKS", "."))


def _once(name):
    try:
        (_marks / name).touch(exist_ok=False)
        return True
    except FileExistsError:
        return False


async def _wait_for(name):
    import trio
    with trio.fail_after(20):
        while not (_marks / name).exists():
            await trio.sleep(0.01)


if _worker is not None and _worker["index"] == 1 and _fault:
    from ddnsd import _store, _worker as worker

    kind, _, value = _fault.partition(":")
    if kind == "raise":
        apply = worker._apply_from_main

        def failing(message, *args):
            if value in repr(message) and _once("fired"):
                raise RuntimeError("injected failure")
            return apply(message, *args)

        worker._apply_from_main = failing
    elif kind == "slow-start":
        load = _store.ZoneStore.load
        send, receive = worker.WorkerFeed.send, worker.WorkerFeed.receive
        ready_sent = []

        async def slow_load(self):
            await load(self)
            if (_marks / "armed").exists() and _once("loaded"):
                await _wait_for("updated")  # the test made a change this copy lacks

        async def noting_send(self, message):
            await send(self, message)
            if type(message).__name__ == "Ready" and (_marks / "loaded").exists():
                ready_sent.append(True)

        async def late_receive(self):
            if ready_sent and _once("ready-sent"):
                await _wait_for("queried")  # queries wait at this worker, or are answered
            return await receive(self)

        _store.ZoneStore.load = slow_load
        worker.WorkerFeed.send = noting_send
        worker.WorkerFeed.receive = late_receive
"""


@contextmanager
def three_processes(directory: Path, fault: str = "") -> Iterator[Ddnsd]:
    """ddnsd with two workers; `fault` (see HOOK) is injected into worker 1."""
    hook = directory / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    prepare(directory, DdnsdOptions(workers=3))
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)
    env = {"PYTHONPATH": path, "DDNSD_TEST_FAULT": fault, "DDNSD_TEST_MARKS": str(directory)}
    daemon = start(directory, env=env)
    try:
        wait_until(lambda: len(workers(daemon)) == 2, "two workers")
        yield daemon
    finally:
        stop(daemon)


def replaced(daemon: Ddnsd, old: int) -> bool:
    """Worker 1 runs again as a new process, and holds the DNS socket with the others."""
    now = workers(daemon)
    return now.get(1, old) != old and socket_holders(daemon) == {daemon.process.pid, *now.values()}


def test_a_worker_that_cannot_apply_a_change_is_gone_before_the_ack_and_started_again(
    tmp_path: Path,
) -> None:
    with three_processes(tmp_path, "raise:198.51.100.66") as daemon:
        old = workers(daemon)[1]
        assert http_update(daemon, "nas1", "198.51.100.66") == "good 198.51.100.66"
        # Acknowledged: the worker that failed answers no one any more, the others answer it.
        assert old not in socket_holders(daemon)
        assert answers_from_many_ports(daemon, NAME) == [["198.51.100.66"]] * 24
        wait_until(lambda: replaced(daemon, old), "worker 1 started again")
        assert http_update(daemon, "nas1", "198.51.100.67") == "good 198.51.100.67"
        assert answers_from_many_ports(daemon, NAME) == [["198.51.100.67"]] * 24
        log = daemon.log()
        assert "worker 1 could not apply a change from the main process" in log
        assert "RuntimeError: injected failure" in log  # with its traceback
        assert f"(pid {old}) ended (exit code 4); starting it again" in log


def test_a_worker_that_does_not_apply_in_time_is_killed_before_the_ack(tmp_path: Path) -> None:
    with three_processes(tmp_path) as daemon:
        stalled = workers(daemon)[1]
        os.kill(stalled, signal.SIGSTOP)  # it holds the socket, takes queries, applies nothing
        try:
            assert http_update(daemon, "nas1", "198.51.100.77") == "good 198.51.100.77"
            assert stalled not in socket_holders(daemon)
            assert answers_from_many_ports(daemon, NAME) == [["198.51.100.77"]] * 24
        finally:
            if stalled in workers(daemon).values():
                os.kill(stalled, signal.SIGCONT)
        wait_until(lambda: replaced(daemon, stalled), "worker 1 started again")
        assert f"worker pid {stalled} did not apply a change in time; ending it" in daemon.log()
        assert f"(pid {stalled}) ended (signal 9); starting it again" in daemon.log()


def test_a_worker_starting_while_a_change_is_acked_answers_only_once_it_has_it(
    tmp_path: Path,
) -> None:
    ports = 48  # the new worker takes about a third: (2/3)**48 that it gets none
    with three_processes(tmp_path, "slow-start") as daemon:
        old = workers(daemon)[1]
        (tmp_path / "armed").touch()
        os.kill(old, signal.SIGKILL)
        # Its successor has loaded the zones and waits: the change is made now, so that its
        # copy lacks it. The worker is not caught up yet, so the ack does not wait for it.
        wait_until(lambda: (tmp_path / "loaded").exists(), "worker 1 loaded again")
        assert http_update(daemon, "nas1", "198.51.100.88") == "good 198.51.100.88"
        (tmp_path / "updated").touch()
        wait_until(lambda: replaced(daemon, old), "worker 1 bound again")
        wait_until(lambda: (tmp_path / "ready-sent").exists(), "worker 1 ready")
        # Queries from many ports, some to the new worker, before it applies what it was
        # sent: each is answered with the acknowledged address, at once or once caught up.
        sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(ports)]
        try:
            for sock in sockets:
                sock.bind(("127.0.0.1", 0))
                sock.settimeout(10)
                sock.sendto(
                    dns.message.make_query(NAME, "A").to_wire(), ("127.0.0.1", daemon.dns_port)
                )
            (tmp_path / "queried").touch()
            answers = [dns.message.from_wire(sock.recv(4096)).answer for sock in sockets]
        finally:
            for sock in sockets:
                sock.close()
        assert [[rr.to_text() for rrset in a for rr in rrset] for a in answers] == [
            ["198.51.100.88"]
        ] * ports
