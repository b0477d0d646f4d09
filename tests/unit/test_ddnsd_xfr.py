"""Zone transfers without sockets, read by dnspython's own transfer client (`dns.xfr.Inbound`,
which checks RFC 1995/5936 structure and multi-message TSIG, and applies what it reads to a
zone): an IXFR applied to the secondary's old copy gives exactly the zone an AXFR gives now;
a serial the journal does not reach (too far behind, or from before a restart) gets the whole
zone; the allow list, TCP only, and TSIG (missing, wrong, unknown, out of time) are refused."""

from __future__ import annotations

import time
from collections import deque
from typing import cast

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.tsig
import dns.xfr
import dns.zone
import pytest

from ddnsd._xfr import RRS_PER_MESSAGE, Transfers
from ddnsd._zone import MAX_JOURNAL, Change, SoaFields, Zone, ZoneSet

KEY = dns.tsig.Key("transfer.dyn.test", bytes(range(32)), dns.tsig.HMAC_SHA256)
ORIGIN = dns.name.from_text("dyn.test")


def zones_with(devices: int = 2) -> ZoneSet:
    zones = ZoneSet(
        Zone("dyn.test", SoaFields("ns1.dyn.test", "hostmaster.dyn.test"), ("ns1.dyn.test",))
    )
    for i in range(1, devices + 1):
        zones.add_device(f"nas{i}")
    zones.apply([Change("nas1", "A", 60, ("192.0.2.1",)), Change("nas1", "TXT", 60, ('a "q"',))])
    return zones


async def pull(
    transfers: Transfers,
    into: dns.zone.Zone,
    serial: int | None = 0,
    *,
    client: str = "127.0.0.1",
    key: dns.tsig.Key | None = KEY,
) -> None:
    """Transfer into `into` as a secondary would: IXFR from its serial (0: the one it has),
    AXFR when None or when it has none."""
    keyring = {key.name: key} if key is not None else None
    query, _ = dns.xfr.make_query(into, serial, keyring=keyring, keyname=key.name if key else None)
    replies = await transfers.handle(query.to_wire(), client, True)
    rdtype = query.question[0].rdtype
    context = None
    done = False
    with dns.xfr.Inbound(
        into, rdtype, query.authority[0][0].serial if query.authority else None
    ) as inbound:
        for wire in replies:
            assert not done, "messages after the transfer's end"
            response = dns.message.from_wire(
                wire,
                keyring=query.keyring,
                request_mac=query.mac,
                xfr=True,
                origin=ORIGIN,
                tsig_ctx=context,
                multi=True,
                one_rr_per_rrset=rdtype == dns.rdatatype.IXFR,
            )
            assert response.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(response.rcode())
            context = response.tsig_ctx
            done = inbound.process_message(response)
    assert done, "the transfer did not end"


async def fresh_copy(transfers: Transfers) -> dns.zone.Zone:
    copy = dns.zone.Zone(ORIGIN)
    await pull(transfers, copy, None)
    return copy


def serial_of(copy: dns.zone.Zone) -> int:
    return int(copy.find_rdataset("@", "SOA")[0].serial)


def change(zones: ZoneSet, step: int) -> None:
    zones.apply(
        [
            Change("nas1", "A", 60, (f"192.0.2.{step % 250 + 1}",)),
            Change("nas2", "AAAA", 300 + step, (f"2001:db8::{step:x}",)),
            Change("_acme-challenge.nas1", "TXT", 60, (f"token-{step}",) if step % 2 else ()),
        ]
    )


async def test_an_ixfr_applied_to_the_old_copy_is_the_zone_an_axfr_gives() -> None:
    zones = zones_with()
    transfers = Transfers(zones, ("127.0.0.1/32",), KEY)
    secondary = await fresh_copy(transfers)
    assert serial_of(secondary) == zones.device_zone.serial
    for step in range(1, 6):  # several steps at once, then one at a time
        change(zones, step)
    await pull(transfers, secondary)
    assert secondary == await fresh_copy(transfers)
    for step in range(6, 9):
        change(zones, step)
        await pull(transfers, secondary)
        assert serial_of(secondary) == zones.device_zone.serial
        assert secondary == await fresh_copy(transfers)
    zones.remove_device("nas2")  # a deletion is journalled too
    await pull(transfers, secondary)
    assert secondary == await fresh_copy(transfers)
    assert secondary.get_node("nas2") is None
    assert transfers.counts == {"axfr": 6, "ixfr": 5}


async def test_an_up_to_date_secondary_gets_one_soa() -> None:
    zones = zones_with()
    transfers = Transfers(zones, ("127.0.0.1/32",), KEY)
    secondary = await fresh_copy(transfers)
    query, _ = dns.xfr.make_query(secondary, keyring={KEY.name: KEY}, keyname=KEY.name)
    [wire] = await transfers.handle(query.to_wire(), "127.0.0.1", True)
    response = dns.message.from_wire(wire, keyring={KEY.name: KEY}, request_mac=query.mac)
    assert [rrset.rdtype for rrset in response.answer] == [dns.rdatatype.SOA]
    assert transfers.counts == {"axfr": 1, "ixfr_current": 1}


async def test_a_secondary_further_behind_than_the_journal_gets_the_whole_zone() -> None:
    zones = zones_with()
    kept = 20  # a short journal, as MAX_JOURNAL's is (the Knot test goes past the real one)
    zones.device_zone.journal = deque(maxlen=kept)
    transfers = Transfers(zones, ("127.0.0.1/32",), KEY)
    behind = await fresh_copy(transfers)
    change(zones, 1)
    just_in = await fresh_copy(transfers)  # one step newer: the oldest the journal keeps
    for step in range(2, kept + 2):  # behind's serial drops out of the journal
        change(zones, step)
    await pull(transfers, behind)
    assert transfers.counts["ixfr_whole"] == 1
    assert behind == await fresh_copy(transfers)
    await pull(transfers, just_in)
    assert just_in == await fresh_copy(transfers)
    assert transfers.counts["ixfr"] == 1


def test_the_journal_keeps_what_the_docs_say() -> None:
    assert MAX_JOURNAL == 1000  # docs/ddnsd.md: "an in-memory journal of the last 1000 changes"
    assert zones_with().device_zone.journal.maxlen == MAX_JOURNAL


async def test_after_a_restart_the_journal_is_empty_and_the_whole_zone_is_sent() -> None:
    zones = zones_with()
    secondary = await fresh_copy(Transfers(zones, ("127.0.0.1/32",), KEY))
    change(zones, 1)
    zones.device_zone.journal.clear()  # what ZoneStore.load leaves after a restart
    transfers = Transfers(zones, ("127.0.0.1/32",), KEY)
    await pull(transfers, secondary)
    assert secondary == await fresh_copy(transfers)
    assert transfers.counts == {"ixfr_whole": 1, "axfr": 1}


async def test_a_large_zone_spans_messages_each_signed_in_sequence() -> None:
    zones = zones_with(devices=RRS_PER_MESSAGE + 100)
    zones.apply(
        [
            Change(f"nas{i}", "A", 60, (f"198.51.100.{i % 250}",))
            for i in range(2, RRS_PER_MESSAGE + 101)
        ]
    )
    transfers = Transfers(zones, ("127.0.0.1/32",), KEY)
    query = dns.message.make_query(ORIGIN, dns.rdatatype.AXFR)
    query.use_tsig({KEY.name: KEY}, keyname=KEY.name)
    replies = await transfers.handle(query.to_wire(), "127.0.0.1", True)
    assert len(replies) > 1
    copy = await fresh_copy(transfers)  # Inbound verified every message's TSIG
    assert copy.find_rdataset("nas599", "A")[0].address == "198.51.100.99"  # 599 % 250


def rcode_and_tsig_error(wire: bytes) -> tuple[int, int | None]:
    response = dns.message.from_wire(wire, keyring=False)
    tsig = cast(dns.rdtypes.ANY.TSIG.TSIG, response.tsig[0]) if response.tsig else None
    return response.rcode(), tsig.error if tsig is not None else None


def axfr_query(key: dns.tsig.Key | None, rdtype: str = "AXFR") -> bytes:
    query = dns.message.make_query(ORIGIN, rdtype)
    if key is not None:
        query.use_tsig({key.name: key}, keyname=key.name, algorithm=key.algorithm)
    wire: bytes = query.to_wire()
    return wire


@pytest.mark.parametrize(
    ("client", "tcp"),
    [
        ("127.0.0.2", True),  # outside the allow list, even on loopback
        ("10.0.0.1", True),
        ("::1", True),
        ("::ffff:127.0.0.2", True),
        ("127.0.0.1", False),  # AXFR over UDP: refused (IXFR: the current SOA, below)
        ("not an address", True),
    ],
)
async def test_a_transfer_outside_the_allow_list_or_over_udp_is_refused(
    client: str, tcp: bool
) -> None:
    transfers = Transfers(zones_with(), ("127.0.0.1/32", "192.0.2.0/24"), KEY)
    kinds = ("AXFR", "IXFR") if client != "127.0.0.1" else ("AXFR",)
    for rdtype in kinds:
        [reply] = await transfers.handle(axfr_query(KEY, rdtype), client, tcp)
        assert rcode_and_tsig_error(reply)[0] == dns.rcode.REFUSED
    assert transfers.counts == {"refused": len(kinds)}


@pytest.mark.parametrize("client", ["127.0.0.1", "::ffff:127.0.0.1", "192.0.2.77"])
async def test_listed_clients_may_transfer(client: str) -> None:
    transfers = Transfers(zones_with(), ("127.0.0.1/32", "192.0.2.0/24"), KEY)
    copy = dns.zone.Zone(ORIGIN)
    await pull(transfers, copy, None, client=client)
    assert copy.find_rdataset("nas1", "A")[0].address == "192.0.2.1"


async def test_tsig_is_required_and_checked_when_a_key_is_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    transfers = Transfers(zones_with(), ("127.0.0.1/32",), KEY)
    wrong = dns.tsig.Key(KEY.name, b"\x01" * 32, KEY.algorithm)
    stranger = dns.tsig.Key("stranger.dyn.test", KEY.secret, KEY.algorithm)
    results = [
        rcode_and_tsig_error((await transfers.handle(axfr_query(k), "127.0.0.1", True))[0])
        for k in (None, wrong, stranger)
    ]
    assert results == [
        (dns.rcode.NOTAUTH, None),  # unsigned: no zone for it
        (dns.rcode.NOTAUTH, dns.rcode.BADSIG),
        (dns.rcode.NOTAUTH, dns.rcode.BADKEY),
    ]
    signed_then = axfr_query(KEY)  # our clock steps an hour forward
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 3600)
    [reply] = await transfers.handle(signed_then, "127.0.0.1", True)
    assert rcode_and_tsig_error(reply) == (dns.rcode.NOTAUTH, dns.rcode.BADTIME)
    assert transfers.counts == {"notauth": 4}


async def test_without_a_key_unsigned_transfers_are_served() -> None:
    transfers = Transfers(zones_with(), ("127.0.0.1/32",), None)
    copy = dns.zone.Zone(ORIGIN)
    await pull(transfers, copy, None, key=None)
    assert copy.find_rdataset("nas1", "TXT")[0].strings == (b'a "q"',)


@pytest.mark.parametrize("tcp", [False, True])
async def test_a_signed_soa_query_is_answered_signed_on_either_transport(tcp: bool) -> None:
    # A secondary with a key checks the serial with a signed SOA query before it transfers
    # (Knot and NSD both); an unsigned answer fails its TSIG check ("failed to verify TSIG").
    zones = zones_with()
    transfers = Transfers(zones, ("127.0.0.1/32",), KEY)
    query = dns.message.make_query(ORIGIN, dns.rdatatype.SOA)
    query.use_tsig({KEY.name: KEY}, keyname=KEY.name)
    [wire] = await transfers.handle(query.to_wire(), "127.0.0.1", tcp)
    response = dns.message.from_wire(wire, keyring={KEY.name: KEY}, request_mac=query.mac)
    assert response.had_tsig  # and verified while read
    assert response.rcode() == dns.rcode.NOERROR and response.flags & dns.flags.AA
    [soa] = response.answer
    assert soa[0].serial == zones.device_zone.serial
    wrong = dns.tsig.Key(KEY.name, b"\x01" * 32, KEY.algorithm)
    query.use_tsig({wrong.name: wrong}, keyname=wrong.name)
    [reply] = await transfers.handle(query.to_wire(), "127.0.0.1", tcp)
    assert rcode_and_tsig_error(reply) == (dns.rcode.NOTAUTH, dns.rcode.BADSIG)
    [reply] = await transfers.handle(axfr_query(KEY, "SOA"), "127.0.0.2", tcp)
    assert rcode_and_tsig_error(reply)[0] == dns.rcode.REFUSED
    assert transfers.counts == {"soa": 1, "notauth": 1, "refused": 1}
