"""Start the whole local stack (`nascloud run`) for a test, as a user would."""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nascloud._run import PORTS

BIN = Path(sys.executable).parent


def free_port_range(count: int) -> int:
    """A base port with `count` ports after it free for TCP and UDP right now.

    Taken below the kernel's ephemeral range: there, the client side of every recent
    connection (thousands after a benchmark) sits in TIME_WAIT for a minute, and a port held
    that way refuses a listener unless both sockets asked for SO_REUSEADDR."""
    low = _ephemeral_low()
    for _ in range(100):
        if low - count > 10000:
            base = random.randrange(10000, low - count)
        else:
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
            probe.close()
        if base + count > 65535:
            continue
        held = []
        try:
            for port in range(base, base + count):
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    sock = socket.socket(socket.AF_INET, kind)
                    held.append(sock)
                    if kind == socket.SOCK_STREAM:
                        # As the daemons' listeners do: a port in TIME_WAIT is free for them.
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind(("127.0.0.1", port))
            return int(base)
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError("no free port range")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


@dataclass
class Stack:
    state: Path
    base_port: int
    endpoints: dict[str, Any]
    output: str = ""  # everything the stack printed, once it has stopped
    returncode: int | None = None


@contextmanager
def running_stack(directory: Path) -> Iterator[Stack]:
    """`nascloud run` in `directory/var`; stopped with Ctrl-C (SIGINT) on the way out."""
    state = directory / "var"
    for _attempt in range(3):
        # The range was free when probed; another process may take a port before the stack
        # binds it. Then the stack stops with EADDRINUSE, and a new range is tried.
        base_port = free_port_range(PORTS)
        process = subprocess.Popen(
            [
                str(BIN / "nascloud"),
                "run",
                "--state-dir",
                str(state),
                "--base-port",
                str(base_port),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 30
        while not (state / "endpoints.json").exists() and process.poll() is None:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("nascloud run did not start")
            time.sleep(0.1)
        if process.poll() is None:
            break
        output, _ = process.communicate()
        if "Address already in use" not in output:
            raise RuntimeError(f"nascloud run did not start:\n{output}")
    else:
        raise RuntimeError("nascloud run found no free port range in three tries")
    stack = Stack(state, base_port, {})
    try:
        stack.endpoints = json.loads((state / "endpoints.json").read_text())
        yield stack
    finally:
        process.send_signal(signal.SIGINT)
        try:
            stack.output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            stack.output, _ = process.communicate()
        stack.returncode = process.returncode
