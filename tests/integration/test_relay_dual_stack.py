"""Every listener takes a list of addresses: relayd takes IPv4 and IPv6 browsers and agents at
once (ddnsd publishes A and AAAA for the link zone), one port per kind."""

from __future__ import annotations

from pathlib import Path

import trio

from config import RelaydConfig, loads
from relayd._daemon import Relayd, serve
from tests.relay_harness import agent, browse, echo_service, prepare, relay_toml
from tests.unit.test_relayd_sni import client_hello


async def test_ipv4_and_ipv6_browsers_and_agents_at_once(tmp_path: Path) -> None:
    await prepare(tmp_path)
    text = (
        relay_toml()
        .replace('listen = "127.0.0.1:0"', 'listen = ["127.0.0.1:0", "[::1]:0"]')
        .replace('https_listen = "127.0.0.1:0"', 'https_listen = ["127.0.0.1:0", "[::1]:0"]')
    )
    config = loads(RelaydConfig, text, "relayd.toml", tmp_path)
    service = trio.socket.socket()
    await service.bind(("127.0.0.1", 0))
    service.listen(16)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            relay: Relayd = await nursery.start(serve, config)
            for kind in ("tunnel", "https", "data"):
                v4, v6 = relay.listening[kind]
                assert v4.startswith("127.0.0.1:") and v6.startswith("[::1]:")
                assert v4.rsplit(":", 1)[1] == v6.rsplit(":", 1)[1]  # one port per kind
            nas = agent(
                tmp_path, relay.listening["tunnel"][1], f"127.0.0.1:{service.getsockname()[1]}"
            )
            nursery.start_soon(nas.run)
            nursery.start_soon(echo_service, service)
            await nas.connected.wait()  # over IPv6; its data connections too
            hello = client_hello("nas1.link.test")
            v4, v6 = relay.listening["https"]
            assert await browse(v4, b"over IPv4", hello=hello) == hello + b"over IPv4"
            assert await browse(v6, b"over IPv6", hello=hello) == hello + b"over IPv6"
            nursery.cancel_scope.cancel()
    service.close()
