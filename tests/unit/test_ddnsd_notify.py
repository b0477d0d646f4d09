"""NOTIFY (RFC 1996) as docs/ddnsd.md promises it: after a change, up to five tries two seconds
apart until the secondary acknowledges, then silence until the next change.

The secondary is a UDP socket of the test's own on 127.0.0.1 port 0 (bound before the
Notifier is given its address), ignoring as many NOTIFYs as the test says. Trio's mock clock
jumps the waits: the ten seconds of five unanswered tries take none."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rdatatype
import dns.tsig
import pytest
import trio
import trio.testing

from config import HostPort
from ddnsd._xfr import NOTIFY_RETRY_S, NOTIFY_TRIES, Notifier
from ddnsd._zone import Change, SoaFields, Zone, ZoneSet
from service import Boundary

KEY = dns.tsig.Key("transfer.dyn.test", bytes(range(32)), dns.tsig.HMAC_SHA256)


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


@dataclass
class Secondary:
    """Answers a NOTIFY only once it has ignored `ignore` of them; `wrong_id` replies to
    the ignored ones with another ID (which is no acknowledgement)."""

    sock: trio.socket.SocketType
    ignore: int = 0
    wrong_id: bool = False
    received: list[tuple[float, dns.message.Message]] = field(default_factory=list)

    @property
    def times(self) -> list[float]:
        return [at for at, _ in self.received]

    @property
    def serials(self) -> list[int]:
        return [message.answer[0][0].serial for _, message in self.received]

    async def serve(self) -> None:
        while True:
            data, peer = await self.sock.recvfrom(4096)
            message = dns.message.from_wire(data, keyring={KEY.name: KEY})
            self.received.append((trio.current_time(), message))
            answer = len(self.received) > self.ignore
            if answer or self.wrong_id:
                reply = dns.message.make_response(message)
                reply.set_opcode(dns.opcode.NOTIFY)
                if not answer:
                    reply.id = (message.id + 1) % 65536
                await self.sock.sendto(reply.to_wire(), peer)


def device_zones() -> ZoneSet:
    zones = ZoneSet(Zone("dyn.test", SoaFields("ns1.dyn.test", "hostmaster.dyn.test"), ()))
    zones.add_device("nas1")
    return zones


@asynccontextmanager
async def notifying(secondary: Secondary, zones: ZoneSet) -> AsyncIterator[Notifier]:
    port = secondary.sock.getsockname()[1]
    notifier = Notifier(zones, (HostPort("127.0.0.1", port),), KEY, Boundary())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(secondary.serve)
        await nursery.start(notifier.run)
        yield notifier
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def secondary_socket() -> AsyncIterator[trio.socket.SocketType]:
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
        await sock.bind(("127.0.0.1", 0))
        yield sock


def test_the_promise_is_five_tries_two_seconds_apart() -> None:
    assert (NOTIFY_TRIES, NOTIFY_RETRY_S) == (5, 2.0)  # docs/ddnsd.md, "Secondaries"


async def test_never_acknowledged_is_exactly_five_tries_two_seconds_apart(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with secondary_socket() as sock:
        secondary = Secondary(sock, ignore=1000)
        async with notifying(secondary, device_zones()) as notifier:
            await trio.sleep(600)  # long after any retry could still come
        start = secondary.times[0]
        assert [round(t - start, 6) for t in secondary.times] == [0.0, 2.0, 4.0, 6.0, 8.0]
        assert (notifier.sent, notifier.acknowledged) == (5, 0)
        assert "no answer to NOTIFY for dyn.test" in caplog.text


@pytest.mark.parametrize("ignore", [0, 1, 2, 4])
async def test_the_tries_stop_at_the_acknowledgement(
    autojump_clock: trio.testing.MockClock, ignore: int
) -> None:
    async with secondary_socket() as sock:
        secondary = Secondary(sock, ignore=ignore)
        async with notifying(secondary, device_zones()) as notifier:
            await trio.sleep(600)
        start = secondary.times[0]
        assert [round(t - start, 6) for t in secondary.times] == [
            2.0 * i for i in range(ignore + 1)
        ]
        assert (notifier.sent, notifier.acknowledged) == (ignore + 1, 1)


async def test_a_reply_with_another_id_is_no_acknowledgement(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with secondary_socket() as sock:
        secondary = Secondary(sock, ignore=2, wrong_id=True)
        async with notifying(secondary, device_zones()) as notifier:
            await trio.sleep(600)
        assert len(secondary.received) == 3
        assert notifier.acknowledged == 1


async def test_each_change_starts_a_new_round_with_the_new_serial(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    zones = device_zones()
    async with secondary_socket() as sock:
        secondary = Secondary(sock, ignore=0)
        async with notifying(secondary, zones) as notifier:
            await trio.sleep(600)
            first = zones.device_zone.serial
            zones.apply([Change("nas1", "A", 60, ("192.0.2.1",))])
            notifier.changed()
            await trio.sleep(600)
            secondary.ignore = 1000  # the secondary goes away: five more, then silence
            zones.apply([Change("nas1", "A", 60, ("192.0.2.2",))])
            notifier.changed()
            await trio.sleep(600)
        serial = zones.device_zone.serial
        assert secondary.serials == [first, first + 1, *[serial] * 5]
        assert (notifier.sent, notifier.acknowledged) == (7, 2)


async def test_a_notify_is_signed_carries_the_soa_and_is_authoritative(
    autojump_clock: trio.testing.MockClock,
) -> None:
    zones = device_zones()
    async with secondary_socket() as sock:
        secondary = Secondary(sock)
        async with notifying(secondary, zones):
            await trio.sleep(10)
        [(_, message)] = secondary.received
        assert message.opcode() == dns.opcode.NOTIFY
        assert message.flags & dns.flags.AA and not message.flags & dns.flags.QR
        assert message.had_tsig and message.keyname == KEY.name  # verified when read
        assert message.question[0].name == dns.name.from_text("dyn.test")
        assert message.question[0].rdtype == dns.rdatatype.SOA
        assert message.answer[0][0].serial == zones.device_zone.serial


async def test_a_silent_secondary_holds_up_no_other(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with secondary_socket() as silent_sock, secondary_socket() as good_sock:
        silent, good = Secondary(silent_sock, ignore=1000), Secondary(good_sock)
        targets = tuple(HostPort("127.0.0.1", s.getsockname()[1]) for s in (silent_sock, good_sock))
        notifier = Notifier(device_zones(), targets, KEY, Boundary())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(silent.serve)
            nursery.start_soon(good.serve)
            await nursery.start(notifier.run)
            await trio.sleep(1)  # within the silent one's first wait
            assert len(good.received) == 1 and notifier.acknowledged == 1
            await trio.sleep(600)
            nursery.cancel_scope.cancel()
        assert (len(silent.received), len(good.received)) == (5, 1)
