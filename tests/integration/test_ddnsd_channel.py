"""Updates from relayd reach ddnsd over the nascloud protocol on TLS, authenticated as a
service; anyone else is refused."""

from __future__ import annotations

import base64
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import dns.message
import pytest
import trio
import trustme
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import protocol
from config import DdnsdConfig, loads
from ddnsd._daemon import Ddnsd, serve
from tests.ddnsd_harness import make_registry
from tunnel import Tunnel, open_tunnel

SERVER_NAME = "ddnsd.test"


@pytest.fixture
def relay_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@asynccontextmanager
async def running(
    tmp_path: Path, ca: trustme.CA, relay_key: Ed25519PrivateKey
) -> AsyncIterator[Ddnsd]:
    state = tmp_path / "state"
    state.mkdir()
    await trio.to_thread.run_sync(make_registry, state / "registry.sqlite3", ("nas1",))
    cert = ca.issue_cert(SERVER_NAME)
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    public = base64.b64encode(protocol.public_key_bytes(relay_key)).decode()
    config = loads(
        DdnsdConfig,
        f"""
        [ddnsd]
        state_dir = "state"
        registry = "state/registry.sqlite3"
        [zone]
        name = "dyn.test"
        primary_ns = "ns1.dyn.test"
        hostmaster = "hostmaster.dyn.test"
        [dns]
        listen = ["127.0.0.1:0"]
        [protocol]
        listen = "127.0.0.1:0"
        server_name = "{SERVER_NAME}"
        cert_file = "cert.pem"
        key_file = "key.pem"
        [protocol.services]
        relayd = "{public}"
        """,
        "ddnsd.toml",
        tmp_path,
    )
    async with trio.open_nursery() as nursery:
        daemon: Ddnsd = await nursery.start(serve, config)
        yield daemon
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def relay(
    daemon: Ddnsd, ca: trustme.CA, key: Ed25519PrivateKey, name: str = "relayd"
) -> AsyncIterator[Tunnel]:
    host, port = daemon.listening["protocol"][0].rsplit(":", 1)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    stream = trio.SSLStream(
        await trio.open_tcp_stream(host, int(port)), context, server_hostname=SERVER_NAME
    )
    conn = protocol.Connection(
        protocol.Role.CLIENT,
        server_name=SERVER_NAME,
        credentials=protocol.Credentials(protocol.AuthKind.SERVICE, name, key),
    )
    async with open_tunnel(stream, conn) as tunnel:
        yield tunnel


def answer(daemon: Ddnsd, name: str, rdtype: str) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    return dns.message.from_wire(daemon.responder.respond(query.to_wire()) or b"")


async def test_relay_updates_are_acknowledged_and_answered(
    tmp_path: Path, ca: trustme.CA, relay_key: Ed25519PrivateKey
) -> None:
    with trio.fail_after(20):
        async with (
            running(tmp_path, ca, relay_key) as daemon,
            relay(daemon, ca, relay_key) as tunnel,
        ):
            await tunnel.send_message(
                protocol.DdnsUpdate(7, "nas1", "nas1", "A", ("198.51.100.8",), 60, "198.51.100.8")
            )
            assert await tunnel.receive_message() == protocol.Ack(7)
            assert answer(daemon, "nas1.dyn.test", "A").answer[0][0].address == "198.51.100.8"
            await tunnel.send_message(
                protocol.DdnsUpdate(8, "nas1", "_acme-challenge.nas1", "TXT", ("token",))
            )
            assert await tunnel.receive_message() == protocol.Ack(8)
            # A device the registry does not know is refused, with the request's id.
            await tunnel.send_message(protocol.DdnsUpdate(9, "ghost", "ghost", "A", ("192.0.2.1",)))
            reply = await tunnel.receive_message()
            assert isinstance(reply, protocol.Error) and reply.request_id == 9
            assert reply.error_code == protocol.ErrorCode.NOT_PERMITTED
            assert answer(daemon, "ghost.dyn.test", "A").rcode() == 3  # NXDOMAIN


async def test_a_service_with_the_wrong_key_or_name_is_refused(
    tmp_path: Path, ca: trustme.CA, relay_key: Ed25519PrivateKey
) -> None:
    with trio.fail_after(20):
        async with running(tmp_path, ca, relay_key) as daemon:
            for key, name in ((Ed25519PrivateKey.generate(), "relayd"), (relay_key, "intruder")):
                with pytest.raises(protocol.RemoteProtocolError) as info:
                    async with relay(daemon, ca, key, name):
                        pass  # pragma: no cover
                assert info.value.error_code == protocol.ErrorCode.AUTHENTICATION_FAILED
            # A device key is no service credential either.
            host, port = daemon.listening["protocol"][0].rsplit(":", 1)
            context = ssl.create_default_context()
            ca.configure_trust(context)
            stream = trio.SSLStream(
                await trio.open_tcp_stream(host, int(port)), context, server_hostname=SERVER_NAME
            )
            device = protocol.Connection(
                protocol.Role.CLIENT,
                server_name=SERVER_NAME,
                credentials=protocol.Credentials(protocol.AuthKind.DEVICE, "relayd", relay_key),
            )
            with pytest.raises(protocol.RemoteProtocolError):
                async with open_tunnel(stream, device):
                    pass  # pragma: no cover
