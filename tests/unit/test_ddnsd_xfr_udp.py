"""IXFR over UDP on a real loopback socket (RFC 1995 section 2): an allowed secondary gets
the current SOA, signed, whatever serial it has; one outside the allow list gets REFUSED
with its question, as on TCP; never the bare 12-byte FORMERR of the query path."""

from __future__ import annotations

import socket

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.xfr
import dns.zone
import pytest
import trio

from ddnsd._answer import Responder
from ddnsd._rrl import RateLimiter
from ddnsd._server import DnsServer
from ddnsd._xfr import Transfers
from service import Boundary
from tests.unit.test_ddnsd_xfr import KEY, ORIGIN, zones_with


async def ask_udp(allow: tuple[str, ...], serial: int) -> tuple[bytes, bytes, int, Transfers]:
    """An IXFR from `serial` over UDP to a server on 127.0.0.1: the query, the reply, the
    zone's serial and the transfer handler."""
    zones = zones_with()
    transfers = Transfers(zones, allow, KEY)
    server = DnsServer(Responder(zones), RateLimiter(0), Boundary(), transfers=transfers.handle)
    copy = dns.zone.Zone(ORIGIN)
    query, _ = dns.xfr.make_query(copy, serial, keyring={KEY.name: KEY}, keyname=KEY.name)
    wire = query.to_wire()
    listening = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listening.bind(("127.0.0.1", 0))
    with listening, trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve_udp, listening)
            client = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
            with client:
                await client.connect(listening.getsockname())
                await client.send(wire)
                reply = await client.recv(65535)
            nursery.cancel_scope.cancel()
    return wire, reply, zones.device_zone.serial, transfers


@pytest.mark.parametrize("behind", [0, 1, 1000])
async def test_an_allowed_ixfr_over_udp_gets_the_current_soa_signed(behind: int) -> None:
    zone_serial = zones_with().device_zone.serial
    wire, reply, serial, transfers = await ask_udp(
        ("127.0.0.1/32",), (zone_serial - behind) % 2**32
    )
    query = dns.message.from_wire(wire, keyring={KEY.name: KEY})
    response = dns.message.from_wire(reply, keyring={KEY.name: KEY}, request_mac=query.mac)
    assert response.had_tsig and response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA and response.question == query.question
    [soa] = response.answer
    assert soa.rdtype == dns.rdatatype.SOA and soa[0].serial == serial
    assert transfers.counts == {"ixfr_udp": 1}


async def test_an_ixfr_over_udp_from_outside_the_allow_list_is_refused_with_its_question() -> None:
    wire, reply, _, transfers = await ask_udp(("192.0.2.0/24",), 1)
    assert len(reply) > 12  # not the bare header of the query path
    response = dns.message.from_wire(reply, keyring=False)
    assert response.rcode() == dns.rcode.REFUSED
    assert response.question == dns.message.from_wire(wire, keyring=False).question
    assert transfers.counts == {"refused": 1}
