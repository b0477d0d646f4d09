"""The main process's end of a worker socket, in-process: an acknowledgement waits for a
worker no longer than the apply timeout, even when the worker reads nothing at all."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from ddnsd._replication import Apply
from ddnsd._workers import APPLY_TIMEOUT_S, Replica, WorkerPool
from ddnsd._zone import Change


async def no_updates(wire: bytes, client: str, tcp: bool) -> list[bytes]:
    raise AssertionError("no UPDATE is forwarded here")  # pragma: no cover


async def test_a_worker_that_reads_nothing_is_dropped_after_the_timeout(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    ours, theirs = trio.socket.socketpair()
    pool = WorkerPool(tmp_path / "workers.sock", 2, tmp_path / "ddnsd.toml", no_updates, [])
    replica = Replica(trio.SocketStream(ours), pool)  # its peer (ourselves) is no worker
    pool.replicas.add(replica)
    replica.ready = True
    # More than the socket's buffers hold: the send itself cannot finish.
    big = Apply(1, tuple(Change(f"nas{i}", "TXT", 60, ("x" * 255,)) for i in range(8000)))
    started = trio.current_time()
    with trio.fail_after(10 * APPLY_TIMEOUT_S):
        await pool.replicate(big)
    assert trio.current_time() - started == pytest.approx(APPLY_TIMEOUT_S)
    assert not replica.alive and not pool.replicas
    theirs.close()
