"""Binding and reporting listeners, the one way every daemon does it: bind an address from its
config, start serving it, note the address as bound (port 0 resolved) and, once all are bound,
write `<state_dir>/listening.json` for tests and `nascloud run`. Also the TLS context of a
listener that ends TLS itself. Knows no daemon.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from config import HostPort

__all__ = [
    "Accepting",
    "Listening",
    "Serve",
    "bound_address",
    "drain",
    "port_of",
    "server_tls_context",
]

#: A `serve_*` function in Trio's shape: started with `nursery.start(serve, listener)`, it
#: reports `task_status.started()` once it is accepting.
Serve = Callable[..., Awaitable[None]]


def port_of(listeners: list[trio.SocketListener]) -> int | None:
    """The port of the first of `listeners` (the one a kind announces), None if none."""
    return int(listeners[0].socket.getsockname()[1]) if listeners else None


def bound_address(sock: socket.socket | trio.socket.SocketType) -> str:
    """`host:port` (`[host]:port` for IPv6) of a bound socket, as listening.json shows it."""
    host, port = sock.getsockname()[:2]
    return str(HostPort(host, port))


class Listening(dict[str, list[str]]):
    """What a daemon is listening on, by kind (`"https"`, `"dns"`, ...), in the order bound."""

    def note(self, kind: str, sock: socket.socket | trio.socket.SocketType) -> int:
        """Record a socket bound for `kind`; its port."""
        self.setdefault(kind, []).append(bound_address(sock))
        return int(sock.getsockname()[1])

    async def bind(self, kind: str, addresses: tuple[HostPort, ...]) -> list[trio.SocketListener]:
        """Bind every address for `kind` and record them: their port is known before
        anything that announces it is built. Addresses of one kind given port 0 share the
        one port the system picks for the first (a kind announces one port). Serve each
        with `nursery.start(serve, listener)`."""
        listeners: list[trio.SocketListener] = []
        picked = 0
        for address in addresses:
            port = address.port or picked
            listener = (await trio.open_tcp_listeners(port, host=address.host))[0]
            if not address.port and not picked:
                picked = int(listener.socket.getsockname()[1])
            self.note(kind, listener.socket)
            listeners.append(listener)
        return listeners

    async def serve(
        self, nursery: trio.Nursery, kind: str, addresses: tuple[HostPort, ...], serve: Serve
    ) -> int | None:
        """Bind `addresses`, start `serve` on each in `nursery` and record them; the port of
        the first, None if there is none (the listener is off)."""
        listeners = await self.bind(kind, addresses)
        for listener in listeners:
            await nursery.start(serve, listener)
        return port_of(listeners)

    def write(self, state_dir: Path) -> None:
        """Replace `<state_dir>/listening.json` in one step: a reader sees all or nothing."""
        path = state_dir / "listening.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self, indent=2, sort_keys=True) + "\n")
        os.replace(temporary, path)


class Accepting:
    """Accept loops that stop on their own while the connections they took go on: trio's
    `serve_listeners` with a nursery for the handlers that outlives the loops. Stopping
    closes the listeners, so new connections are refused at once (agents and load balancers
    move on) and the ones in progress drain."""

    def __init__(self, handlers: trio.Nursery) -> None:
        self._handlers = handlers
        self._scopes: list[trio.CancelScope] = []

    async def serve(
        self,
        handler: Callable[[trio.SocketStream], Awaitable[None]],
        listener: trio.SocketListener,
        *,
        task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """`serve_listeners(handler, [listener])`, its handlers in the outer nursery."""
        with trio.CancelScope() as scope:
            self._scopes.append(scope)
            await trio.serve_listeners(
                handler, [listener], handler_nursery=self._handlers, task_status=task_status
            )

    def stop(self) -> None:
        """Close every listener served here; the connections already taken go on."""
        for scope in self._scopes:
            scope.cancel()


async def drain(
    accepting: Accepting, timeout_s: float, *finishing: Callable[[], Awaitable[None]]
) -> bool:
    """A graceful stop in hypercorn's order: stop accepting, then let each of `finishing`
    run until all have returned or `timeout_s` has passed; True if they all finished."""
    accepting.stop()
    with trio.move_on_after(timeout_s):
        async with trio.open_nursery() as nursery:
            for finish in finishing:
                nursery.start_soon(finish)
        return True
    return False


def server_tls_context(
    cert_file: Path, key_file: Path, *, alpn: list[str] | None = None
) -> ssl.SSLContext:
    """The context of a listener that ends TLS (tunnels, the protocol channel, the install
    site); read again from the files on every reload."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    if alpn is not None:
        context.set_alpn_protocols(alpn)
    return context
