"""With proxy_protocol on, the NAS's service learns the browser's address from a PROXY v2
header, followed by the browser's bytes untouched."""

from __future__ import annotations

import socket
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


async def test_the_service_gets_a_proxy_header_then_the_client_hello(tmp_path: Path) -> None:
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
            relay: Relayd = await nursery.start(serve, relay_config)
            agent_config = loads(
                AgentConfig,
                f"""
                [agent]
                device_name = "nas1"
                key_file = "device.key"
                state_dir = "agent"
                proxy_protocol = true
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
            agent = Agent(agent_config)
            nursery.start_soon(agent.run)
            nursery.start_soon(nas_service)
            await agent.connected.wait()
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
