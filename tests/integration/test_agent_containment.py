"""The agent's boundaries: a stream it fails to serve (a bug, or a local service that never
answers) is reset alone; the agent and its other streams go on."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trio

import nasagent._agent
from relayd._daemon import Relayd, serve
from tests.relay_harness import agent, browse, echo_service, prepare, relay_config
from tunnel import TunnelStream


async def test_a_stream_the_agent_fails_to_serve_is_reset_alone(tmp_path: Path) -> None:
    await prepare(tmp_path)
    service = trio.socket.socket()
    await service.bind(("127.0.0.1", 0))
    service.listen(16)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            config = relay_config(tmp_path, tunnel="data_connections = false")
            relay: Relayd = await nursery.start(serve, config)
            nas = agent(
                tmp_path, relay.listening["tunnel"][0], f"127.0.0.1:{service.getsockname()[1]}"
            )
            serve_stream = nas._serve_stream
            failures = [True]

            async def sometimes_broken(stream: TunnelStream) -> None:
                if failures and failures.pop():
                    raise RuntimeError("injected failure")
                await serve_stream(stream)

            nas._serve_stream = sometimes_broken  # type: ignore[method-assign]
            nursery.start_soon(nas.run)
            nursery.start_soon(echo_service, service)
            await nas.connected.wait()
            assert (
                await browse(relay.listening["https"][0], b"first") == b""
            )  # reset: the browser is closed
            assert nas.boundary.errors == {"agent_stream": 1}
            assert (await browse(relay.listening["https"][0], b"second")).endswith(b"second")
            assert nas.tunnel is not None and not nas.tunnel.closed  # the same tunnel
            nursery.cancel_scope.cancel()
    service.close()


async def test_a_local_service_that_never_answers_refuses_the_stream_in_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nasagent._agent, "LOCAL_CONNECT_TIMEOUT_S", 0.5)
    await prepare(tmp_path)
    # A service whose accept queue is full: the kernel drops new SYNs, a connect hangs.
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(0)
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(hung.getsockname())
        except BlockingIOError:
            pass
        fillers.append(filler)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            config = relay_config(tmp_path, tunnel="data_connections = false")
            relay: Relayd = await nursery.start(serve, config)
            nas = agent(
                tmp_path, relay.listening["tunnel"][0], f"127.0.0.1:{hung.getsockname()[1]}"
            )
            nursery.start_soon(nas.run)
            await nas.connected.wait()
            started = trio.current_time()
            assert await browse(relay.listening["https"][0], b"x", timeout_s=5) == b""
            assert trio.current_time() - started < 4
            assert nas.streams_refused == 1
            nursery.cancel_scope.cancel()
    for sock in (hung, *fillers):
        sock.close()
