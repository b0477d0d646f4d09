"""Install mode: a NAS with no device identity yet reports itself so its owner can find it by
its cloud key (privacy rule 4).

It reports what setup needs and nothing more: its LAN addresses and the setup UI's port. It
stops the moment it is given its identity, when the relay says the install is over (the owner
stopped, or the window ended), and 24 hours after it first reported at the latest — a restart
does not open a new window: the window's start is kept in the state directory. The key it
authenticates with is made for the window and never written down.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import protocol
from config import AgentConfig, HostPort
from tunnel import TunnelStream, join_streams, write_secret_file

from ._agent import RelayClient

__all__ = ["InstallAgent", "InstallWindow", "load_or_create_cloud_key", "new_cloud_key"]

log = logging.getLogger("nascloud-agent")

INSTALL_NAME = "install"
WINDOW_COUNT_INTERVAL_S = 60.0  # how often the running time of the install window is kept
# Crockford's base32: no I, L, O or U, so a key read off a label is not misread.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_cloud_key() -> str:
    """80 random bits as 16 characters in groups of four: `K7QD-XM2P-9HTA-4R3B`."""
    characters = "".join(secrets.choice(_ALPHABET) for _ in range(16))
    return "-".join(characters[i : i + 4] for i in range(0, 16, 4))


def load_or_create_cloud_key(path: Path) -> str:
    """The NAS's cloud key: read, or made once and kept readable by this user only."""
    if not path.exists():
        write_secret_file(path, (new_cloud_key() + "\n").encode())
    key = path.read_text().strip()
    if not key:
        raise ValueError(f"{path} is empty: remove it and a new cloud key is made")
    return key


class InstallWindow:
    """When this NAS first reported, kept across restarts so the 24 hours are not renewed by
    one. Remove the file (a factory reset does) to open a new window.

    The time used is the larger of the wall clock's since the window opened and the running
    time counted on the monotonic clock (kept in the file too): a wall clock stepped back,
    while the agent runs or between two runs, never lengthens the window."""

    def __init__(
        self,
        path: Path,
        lifetime_s: float,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.lifetime_s = lifetime_s
        self.clock = clock
        self.monotonic = monotonic
        self._counted_at = monotonic()  # running time up to here is in the file's used_s

    def _read(self) -> tuple[float, bool, float] | None:
        try:
            state = json.loads(self.path.read_text())
            return float(state["opened_at"]), bool(state["ended"]), float(state.get("used_s", 0))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            log.warning("%s is unreadable: the install window counts as ended", self.path)
            return 0.0, True, 0.0

    def _write(self, opened_at: float, ended: bool, used_s: float) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        state = {"opened_at": opened_at, "ended": ended, "used_s": used_s}
        temporary.write_text(json.dumps(state) + "\n")
        os.replace(temporary, self.path)

    def _used(self, opened_at: float, used_s: float) -> float:
        running = used_s + (self.monotonic() - self._counted_at)
        return max(running, self.clock() - opened_at)

    def open(self) -> float:
        """Seconds left to report (0: the window is over); opens the window on first use."""
        state = self._read()
        self._counted_at = self.monotonic()
        if state is None:
            self._write(self.clock(), False, 0.0)
            return self.lifetime_s
        opened_at, ended, used_s = state
        if ended:
            return 0.0
        used = self._used(opened_at, used_s)
        self._write(opened_at, False, used)
        return max(0.0, self.lifetime_s - used)

    def remaining(self) -> float:
        state = self._read()
        if state is None or state[1]:
            return 0.0
        return max(0.0, self.lifetime_s - self._used(state[0], state[2]))

    def count(self) -> None:
        """Keep the running time in the file (the agent does so every minute)."""
        state = self._read()
        if state is None or state[1]:
            return
        used = self._used(state[0], state[2])
        self._counted_at = self.monotonic()
        self._write(state[0], False, used)

    def end(self) -> None:
        state = self._read()
        if state is None:
            self._write(self.clock(), True, 0.0)
        else:
            self._write(state[0], True, self._used(state[0], state[2]))


class InstallAgent(RelayClient):
    """Install mode: one install tunnel, the setup UI behind it, for the window only."""

    def __init__(self, config: AgentConfig, rng: random.Random | None = None) -> None:
        super().__init__(config, rng)
        self.cloud_key = load_or_create_cloud_key(config.install.cloud_key_file)
        self.key = Ed25519PrivateKey.generate()
        self.window = InstallWindow(
            config.agent.state_dir / "install-window.json", config.install.lifetime_s
        )
        self.registered = trio.Event()
        self.ended = trio.Event()  # reporting is over, for good
        self._reporting = trio.CancelScope()

    async def run(self) -> None:
        remaining = self.window.open()
        if remaining <= 0:
            log.info(
                "the install window is over: this NAS no longer reports to the cloud; set it "
                "up on its own network (remove %s to report for another window)",
                self.window.path,
            )
        else:
            log.info("install mode: reporting for %.0f s more", remaining)
            with self._reporting:
                self._reporting.relative_deadline = remaining
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._count_window)
                    await super().run()
                    nursery.cancel_scope.cancel()
        await self.stop()

    async def _count_window(self) -> None:
        while True:
            await trio.sleep(WINDOW_COUNT_INTERVAL_S)
            self.window.count()

    async def stop(self) -> None:
        """Stop reporting now, for good (setup completed, or the window is over)."""
        self._reporting.cancel()
        self.window.end()
        self.ended.set()
        if self.tunnel is not None:
            with trio.CancelScope(shield=True):
                await self.tunnel.aclose()

    async def _session(self, address: HostPort) -> bool:
        install = self.config.install
        tls = await self._connect(address)
        lan_addresses = install.lan_addresses or (tls.socket.getsockname()[0],)
        conn = protocol.Connection(
            protocol.Role.CLIENT,
            server_name=self.config.relay.server_name,
            credentials=protocol.Credentials(protocol.AuthKind.INSTALL, INSTALL_NAME, self.key),
        )
        async with self._open(tls, conn) as tunnel:
            self.tunnel = tunnel
            await tunnel.send_message(
                protocol.InstallRegister(
                    request_id=1,
                    cloud_key=self.cloud_key,
                    lan_addresses=tuple(lan_addresses),
                    setup_port=install.setup_port or install.setup_service.port,
                    setup_scheme=install.setup_scheme,
                    lifetime_s=max(1, min(86400, math.ceil(self.window.remaining()))),
                )
            )
            with trio.fail_after(30):
                answer = await tunnel.receive_message()
            if not isinstance(answer, protocol.Ack):
                why = answer.message if isinstance(answer, protocol.Error) else "no answer"
                log.error("the relay refused the install registration: %s", why)
                await tunnel.aclose()
                self.tunnel = None
                return False
            self.connected.set()
            self.registered.set()
            log.info("install mode: registered at %s; find this NAS by its cloud key", address)
            async with trio.open_nursery() as nursery:
                while True:
                    try:
                        stream = await tunnel.accept_stream()
                    except trio.BrokenResourceError:
                        break
                    nursery.start_soon(self.serve_contained, self._serve_setup, stream)
                nursery.cancel_scope.cancel()
        self.tunnel = None
        self.connected = trio.Event()
        self.registered = trio.Event()
        goaway = tunnel.goaway
        if goaway is not None and goaway.error_code == protocol.ErrorCode.INSTALL_ENDED:
            log.info("the relay ended the install: %s", goaway.message)
            return True
        log.info("install tunnel to %s closed: %s", address, tunnel.error or "by the relay")
        return False

    async def _serve_setup(self, stream: TunnelStream) -> None:
        """A relayed setup request: to the setup UI, and nothing else (default deny)."""
        if stream.request.service != protocol.SETUP_SERVICE:
            await self._refuse(stream)
            return
        local = await self._connect_local(stream, self.config.install.setup_service)
        if local is None:
            return
        self.streams_served += 1
        await join_streams(stream, local)
