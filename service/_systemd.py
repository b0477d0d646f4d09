"""The service manager's protocol, without dependencies: readiness, reload and watchdog
notifications (sd_notify) and sockets passed by socket activation.

Everything here is a no-op outside systemd (no NOTIFY_SOCKET, no LISTEN_FDS), so the daemons
call it unconditionally.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable

import trio

__all__ = [
    "listen_fds",
    "notify",
    "reloading",
    "run_watchdog",
    "until_stopped",
    "watchdog_interval_s",
]

SD_LISTEN_FDS_START = 3


def notify(*states: str) -> bool:
    """Send `READY=1`, `RELOADING=1`, `STOPPING=1`, `WATCHDOG=1`, `STATUS=...` and the like.

    Returns False when there is no service manager to tell.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # the abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.sendto("\n".join(states).encode(), address)
    return True


def reloading() -> bool:
    """RELOADING=1 with the monotonic time systemd wants beside it (Type=notify-reload)."""
    return notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")


def watchdog_interval_s() -> float | None:
    """Half of WatchdogSec, if the watchdog is on for this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return None
    return int(usec) / 1e6 / 2


async def run_watchdog() -> None:
    """Ping the watchdog at half its interval for as long as the event loop runs, which is
    the point: a loop that stops turning stops the pings and systemd restarts us."""
    interval = watchdog_interval_s()
    if interval is None:
        return
    while True:
        notify("WATCHDOG=1")
        await trio.sleep(interval)


def listen_fds() -> list[socket.socket]:
    """The sockets systemd passed (socket activation), in order; empty if none."""
    count = os.environ.get("LISTEN_FDS")
    pid = os.environ.get("LISTEN_PID")
    if not count or (pid and int(pid) != os.getpid()):
        return []
    first = SD_LISTEN_FDS_START
    sockets = [socket.socket(fileno=fd) for fd in range(first, first + int(count))]
    for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)  # not inherited by children
    return sockets


async def until_stopped(reload: Callable[[], Awaitable[None]]) -> str:
    """Tell systemd we are ready, keep the watchdog fed, reload on SIGHUP, and return the
    name of the signal (SIGTERM or SIGINT) that asks us to stop."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_watchdog)
            notify("READY=1")
            async for number in signals:
                if number == signal.SIGHUP:
                    reloading()
                    await reload()
                    notify("READY=1")
                    continue
                notify("STOPPING=1")
                nursery.cancel_scope.cancel()
                return signal.Signals(number).name
    return "SIGTERM"  # pragma: no cover - the loop above always returns
