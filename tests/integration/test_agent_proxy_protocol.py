"""With proxy_protocol on, the NAS's service learns the browser's address from a PROXY v2
header, followed by the browser's bytes untouched."""

from __future__ import annotations

import socket
from pathlib import Path

import trio

from relayd._daemon import Relayd, serve
from tests.relay_harness import agent, listening_service, prepare, relay_config
from tests.unit.test_relayd_sni import client_hello


async def test_the_service_gets_a_proxy_header_then_the_client_hello(tmp_path: Path) -> None:
    await prepare(tmp_path)
    service = await listening_service()
    received = bytearray()
    got_all = trio.Event()
    hello = client_hello("nas1.link.test")

    async def nas_service() -> None:
        conn, _ = await service.accept()
        with conn:
            while len(received) < 28 + len(hello):
                data = await conn.recv(65536)
                if not data:
                    break
                received.extend(data)
        got_all.set()

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            relay: Relayd = await nursery.start(serve, relay_config(tmp_path))
            nas_agent = agent(
                tmp_path,
                relay.listening["tunnel"][0],
                f"127.0.0.1:{service.getsockname()[1]}",
                extra="proxy_protocol",
            )
            nursery.start_soon(nas_agent.run)
            nursery.start_soon(nas_service)
            await nas_agent.connected.wait()
            host, port = relay.listening["https"][0].rsplit(":", 1)
            browser = socket.create_connection((host, int(port)))
            browser.sendall(hello)
            browser_port = browser.getsockname()[1]
            await got_all.wait()
            browser.close()
            nursery.cancel_scope.cancel()
    assert received[:12] == b"\r\n\r\n\x00\r\nQUIT\n"
    assert received[16:20] == bytes([127, 0, 0, 1])  # the browser's address
    assert int.from_bytes(received[24:26], "big") == browser_port
    assert bytes(received[28:]) == hello  # then the browser's bytes, untouched
    service.close()
