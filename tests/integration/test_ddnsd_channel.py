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

import ddnsd._store
import protocol
from config import DdnsdConfig, loads
from ddnsd._channel import MAX_UPDATES_IN_FLIGHT, UNIT
from ddnsd._daemon import Ddnsd, serve
from ddnsd._store import RefusedChange, UpdateResult, ZoneStore
from ddnsd._zone import Change
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
    await trio.to_thread.run_sync(make_registry, state / "registry.sqlite3", ("nas1", "nas2"))
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


async def test_a_message_that_fails_is_answered_alone_and_the_connection_goes_on(
    tmp_path: Path,
    ca: trustme.CA,
    relay_key: Ed25519PrivateKey,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with trio.fail_after(20):
        async with running(tmp_path, ca, relay_key) as daemon:
            known = daemon.store.knows_device

            async def failing_for_nas2(name: str) -> bool:
                if name == "nas2":
                    raise RuntimeError("injected failure")
                return await known(name)

            monkeypatch.setattr(daemon.store, "knows_device", failing_for_nas2)
            assert daemon.channel is not None
            async with relay(daemon, ca, relay_key) as tunnel:
                await tunnel.send_message(
                    protocol.DdnsUpdate(7, "nas2", "nas2", "A", ("198.51.100.9",))
                )
                reply = await tunnel.receive_message()
                assert isinstance(reply, protocol.Error) and reply.request_id == 7
                assert reply.error_code == protocol.ErrorCode.INTERNAL_ERROR
                # The same connection answers the next update.
                await tunnel.send_message(
                    protocol.DdnsUpdate(8, "nas1", "nas1", "A", ("198.51.100.8",))
                )
                assert await tunnel.receive_message() == protocol.Ack(8)
                assert answer(daemon, "nas1.dyn.test", "A").answer[0][0].address == "198.51.100.8"
            assert daemon.channel.boundary.errors == {UNIT: 1}
            failures = [r for r in caplog.records if r.name == "nascloud.boundary"]
            assert [r.getMessage() for r in failures] == [
                f"a unit of work failed ({UNIT}); it alone is dropped"
            ]
            assert failures[0].exc_info is not None  # with its traceback


async def test_a_flood_of_updates_is_throttled_not_given_a_task_each(
    tmp_path: Path,
    ca: trustme.CA,
    relay_key: Ed25519PrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    extra = 20
    with trio.fail_after(20):
        async with running(tmp_path, ca, relay_key) as daemon:
            release, all_in = trio.Event(), trio.Event()
            waiting = 0
            most = 0
            store_update = daemon.store.update

            async def held(device: str, changes: list[Change]) -> UpdateResult:
                nonlocal waiting, most
                waiting += 1
                most = max(most, waiting)
                if waiting == MAX_UPDATES_IN_FLIGHT:
                    all_in.set()
                try:
                    await release.wait()
                finally:
                    waiting -= 1
                return await store_update(device, changes)

            monkeypatch.setattr(daemon.store, "update", held)
            assert isinstance(daemon.store, ZoneStore) and daemon.channel is not None
            async with relay(daemon, ca, relay_key) as tunnel:
                count = MAX_UPDATES_IN_FLIGHT + extra
                for request_id in range(1, count + 1):
                    address = f"198.51.{request_id // 256}.{request_id % 256}"
                    await tunnel.send_message(
                        protocol.DdnsUpdate(request_id, "nas1", "nas1", "A", (address,))
                    )
                # Those beyond the cap are refused at once, each with its own id...
                refused = []
                for _ in range(extra):
                    reply = await tunnel.receive_message()
                    assert isinstance(reply, protocol.Error), reply
                    assert reply.error_code == protocol.ErrorCode.RATE_LIMITED
                    refused.append(reply.request_id)
                assert refused == list(range(MAX_UPDATES_IN_FLIGHT + 1, count + 1))
                await all_in.wait()
                assert most == waiting == MAX_UPDATES_IN_FLIGHT
                # ...and those in flight are stored and acknowledged once the store goes on.
                release.set()
                acks = {(await tunnel.receive_message()) for _ in range(MAX_UPDATES_IN_FLIGHT)}
                assert acks == {protocol.Ack(i) for i in range(1, MAX_UPDATES_IN_FLIGHT + 1)}
                assert daemon.channel.throttled == extra


async def test_a_change_the_zone_refuses_is_answered_refused(
    tmp_path: Path,
    ca: trustme.CA,
    relay_key: Ed25519PrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The codec refuses all the zone does, so the zone's own check is made stricter here.
    def refuse_txt(changes: list[Change]) -> None:
        if any(change.rrtype == "TXT" for change in changes):
            raise RefusedChange("no TXT today")

    monkeypatch.setattr(ddnsd._store, "_check_changes", refuse_txt)
    with trio.fail_after(20):
        async with (
            running(tmp_path, ca, relay_key) as daemon,
            relay(daemon, ca, relay_key) as tunnel,
        ):
            await tunnel.send_message(
                protocol.DdnsUpdate(3, "nas1", "_acme-challenge.nas1", "TXT", ("token",))
            )
            assert await tunnel.receive_message() == protocol.Error(
                protocol.ErrorCode.INVALID_REQUEST, "the zone cannot hold it", 3
            )
            assert daemon.channel is not None and daemon.channel.refused == 1
            assert not daemon.channel.boundary.errors
