"""The service manager's protocol, against real AF_UNIX datagram sockets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

import service as systemd


@pytest.fixture
def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A stand-in for systemd's notification socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
        yield sock


def test_notify_sends_states_and_is_a_no_op_without_a_manager(
    manager: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert systemd.notify("READY=1", "STATUS=serving")
    assert manager.recv(4096) == b"READY=1\nSTATUS=serving"
    assert systemd.reloading()
    message = manager.recv(4096).decode().split("\n")
    assert message[0] == "RELOADING=1" and message[1].startswith("MONOTONIC_USEC=")
    assert int(message[1].split("=")[1]) > 0
    manager.close()
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not systemd.notify("READY=1")


def test_abstract_namespace_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"nascloud-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify("WATCHDOG=1")
        assert sock.recv(100) == b"WATCHDOG=1"


async def test_watchdog_pings_at_half_the_interval(
    manager: socket.socket, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")  # 10 s: a ping every 5 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert systemd.watchdog_interval_s() == 5.0
    with trio.move_on_after(12):
        await systemd.run_watchdog()
    manager.setblocking(False)
    pings = []
    while True:
        try:
            pings.append(manager.recv(100))
        except BlockingIOError:
            break
    assert pings == [b"WATCHDOG=1"] * 3  # at 0, 5 and 10 s
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert systemd.watchdog_interval_s() is None


def test_listen_fds_takes_the_sockets_systemd_passed(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    code = (
        "import service as systemd; import os\n"
        "[s] = systemd.listen_fds()\n"
        "print(s.getsockname()[1], 'LISTEN_FDS' in os.environ)\n"
    )
    fd = listener.fileno()
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "LISTEN_FDS": "1"},
        # systemd passes its sockets from descriptor 3 on: put ours there in the child (the
        # descriptors to keep are closed after preexec_fn runs, so 3 is among them).
        pass_fds=(3, fd),
        preexec_fn=(lambda: os.dup2(fd, 3)) if fd != 3 else None,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()
    assert out == [str(listener.getsockname()[1]), "False"]
    listener.close()
