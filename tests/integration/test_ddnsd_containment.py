"""ddnsd's boundaries: a unit of work (a datagram, a DNS message on TCP, an UPDATE, a transfer,
a NOTIFY reply, a DynDNS2 request) that fails unexpectedly is answered SERVFAIL (or 911, or
dropped), logged once and counted by unit, and ddnsd goes on serving everyone else."""

from __future__ import annotations

import logging
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import dns.message
import dns.rcode
import dns.update
import pytest
import trio

from config import DdnsdConfig, loads
from ddnsd._answer import Responder
from ddnsd._daemon import Ddnsd, serve
from ddnsd._dyndns2 import DynDns2
from ddnsd._rfc2136 import UpdateHandler
from ddnsd._xfr import Notifier, Transfers
from httpapi import render
from tests.ddnsd_harness import make_registry

BOOM = "boom.dyn.test"


@asynccontextmanager
async def running(tmp_path: Path, extra: str = "") -> AsyncIterator[Ddnsd]:
    state = tmp_path / "state"
    state.mkdir()
    await trio.to_thread.run_sync(make_registry, state / "registry.sqlite3", ("nas1",))
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
        [dyndns2]
        listen = "127.0.0.1:0"
        [transfer]
        allow = ["127.0.0.1/32"]
        {extra}
        """,
        "ddnsd.toml",
        tmp_path,
    )
    async with trio.open_nursery() as nursery:
        daemon: Ddnsd = await nursery.start(serve, config)
        yield daemon
        nursery.cancel_scope.cancel()


def _port(daemon: Ddnsd, what: str = "dns") -> int:
    return int(daemon.listening[what][0].rsplit(":", 1)[1])


async def udp(daemon: Ddnsd, wire: bytes) -> bytes | None:
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
        await sock.connect(("127.0.0.1", _port(daemon)))
        await sock.send(wire)
        with trio.move_on_after(2):
            return await sock.recv(4096)
    return None


async def tcp(stream: trio.SocketStream, wire: bytes) -> bytes:
    await stream.send_all(struct.pack("!H", len(wire)) + wire)
    received = b""
    while len(received) < 2 or len(received) < 2 + struct.unpack("!H", received[:2])[0]:
        chunk = await stream.receive_some(65536)
        assert chunk, "closed"
        received += chunk
    return received[2:]


def query(name: str = "dyn.test", rdtype: str = "SOA") -> bytes:
    wire: bytes = dns.message.make_query(name, rdtype).to_wire()
    return wire


def servfail_for(wire: bytes, reply: bytes | None) -> None:
    """SERVFAIL, with the query's ID, opcode and question echoed."""
    assert reply is not None
    assert reply[:2] == wire[:2] and reply[2] & 0x80
    assert reply[2] & 0x78 == wire[2] & 0x78  # the opcode
    assert reply[3] & 0x0F == dns.rcode.SERVFAIL
    assert reply[4:6] == wire[4:6] and reply[6:12] == b"\x00" * 6
    question_end = 12 + len(dns.message.from_wire(wire).question[0].name.to_digestable()) + 4
    assert reply[12:] == wire[12:question_end]


async def answered(daemon: Ddnsd) -> bool:
    reply = await udp(daemon, query())
    return reply is not None and dns.message.from_wire(reply).rcode() == dns.rcode.NOERROR


async def until(condition: Callable[[], bool]) -> None:
    """Wait for a condition of the daemon's parts (bounded by the test's fail_after)."""
    for _ in range(10_000):
        if condition():
            return
        await trio.sleep(0.01)


def counted(daemon: Ddnsd) -> str:
    return render(daemon.metrics()).decode()


@pytest.fixture
def responder_fails_for_boom(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Responder.respond

    def respond(self: Responder, wire: bytes, tcp: bool = False, client: str = "") -> bytes | None:
        if b"\x04boom" in wire:
            raise RuntimeError("injected failure")
        return original(self, wire, tcp, client)

    # On the class, before ddnsd starts: the UDP loop binds `respond` once.
    monkeypatch.setattr(Responder, "respond", respond)


async def test_a_failing_datagram_gets_servfail_alone(
    tmp_path: Path, responder_fails_for_boom: None, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(20):
        async with running(tmp_path) as daemon:
            with caplog.at_level(logging.ERROR, logger="nascloud.boundary"):
                wire = query(BOOM, "A")
                servfail_for(wire, await udp(daemon, wire))
            assert await answered(daemon)
            assert daemon.boundary.errors == {"dns_udp": 1}
            failures = [r for r in caplog.records if r.name == "nascloud.boundary"]
            assert len(failures) == 1 and failures[0].exc_info is not None
            assert 'nascloud_handler_errors_total{unit="dns_udp"} 1' in counted(daemon)
            assert daemon.dns.rcodes[dns.rcode.SERVFAIL] == 1


async def test_a_failing_tcp_message_gets_servfail_and_the_connection_goes_on(
    tmp_path: Path, responder_fails_for_boom: None
) -> None:
    with trio.fail_after(20):
        async with running(tmp_path) as daemon:
            stream = await trio.open_tcp_stream("127.0.0.1", _port(daemon))
            async with stream:
                wire = query(BOOM, "A")
                servfail_for(wire, await tcp(stream, wire))
                good = dns.message.from_wire(await tcp(stream, query()))
                assert good.rcode() == dns.rcode.NOERROR and good.answer
            assert daemon.boundary.errors == {"dns_tcp": 1}
            assert await answered(daemon)


async def test_a_failing_update_gets_servfail_on_udp_and_tcp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fail(self: UpdateHandler, message: bytes, client: str, tcp: bool) -> list[bytes]:
        raise RuntimeError("injected failure")

    monkeypatch.setattr(UpdateHandler, "handle", fail)
    wire = dns.update.UpdateMessage("dyn.test").to_wire()
    with trio.fail_after(20):
        async with running(tmp_path) as daemon:
            servfail_for(wire, await udp(daemon, wire))
            stream = await trio.open_tcp_stream("127.0.0.1", _port(daemon))
            async with stream:
                servfail_for(wire, await tcp(stream, wire))
                assert dns.message.from_wire(await tcp(stream, query())).answer
            assert await answered(daemon)
            assert daemon.boundary.errors == {"dns_update": 2}


async def test_a_failing_transfer_gets_servfail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fail(self: Transfers, message: bytes, client: str, tcp: bool) -> list[bytes]:
        raise RuntimeError("injected failure")

    monkeypatch.setattr(Transfers, "handle", fail)
    wire = query("dyn.test", "AXFR")
    with trio.fail_after(20):
        async with running(tmp_path) as daemon:
            stream = await trio.open_tcp_stream("127.0.0.1", _port(daemon))
            async with stream:
                servfail_for(wire, await tcp(stream, wire))
                assert dns.message.from_wire(await tcp(stream, query())).answer
            assert daemon.boundary.errors == {"dns_transfer": 1}


async def test_a_short_notify_reply_is_ignored_and_a_failing_notify_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secondary = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await secondary.bind(("127.0.0.1", 0))
    port = secondary.getsockname()[1]
    with secondary, trio.fail_after(20):
        async with running(tmp_path, f'notify = ["127.0.0.1:{port}"]') as daemon:
            notify, source = await secondary.recvfrom(4096)  # the first, at start
            # Two bytes with the right ID: too short to be a reply, and must not end ddnsd.
            await secondary.sendto(notify[:2], source)
            ack = dns.message.make_response(dns.message.from_wire(notify)).to_wire()
            await secondary.sendto(ack, source)
            await until(lambda: daemon.notifier.acknowledged > 0)
            assert await answered(daemon)
            assert not daemon.boundary.errors

            async def fail(self: Notifier, *args: object) -> bool:
                raise RuntimeError("injected failure")

            monkeypatch.setattr(Notifier, "_send_once", fail)
            daemon.zones.device_zone.serial += 1
            daemon.notifier.changed()
            await until(lambda: bool(daemon.boundary.errors))
            assert daemon.boundary.errors == {"dns_notify": 1}
            assert await answered(daemon)


async def test_a_failing_dyndns2_request_gets_911(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fail(self: DynDns2, *args: object) -> object:
        raise RuntimeError("injected failure")

    monkeypatch.setattr(DynDns2, "_handle", fail)
    with trio.fail_after(20):
        async with running(tmp_path) as daemon:
            host, port = daemon.listening["dyndns2"][0].rsplit(":", 1)
            stream = await trio.open_tcp_stream(host, int(port))
            async with stream:
                await stream.send_all(b"GET /nic/update HTTP/1.1\r\nHost: x\r\n\r\n")
                received = b""
                while b"\r\n\r\n" not in received or not received.endswith(b"\n"):
                    received += await stream.receive_some(4096)
            assert received.startswith(b"HTTP/1.1 200 ")
            assert received.endswith(b"\r\n\r\n911\n")
            assert daemon.boundary.errors == {"dyndns2": 1}
            assert await answered(daemon)
