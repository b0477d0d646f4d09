"""Graceful stop: relayd on SIGTERM stops taking tunnels, sends GOAWAY, and lets the browser
connections in progress finish, up to [limits].drain_timeout_s, before it exits; the agent
keeps serving them while it reconnects."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from tests.relay_harness import agent, listening_service, prepare, relay_toml
from tests.unit.test_relayd_sni import client_hello

BIN = Path(sys.executable).parent
CHUNK = b"d" * 100_000


async def slow_nas(service: trio.socket.SocketType, chunks: int) -> None:
    """Each connection: after the first bytes, `chunks` of 100 kB ten a second, then the end."""

    async def serve(conn: trio.socket.SocketType) -> None:
        with conn, contextlib.suppress(OSError):  # a cut connection ends the download
            await conn.recv(65536)
            for _ in range(chunks):
                view = memoryview(CHUNK)
                while view:
                    view = view[await conn.send(view) :]
                await trio.sleep(0.1)

    async with trio.open_nursery() as nursery:
        while True:
            conn, _ = await service.accept()
            nursery.start_soon(serve, conn)


@asynccontextmanager
async def relay_with_a_download(
    tmp_path: Path, drain_timeout_s: float, chunks: int
) -> AsyncIterator[tuple[trio.Process, trio.SocketStream, int]]:
    """relayd as a process, an agent, and a browser whose download has begun (with how many
    bytes it has received)."""
    await prepare(tmp_path)
    config = relay_toml(ingress=f"[limits]\ndrain_timeout_s = {drain_timeout_s}")
    (tmp_path / "relayd.toml").write_text(config)
    listening = tmp_path / "relay" / "listening.json"
    with (tmp_path / "relayd.log").open("ab") as log:
        relayd = await trio.lowlevel.open_process(
            [str(BIN / "relayd"), "--config", str(tmp_path / "relayd.toml")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    service = await listening_service()
    try:
        for _ in range(400):  # 20 s at most
            if listening.exists():
                break
            assert relayd.poll() is None, (tmp_path / "relayd.log").read_text()
            await trio.sleep(0.05)
        ports = json.loads(listening.read_text())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow_nas, service, chunks)
            nas = agent(tmp_path, ports["tunnel"][0], f"127.0.0.1:{service.getsockname()[1]}")
            nursery.start_soon(nas.run)
            await nas.connected.wait()
            host, port = ports["https"][0].rsplit(":", 1)
            async with await trio.open_tcp_stream(host, int(port)) as browser:
                await browser.send_all(client_hello("nas1.link.test"))
                begun = len(await browser.receive_some(1 << 20))
                assert begun
                yield relayd, browser, begun
            nursery.cancel_scope.cancel()
    finally:
        service.close()
        if relayd.poll() is None:
            relayd.kill()
            with trio.CancelScope(shield=True):
                await relayd.wait()


async def healthz(address: str) -> tuple[int, str]:
    host, port = address.rsplit(":", 1)
    async with await trio.open_tcp_stream(host, int(port)) as stream:
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := await stream.receive_some(4096):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode().strip()


async def receive_all(browser: trio.SocketStream) -> int:
    received = 0
    while chunk := await browser.receive_some(1 << 20):
        received += len(chunk)
    return received


async def test_a_transfer_in_progress_finishes_when_relayd_stops(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with relay_with_a_download(tmp_path, 10, chunks=20) as (relayd, browser, begun):
            relayd.send_signal(signal.SIGTERM)  # about a tenth of the way through
            stopped_at = trio.current_time()
            assert begun + await receive_all(browser) == 20 * len(CHUNK)  # not cut at SIGTERM
            await browser.aclose()  # done: the last connection relayd waited for
            assert await relayd.wait() == 0
            assert trio.current_time() - stopped_at < 8  # it left once the transfer ended


async def test_a_transfer_longer_than_the_drain_is_cut_at_its_deadline(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with relay_with_a_download(tmp_path, 1, chunks=1000) as (relayd, browser, _):
            relayd.send_signal(signal.SIGTERM)
            stopped_at = trio.current_time()
            try:
                received = await receive_all(browser)
            except trio.BrokenResourceError:
                received = 0  # cut with a reset
            assert received < 999 * len(CHUNK)
            assert await relayd.wait() == 0
            assert 0.9 < trio.current_time() - stopped_at < 6
    assert "cutting 1 browser connections" in (tmp_path / "relayd.log").read_text()


async def test_a_draining_relay_takes_no_new_browsers_or_agents(tmp_path: Path) -> None:
    """Stop accepting first (the listeners close, so a load balancer and the agents move on
    at once), then the connections in progress finish."""
    with trio.fail_after(30):
        async with relay_with_a_download(tmp_path, 10, chunks=20) as (relayd, browser, _):
            ports = json.loads((tmp_path / "relay" / "listening.json").read_text())
            assert await healthz(ports["metrics"][0]) == (200, "serving")
            relayd.send_signal(signal.SIGTERM)
            for _ in range(100):  # a load balancer's health check sees the drain at once
                if await healthz(ports["metrics"][0]) == (503, "draining"):
                    break
                await trio.sleep(0.05)
            else:
                raise AssertionError("/healthz never said draining")
            for kind in ("https", "tunnel"):
                host, port = ports[kind][0].rsplit(":", 1)
                for _ in range(100):  # the signal is handled within a few milliseconds
                    try:
                        newcomer = await trio.open_tcp_stream(host, int(port))
                    except OSError:
                        break  # refused: not listening any more
                    await newcomer.aclose()
                    await trio.sleep(0.05)
                else:
                    raise AssertionError(f"relayd still accepts on its {kind} port while draining")
            await receive_all(browser)  # the download in progress still finishes
            await browser.aclose()
            assert await relayd.wait() == 0
