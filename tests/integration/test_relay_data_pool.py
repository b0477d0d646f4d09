"""Ready data connections between relayd and a real agent (SPEC.md 7.3.1): browser
connections after the first skip the agent's connect, the pool refills and empties when the
device is idle, a refusal on a ready connection hurts nobody else, and tokens are good once."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio
import trio.testing

import protocol
from nasagent._agent import Agent
from relayd._daemon import Relayd, serve
from relayd._pool import DataPools
from tests import relay_harness
from tests.relay_harness import (
    agent,
    device_tunnel,
    echo_service,
    listening_service,
    prepare,
    relay_config,
)
from tests.unit.test_relayd_sni import client_hello
from tunnel import load_or_create_key

HELLO = client_hello("nas1.link.test")


def pools(relay: Relayd) -> DataPools:
    assert relay.data is not None and relay.data.pools is not None
    return relay.data.pools


async def browse(relay: Relayd, payload: bytes) -> bytes:
    """A browser connection: the ClientHello and `payload`; what comes back of the same size."""
    return await relay_harness.browse(relay.listening["https"][0], payload, hello=HELLO)


async def until(condition: Callable[[], bool]) -> None:
    """Poll state that has no event of its own, for 10 s at most."""
    for _ in range(1000):
        if condition():
            return
        await trio.sleep(0.01)
    raise AssertionError("the condition never held")


async def with_relay_and_agent(
    tmp_path: Path,
    tunnel: str,
    body: Callable[[Relayd, Agent], Awaitable[None]],
    service_up: bool = True,
) -> None:
    await prepare(tmp_path)
    service = await listening_service()
    port = service.getsockname()[1]
    if not service_up:
        service.close()  # the NAS's web UI is down: its port refuses
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            relay: Relayd = await nursery.start(serve, relay_config(tmp_path, tunnel=tunnel))
            nas = agent(tmp_path, relay.listening["tunnel"][0], f"127.0.0.1:{port}")
            nursery.start_soon(nas.run)
            if service_up:
                nursery.start_soon(echo_service, service)
            await nas.connected.wait()
            await body(relay, nas)
            nursery.cancel_scope.cancel()
    service.close()


async def test_connections_after_the_first_use_ready_data_connections(tmp_path: Path) -> None:
    async def body(relay: Relayd, nas: Agent) -> None:
        assert await browse(relay, b"first") == HELLO + b"first"
        assert relay.counts["https_ready_data_connection"] == 0
        assert relay.data is not None and relay.data.pools is not None
        await until(lambda: pools(relay).ready_count() == 4)
        for n in range(6):
            payload = f"browser {n}".encode() * 1000
            assert await browse(relay, payload) == HELLO + payload
            # Each one used is asked for again (a few ms later): the pool is full once more.
            await until(lambda: pools(relay).ready_count() == 4)
        assert relay.counts["https_ready_data_connection"] == 6
        assert relay.counts["https_connections"] == 7
        assert len(nas.ready) == 4
        assert relay.counts["data_connection_refused"] == 0

    await with_relay_and_agent(tmp_path, "data_pool = 4", body)


async def test_an_idle_device_keeps_no_ready_connections(tmp_path: Path) -> None:
    async def body(relay: Relayd, nas: Agent) -> None:
        await browse(relay, b"x")
        await until(lambda: pools(relay).ready_count() == 2)
        await until(lambda: len(nas.ready) == 2)
        # No browser for data_pool_idle_s: the relay closes them and the agent forgets them.
        await until(lambda: len(pools(relay)) == 0)
        await until(lambda: len(nas.ready) == 0)
        assert await browse(relay, b"later") == HELLO + b"later"

    await with_relay_and_agent(tmp_path, "data_pool = 2\ndata_pool_idle_s = 1", body)


async def test_a_refusal_on_a_ready_connection_closes_that_browser_only(tmp_path: Path) -> None:
    async def body(relay: Relayd, nas: Agent) -> None:
        assert await browse(relay, b"x") == b""  # refused on a fresh data connection
        await until(lambda: pools(relay).ready_count() == 2)
        for _ in range(4):
            assert await browse(relay, b"x") == b""  # refused on a ready one: closed, no hang
            await until(lambda: pools(relay).ready_count() == 2)
        assert relay.counts["https_ready_data_connection"] == 4
        assert nas.streams_refused == 5
        # Recorded as refused, on a fresh data connection as on a ready one, not as
        # connections that moved nothing (once relayd has seen the browser go and the
        # agent's reset come).
        await until(lambda: relay.counts["https_refused"] == 5)
        await until(lambda: pools(relay).ready_count() == 2)
        assert len(nas.ready) == 2  # none leaked on the NAS

    await with_relay_and_agent(tmp_path, "data_pool = 2", body, service_up=False)


async def test_pool_tokens_are_good_once_and_only_from_the_data_port(tmp_path: Path) -> None:
    """The test plays the agent, to do what a real one never would."""
    await prepare(tmp_path)
    key = load_or_create_key(tmp_path / "nas1.key")
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            relay: Relayd = await nursery.start(
                serve, relay_config(tmp_path, tunnel="data_pool = 2")
            )
            capabilities = frozenset({protocol.DATA_CONNECTIONS, protocol.DATA_POOL})
            async with device_tunnel(
                tmp_path, relay.listening["tunnel"][0], "nas1", key, capabilities
            ) as tunnel:
                await until(lambda: "nas1" in relay.agents.tunnels)
                https_host, https_port = relay.listening["https"][0].rsplit(":", 1)
                browser = await trio.open_tcp_stream(https_host, int(https_port))
                await browser.send_all(HELLO)
                opened = await tunnel.accept_stream()  # the first goes the usual way
                assert opened.request.data_token is not None
                pool = await tunnel.receive_message()
                assert isinstance(pool, protocol.DataPool) and len(pool.tokens) == 2
                await opened.reset(protocol.ErrorCode.SERVICE_UNAVAILABLE)
                await browser.aclose()

                async def data_connection(token: bytes) -> socket.socket:
                    sock = socket.create_connection(("127.0.0.1", pool.data_port))
                    sock.sendall(token)
                    return sock

                kept = await data_connection(pool.tokens[0])
                await until(lambda: pools(relay).ready_count() == 1)
                replayed = await data_connection(pool.tokens[0])
                unknown = await data_connection(b"u" * 16)
                await until(lambda: relay.counts["data_connection_refused"] == 2)
                for refused in (replayed, unknown):
                    refused.settimeout(5)
                    assert refused.recv(1) == b""
                    refused.close()
                assert pools(relay).ready_count() == 1
                kept.close()
                await tunnel.aclose()
            nursery.cancel_scope.cancel()


async def test_a_relay_cannot_make_the_agent_open_connections_without_bound(
    tmp_path: Path,
) -> None:
    """However many tokens a (compromised) relay sends, the NAS keeps at most 32 ready."""
    await prepare(tmp_path)
    nas = agent(tmp_path, "127.0.0.1:1", "127.0.0.1:1")
    nas.relay_host = "127.0.0.1"
    relay_side = await listening_service()
    accepted: list[trio.socket.SocketType] = []

    async def hold() -> None:
        while True:
            conn, _ = await relay_side.accept()
            accepted.append(conn)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hold)
            port = relay_side.getsockname()[1]
            for n in range(5):
                tokens = tuple(bytes([n, i]) * 8 for i in range(16))
                nas._on_message(nursery, protocol.DataPool(tokens, port))
            await until(lambda: len(nas.ready) == 32)
            await trio.testing.wait_all_tasks_blocked(cushion=0.2)
            assert len(accepted) == 32 and nas.readying == 0
            # The relay closing them: the agent forgets them.
            for conn in accepted:
                conn.close()
            await until(lambda: not nas.ready)
            nursery.cancel_scope.cancel()
    relay_side.close()
