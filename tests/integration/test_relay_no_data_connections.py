"""With data connections off, passed-through HTTPS travels in the tunnel's DATA frames."""

from __future__ import annotations

from pathlib import Path

import trio

from relayd._daemon import Relayd, serve
from tests.relay_harness import agent, listening_service, prepare, relay_config
from tests.unit.test_relayd_sni import client_hello


async def test_bytes_pass_through_the_tunnel_when_data_connections_are_off(tmp_path: Path) -> None:
    await prepare(tmp_path)
    service = await listening_service()
    hello = client_hello("nas1.link.test")
    echoed = trio.Event()

    async def nas_service() -> None:
        conn, _ = await service.accept()
        with conn:
            got = b""
            while len(got) < len(hello):
                got += await conn.recv(65536)
            assert got == hello
            await conn.send(b"reply from the NAS")
        echoed.set()

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            config = relay_config(tmp_path, tunnel="data_connections = false")
            relay: Relayd = await nursery.start(serve, config)
            assert "data" not in relay.listening
            nas_agent = agent(
                tmp_path, relay.listening["tunnel"][0], f"127.0.0.1:{service.getsockname()[1]}"
            )
            nursery.start_soon(nas_agent.run)
            nursery.start_soon(nas_service)
            await nas_agent.connected.wait()
            host, port = relay.listening["https"][0].rsplit(":", 1)
            browser = trio.socket.socket()
            await browser.connect((host, int(port)))
            await browser.send(hello)
            assert await browser.recv(100) == b"reply from the NAS"
            await echoed.wait()
            browser.close()
            assert relay.counts["https_connections"] == 1
            assert relay.data is None
            nursery.cancel_scope.cancel()
    service.close()
