"""ddnsd under hostile clients: rate limiting per prefix, garbage, slow and oversized TCP,
too many TCP clients, stale TSIG. Each one gets exactly its answer (or the silence documented
for it); others are served."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.tsigkeyring
import dns.update
import pytest

from tests.ddnsd_harness import Ddnsd, DdnsdOptions, running_ddnsd


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Ddnsd]:
    with running_ddnsd(tmp_path, DdnsdOptions(rrl_rate=10)) as daemon:
        yield daemon


@pytest.fixture
def ddnsd(tmp_path: Path) -> Iterator[Ddnsd]:
    with running_ddnsd(tmp_path) as daemon:
        yield daemon


def query_ok(daemon: Ddnsd, source: str = "127.0.0.1") -> bool:
    query = dns.message.make_query("dyn.test", "SOA")
    try:
        response = dns.query.udp(query, "127.0.0.1", port=daemon.dns_port, timeout=2, source=source)
    except dns.exception.Timeout:
        return False
    return response.rcode() == dns.rcode.NOERROR and bool(response.answer)


def test_rate_limit_per_prefix_with_slip(limited: Ddnsd) -> None:
    full = truncated = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.5)
        query = dns.message.make_query("dyn.test", "SOA")
        for i in range(100):
            query.id = i
            sock.sendto(query.to_wire(), ("127.0.0.1", limited.dns_port))
        try:
            while True:
                response = dns.message.from_wire(sock.recv(4096))
                if response.flags & dns.flags.TC:
                    truncated += 1
                else:
                    full += 1
        except TimeoutError:
            pass
    assert 10 <= full <= 15  # the bucket, plus what refilled during the burst
    assert 30 <= truncated <= 50  # every second dropped answer slips out truncated
    # Another /24 has its own bucket and is answered at once.
    assert query_ok(limited, source="127.0.1.1")


#: What each hostile datagram gets: FORMERR with the header alone where a header can be read
#: and the message is at fault; silence for what has no header or is itself a response (an
#: answer to a response could loop between two servers).
SILENCE = None


def _formerr(packet: bytes, flags: int = 0x81) -> bytes:
    return packet[:2] + bytes([flags, dns.rcode.FORMERR]) + b"\x00" * 8


GOOD = dns.message.make_query("dyn.test", "SOA").to_wire()
HEADER = GOOD[:12]
#: dnslib parses these names and cannot encode them again: a 64-octet label (82 bytes in
#: all), and 128 one-letter labels (a 257-octet name). Each once stopped ddnsd.
LONG_LABEL = HEADER + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01"
LONG_NAME = HEADER + b"\x01a" * 128 + b"\x00\x00\x01\x00\x01"
HOSTILE: list[tuple[str, bytes, bytes | None]] = [
    ("empty", b"", SILENCE),
    ("one byte", b"\x00", SILENCE),
    ("short of a header", b"\xff" * 11, SILENCE),
    ("a header claiming a question that is not there", HEADER, _formerr(HEADER)),
    ("a pointer to itself", HEADER + b"\xc0\x0c\x00\x06\x00\x01", _formerr(HEADER)),
    ("a label running past the end", HEADER + b"\x3f" + b"a" * 10, _formerr(HEADER)),
    ("a response, not a query", bytes([GOOD[0], GOOD[1], 0x80]) + GOOD[3:], SILENCE),
    ("counting bytes", b"\x12\x34" + bytes(range(256)) * 4, _formerr(b"\x12\x34", 0x80)),
    ("a 64-octet label", LONG_LABEL, _formerr(HEADER)),
    ("a 257-octet name", LONG_NAME, _formerr(HEADER)),
]


def test_hostile_datagrams_get_exactly_their_answer(ddnsd: Ddnsd) -> None:
    assert len(LONG_LABEL) == 82
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        for why, packet, expected in HOSTILE:
            sock.sendto(packet, ("127.0.0.1", ddnsd.dns_port))
            try:
                reply: bytes | None = sock.recv(4096)
            except TimeoutError:
                reply = SILENCE
            assert reply == expected, why
            assert query_ok(ddnsd), why
    assert ddnsd.process.poll() is None
    lines = [line for line in ddnsd.log().splitlines() if "malformed message" in line]
    assert lines, ddnsd.log()
    assert all("127.0.0.0/24" in line and "127.0.0.1" not in line for line in lines)


def test_hostile_messages_on_tcp_get_exactly_their_answer(ddnsd: Ddnsd) -> None:
    with socket.create_connection(("127.0.0.1", ddnsd.dns_port)) as sock:
        sock.settimeout(5)
        for why, packet, expected in HOSTILE:
            if expected is SILENCE:
                continue  # on TCP silence is no answer at all: nothing to wait for
            sock.sendall(struct.pack("!H", len(packet)) + packet)
            size = struct.unpack("!H", sock.recv(2, socket.MSG_WAITALL))[0]
            assert sock.recv(size, socket.MSG_WAITALL) == expected, why
        # The same connection goes on being served.
        sock.sendall(struct.pack("!H", len(GOOD)) + GOOD)
        size = struct.unpack("!H", sock.recv(2, socket.MSG_WAITALL))[0]
        reply = dns.message.from_wire(sock.recv(size, socket.MSG_WAITALL))
        assert reply.rcode() == dns.rcode.NOERROR and reply.answer
    assert ddnsd.process.poll() is None
    assert query_ok(ddnsd)


def test_slow_or_lying_tcp_clients_are_cut_off_and_others_served(ddnsd: Ddnsd) -> None:
    huge = socket.create_connection(("127.0.0.1", ddnsd.dns_port))
    huge.sendall(b"\xff\xff" + b"\x00" * 10)  # claims 65535 bytes, sends 10
    slow = socket.create_connection(("127.0.0.1", ddnsd.dns_port))
    query = dns.message.make_query("dyn.test", "SOA").to_wire()
    message = struct.pack("!H", len(query)) + query
    started = time.monotonic()
    # The slow one trickles a byte every half second; the server keeps answering everyone
    # else, and cuts it off once a message has taken longer than the 2 s idle timeout.
    cut_off = False
    for byte in message:
        try:
            slow.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            cut_off = True
            break
        assert query_ok(ddnsd)
        time.sleep(0.5)
    assert cut_off
    assert 1.5 <= time.monotonic() - started < 6
    huge.settimeout(5)
    assert huge.recv(4096) == b""  # closed too: the 65535 bytes never came
    huge.close()
    slow.close()


def test_tcp_client_cap(tmp_path: Path) -> None:
    with running_ddnsd(tmp_path, DdnsdOptions(max_tcp_clients=3)) as daemon:
        query = dns.message.make_query("dyn.test", "SOA")
        held = [socket.create_connection(("127.0.0.1", daemon.dns_port)) for _ in range(3)]
        for sock in held:  # an answer on each: all three are taken, not only queued
            sock.settimeout(5)
            assert dns.query.receive_tcp(_sent(sock, query), time.time() + 5)[0].answer
        extra = socket.create_connection(("127.0.0.1", daemon.dns_port))
        extra.settimeout(5)
        assert extra.recv(10) == b""  # over the cap: closed at once
        extra.close()
        for sock in held:
            sock.close()
        deadline = time.monotonic() + 5  # the server notices the closes in its own time
        while True:
            newcomer = socket.create_connection(("127.0.0.1", daemon.dns_port))
            newcomer.settimeout(5)
            try:
                answer = dns.query.receive_tcp(_sent(newcomer, query), time.time() + 5)[0]
            except (ConnectionError, EOFError):
                assert time.monotonic() < deadline, "the freed slots were never given again"
                time.sleep(0.05)
                continue
            finally:
                newcomer.close()
            assert answer.answer
            break


def _sent(sock: socket.socket, query: dns.message.Message) -> socket.socket:
    dns.query.send_tcp(sock, query)
    return sock


def test_tsig_outside_the_time_window_is_not_authorized(ddnsd: Ddnsd) -> None:
    algorithm, name, secret = ddnsd.tsig["nas1"].split(":")
    keyring = dns.tsigkeyring.from_text({name: (algorithm, secret)})
    update = dns.update.UpdateMessage("dyn.test", keyring=keyring, keyname=dns.name.from_text(name))
    update.replace("nas1", 60, "A", "192.0.2.55")
    with mock.patch("time.time", return_value=time.time() - 3600):
        stale = update.to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(stale, ("127.0.0.1", ddnsd.dns_port))
        reply = sock.recv(4096)
    assert reply[3] & 0x0F == dns.rcode.NOTAUTH
    # The same update signed now is accepted.
    response = dns.query.udp(update, "127.0.0.1", port=ddnsd.dns_port, timeout=5)
    assert response.rcode() == dns.rcode.NOERROR
