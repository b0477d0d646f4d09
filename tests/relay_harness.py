"""relayd and agents in the test process, for tests that need to look inside them."""

from __future__ import annotations

import ssl
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio
import trustme
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import protocol
from config import AgentConfig, RelaydConfig, loads
from nasagent._agent import Agent
from protocol import public_key_bytes
from registry import Registry
from tunnel import Tunnel, load_or_create_key, open_tunnel


async def prepare(tmp_path: Path, devices: tuple[str, ...] = ("nas1",)) -> trustme.CA:
    """A CA, the relay's certificate, and the devices enrolled with their agents' keys."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cert = ca.issue_cert("relay.test")
    cert.private_key_pem.write_to_path(str(tmp_path / "relay.key"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "relay.crt"))
    registry = Registry.open_sqlite(tmp_path / "registry.sqlite3")
    owner = await registry.create_account("o@example.org", "Owner")
    for device in devices:
        key = load_or_create_key(tmp_path / f"{device}.key")
        await registry.enrol_device(owner.account_id, device, public_key_bytes(key))
    await registry.aclose()
    return ca


def relay_toml(tunnel: str = "", ingress: str = "") -> str:
    """relayd's config for a test: tunnel, HTTPS and metrics on free loopback ports, the test
    certificates from `prepare`. `tunnel` adds [tunnel] keys; `ingress` adds [ingress] keys and
    may open further tables."""
    return textwrap.dedent(f"""
        [relay]
        name = "relay.test"
        state_dir = "relay"
        registry = "registry.sqlite3"
        metrics_listen = "127.0.0.1:0"
        [tunnel]
        listen = "127.0.0.1:0"
        cert_file = "relay.crt"
        key_file = "relay.key"
        {tunnel}
        [ingress]
        link_zone = "link.test"
        https_listen = "127.0.0.1:0"
        {ingress}
        """)


def relay_config(tmp_path: Path, tunnel: str = "", ingress: str = "") -> RelaydConfig:
    return loads(RelaydConfig, relay_toml(tunnel, ingress), "relayd.toml", tmp_path)


def agent(
    tmp_path: Path, tunnel_address: str, service: str, device: str = "nas1", extra: str = ""
) -> Agent:
    """An agent for `device`, trusting the test CA unless `extra` says otherwise."""
    trust = extra if "pinned_sha256" in extra else 'ca_file = "ca.pem"'
    return Agent(
        loads(
            AgentConfig,
            f"""
            [agent]
            device_name = "{device}"
            key_file = "{device}.key"
            state_dir = "agent-{device}"
            {"proxy_protocol = true" if "proxy_protocol" in extra else ""}
            [relay]
            addresses = ["{tunnel_address}"]
            server_name = "relay.test"
            {trust}
            [services]
            web = "{service}"
            [reconnect]
            initial_delay_s = 0.05
            max_delay_s = 0.2
            """,
            "agent.toml",
            tmp_path,
        )
    )


async def echo_service(service: trio.socket.SocketType) -> None:
    """The NAS stand-in: echoes every connection until its end."""

    async def echo(conn: trio.socket.SocketType) -> None:
        with conn:
            while data := await conn.recv(65536):
                await conn.send(data)

    async with trio.open_nursery() as nursery:
        while True:
            conn, _ = await service.accept()
            nursery.start_soon(echo, conn)


async def browse(
    address: str,
    payload: bytes,
    *,
    name: str = "nas1.link.test",
    hello: bytes | None = None,
    timeout_s: float = 10,
) -> bytes:
    """A browser connection to relayd's HTTPS `address` ("host:port"): a ClientHello for
    `name` (or `hello` as it is) and `payload`; what came back (as much as was sent, or less
    if the relay closed or reset it)."""
    from tests.unit.test_relayd_sni import client_hello

    host, port = address.rsplit(":", 1)
    hello = hello if hello is not None else client_hello(name)
    received = b""
    stream = await trio.open_tcp_stream(host.strip("[]"), int(port))
    async with stream:
        await stream.send_all(hello + payload)
        with trio.fail_after(timeout_s):
            while len(received) < len(hello) + len(payload):
                try:
                    chunk = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    break
                if not chunk:
                    break
                received += chunk
    return received


async def listening_service() -> trio.socket.SocketType:
    service = trio.socket.socket()
    await service.bind(("127.0.0.1", 0))
    service.listen(16)
    return service


@asynccontextmanager
async def device_tunnel(
    tmp_path: Path,
    tunnel_address: str,
    name: str,
    key: Ed25519PrivateKey,
    capabilities: frozenset[str] = frozenset(),
) -> AsyncIterator[Tunnel]:
    """A tunnel to the relay as device `name`, the way an agent opens one (over TLS trusting
    the test CA, offering `capabilities`), for tests that play the agent themselves."""
    host, port = tunnel_address.rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    stream = trio.SSLStream(
        await trio.open_tcp_stream(host, int(port)), context, server_hostname="relay.test"
    )
    conn = protocol.Connection(
        protocol.Role.CLIENT,
        server_name="relay.test",
        credentials=protocol.Credentials(protocol.AuthKind.DEVICE, name, key),
        settings=protocol.Settings(capabilities=capabilities),
    )
    async with open_tunnel(stream, conn) as tunnel:
        yield tunnel
