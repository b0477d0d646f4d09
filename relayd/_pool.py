"""Ready data connections: made by an agent ahead of need, so that a browser connection to a
device in use skips the agent's connect to the relay (SPEC.md 7.3.1).

A device gets a pool when a browser first reaches it, and loses it after `idle_s` without
one: idle devices (thousands of them) hold no sockets. Pure bookkeeping over sockets: no task
waits per ready connection; one is checked for life only when it is taken.
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from collections.abc import Callable

import protocol

__all__ = ["DataPools"]


class _Pool:
    """One device's ready connections, all made through one tunnel."""

    __slots__ = ("issued", "last_wanted", "ready", "tunnel")

    def __init__(self, tunnel: object, now: float) -> None:
        self.tunnel = tunnel  # identity only: a replaced tunnel's connections are not reused
        self.issued: dict[bytes, float] = {}  # token -> when it was sent
        self.ready: deque[tuple[bytes, socket.socket]] = deque()
        self.last_wanted = now

    def close(self) -> None:
        while self.ready:
            self.ready.popleft()[1].close()
        self.issued.clear()


def _alive(sock: socket.socket) -> bool:
    """An untouched ready connection has nothing to read: EOF or bytes mean the agent closed
    it or broke the protocol."""
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


class DataPools:
    """Every device's ready data connections."""

    def __init__(
        self,
        size: int,
        idle_s: float,
        token_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.size = size
        self.idle_s = idle_s
        self.token_timeout_s = token_timeout_s
        self._clock = clock
        self._pools: dict[str, _Pool] = {}
        self._owners: dict[bytes, str] = {}  # issued token -> device

    def want(self, device: str, tunnel: object) -> tuple[socket.socket | None, bytes, list[bytes]]:
        """A browser connection for `device` through `tunnel`: a live ready connection (and
        its token) if there is one, and the tokens to send the agent to keep the pool full."""
        now = self._clock()
        pool = self._pools.get(device)
        if pool is not None and pool.tunnel is not tunnel:
            self.drop(device)  # the device reconnected: its old connections died with it
            pool = None
        if pool is None:
            pool = self._pools[device] = _Pool(tunnel, now)
        pool.last_wanted = now
        taken: socket.socket | None = None
        token = b""
        while pool.ready and taken is None:
            token, sock = pool.ready.popleft()
            if _alive(sock):
                taken = sock
            else:
                sock.close()
        fresh = [
            os.urandom(protocol.DATA_TOKEN_BYTES)
            for _ in range(self.size - len(pool.issued) - len(pool.ready))
        ]
        for new in fresh:
            pool.issued[new] = now
            self._owners[new] = device
        return taken, token, fresh

    def arrive(self, token: bytes, sock: socket.socket) -> bool:
        """An agent's connection brought `token`: keep it if the token was issued (once)."""
        device = self._owners.pop(token, None)
        pool = self._pools.get(device) if device is not None else None
        if pool is None or pool.issued.pop(token, None) is None:
            return False
        pool.ready.append((token, sock))
        return True

    def drop(self, device: str, tunnel: object | None = None) -> None:
        """Close a device's ready connections (only those made through `tunnel`, if given)."""
        pool = self._pools.get(device)
        if pool is None or (tunnel is not None and pool.tunnel is not tunnel):
            return
        del self._pools[device]
        for token in pool.issued:
            self._owners.pop(token, None)
        pool.close()

    def sweep(self) -> None:
        """Close the pools of devices no browser wanted for `idle_s`; forget tokens the agent
        did not use in time."""
        now = self._clock()
        for device, pool in list(self._pools.items()):
            if now - pool.last_wanted >= self.idle_s:
                self.drop(device)
                continue
            for token, sent in list(pool.issued.items()):
                if now - sent >= self.token_timeout_s:
                    del pool.issued[token]
                    self._owners.pop(token, None)

    def ready_count(self) -> int:
        return sum(len(pool.ready) for pool in self._pools.values())

    def __len__(self) -> int:
        return len(self._pools)
