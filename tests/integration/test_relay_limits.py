"""relayd's limits: browser connections per device, streams agents try to open, and a NAS that
stops reading (backpressure, not buffering)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import trio
import trio.testing

import protocol
from relayd._daemon import Relayd, serve
from tests.relay_harness import (
    agent,
    device_tunnel,
    listening_service,
    prepare,
    relay_config,
)
from tests.unit.test_relayd_sni import client_hello
from tunnel import load_or_create_key


async def _browser(relay: Relayd) -> trio.SocketStream:
    host, port = relay.listening["https"][0].rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    await stream.send_all(client_hello("nas1.link.test"))
    return stream


async def test_browser_connections_per_device_are_capped(tmp_path: Path) -> None:
    await prepare(tmp_path)
    service = await listening_service()
    held: list[trio.SocketStream] = []

    async def nas_service() -> None:
        while True:  # accepts and holds every connection, answers nothing
            conn, _ = await service.accept()
            held.append(trio.SocketStream(conn))

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            config = relay_config(tmp_path, ingress="[limits]\nmax_streams_per_tunnel = 3")
            relay: Relayd = await nursery.start(serve, config)
            nas = agent(
                tmp_path, relay.listening["tunnel"][0], f"127.0.0.1:{service.getsockname()[1]}"
            )
            nursery.start_soon(nas.run)
            nursery.start_soon(nas_service)
            await nas.connected.wait()
            browsers = [await _browser(relay) for _ in range(5)]
            await trio.testing.wait_all_tasks_blocked(cushion=0.3)
            assert relay.counts["https_connections"] == 3
            assert relay.counts["https_refused_limit"] == 2
            for browser in browsers:
                await browser.aclose()
            nursery.cancel_scope.cancel()
    for conn in held:
        await conn.aclose()
    service.close()


async def test_streams_opened_by_an_agent_are_refused_and_the_tunnel_stays(tmp_path: Path) -> None:
    await prepare(tmp_path)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            relay: Relayd = await nursery.start(serve, relay_config(tmp_path))
            key = load_or_create_key(tmp_path / "nas1.key")
            async with device_tunnel(tmp_path, relay.listening["tunnel"][0], "nas1", key) as tunnel:
                # The relay offers nothing to agents: it allows them no streams at all, and a
                # well-behaved agent refuses itself before anything is sent.
                assert tunnel.conn.local_streams_allowed == 0
                with pytest.raises(protocol.LocalProtocolError) as refused:
                    await tunnel.open_stream(protocol.Open("web"))
                assert refused.value.error_code == protocol.ErrorCode.REFUSED_STREAM
                # An agent that ignores the relay's HELLO and sends the OPEN anyway: the relay
                # resets that stream, and only that stream.
                conn = tunnel.conn
                conn._peer = dataclasses.replace(conn._peer, max_streams=1)
                stream = await tunnel.open_stream(protocol.Open("web"))
                with pytest.raises(trio.BrokenResourceError):
                    await stream.receive_some()
                assert stream.reset_code == protocol.ErrorCode.REFUSED_STREAM
                assert await tunnel.ping() >= 0  # still up
                assert not tunnel.closed
                assert relay.agents.tunnel_of("nas1") is not None
                assert relay.counts["tunnel_error"] == 0
            nursery.cancel_scope.cancel()


async def test_a_nas_that_stops_reading_pushes_back_on_the_browser(tmp_path: Path) -> None:
    await prepare(tmp_path)
    service = await listening_service()
    held: list[trio.socket.SocketType] = []

    async def nas_service() -> None:
        conn, _ = await service.accept()
        held.append(conn)  # never reads

    for tunnel_setting in ("", "data_connections = false"):
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                config = relay_config(tmp_path, tunnel=tunnel_setting)
                relay: Relayd = await nursery.start(serve, config)
                nas = agent(
                    tmp_path, relay.listening["tunnel"][0], f"127.0.0.1:{service.getsockname()[1]}"
                )
                nursery.start_soon(nas.run)
                nursery.start_soon(nas_service)
                await nas.connected.wait()
                browser = await _browser(relay)
                sent = 0
                chunk = b"x" * 65536
                with trio.move_on_after(2):
                    while True:
                        await browser.send_all(chunk)
                        sent += len(chunk)
                # Kernel buffers and, in the tunnel, the flow-control windows (1 MiB per
                # stream) hold what the NAS does not read; nothing grows past them.
                assert 0 < sent < 48 * 1024 * 1024, (tunnel_setting, sent)
                await browser.aclose()
                nursery.cancel_scope.cancel()
        for conn in held:
            conn.close()
        held.clear()
    service.close()
