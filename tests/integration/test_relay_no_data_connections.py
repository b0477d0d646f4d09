"""With data connections off, passed-through HTTPS travels in the tunnel's DATA frames."""

from __future__ import annotations

from pathlib import Path

import trio
import trustme

from config import AgentConfig, RelaydConfig, loads
from nasagent._agent import Agent
from protocol import public_key_bytes
from protocol.keys import load_or_create_key
from registry import Registry
from relayd._daemon import Relayd, serve
from tests.unit.test_relayd_sni import client_hello


async def test_bytes_pass_through_the_tunnel_when_data_connections_are_off(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cert = ca.issue_cert("relay.test")
    cert.private_key_pem.write_to_path(str(tmp_path / "relay.key"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "relay.crt"))
    key = load_or_create_key(tmp_path / "device.key")
    registry = Registry.open_sqlite(tmp_path / "registry.sqlite3")
    owner = await registry.create_account("o@example.org", "Owner")
    await registry.enrol_device(owner.account_id, "nas1", public_key_bytes(key))
    await registry.aclose()
    relay_config = loads(
        RelaydConfig,
        """
        [relay]
        name = "relay.test"
        state_dir = "relay"
        registry = "registry.sqlite3"
        [tunnel]
        listen = "127.0.0.1:0"
        cert_file = "relay.crt"
        key_file = "relay.key"
        data_connections = false
        [ingress]
        link_zone = "link.test"
        https_listen = "127.0.0.1:0"
        """,
        "relayd.toml",
        tmp_path,
    )
    service = trio.socket.socket()
    await service.bind(("127.0.0.1", 0))
    service.listen(1)
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
            relay: Relayd = await nursery.start(serve, relay_config)
            assert "data" not in relay.listening
            agent = Agent(
                loads(
                    AgentConfig,
                    f"""
                    [agent]
                    device_name = "nas1"
                    key_file = "device.key"
                    state_dir = "agent"
                    [relay]
                    addresses = ["{relay.listening["tunnel"][0]}"]
                    server_name = "relay.test"
                    ca_file = "ca.pem"
                    [services]
                    web = "127.0.0.1:{service.getsockname()[1]}"
                    """,
                    "agent.toml",
                    tmp_path,
                )
            )
            nursery.start_soon(agent.run)
            nursery.start_soon(nas_service)
            await agent.connected.wait()
            host, port = relay.listening["https"][0].rsplit(":", 1)
            browser = trio.socket.socket()
            await browser.connect((host, int(port)))
            await browser.send(hello)
            assert await browser.recv(100) == b"reply from the NAS"
            await echoed.wait()
            browser.close()
            assert relay.counts["https_connections"] == 1
            assert relay.data_port is None
            nursery.cancel_scope.cancel()
    service.close()
