"""The ClientHello reader: real ClientHellos, every split, and hostile bytes."""

from __future__ import annotations

import ssl

from hypothesis import given, settings
from hypothesis import strategies as st

from relayd._sni import NeedMore, NotTls, ServerName, parse_client_hello


def client_hello(server_name: str | None) -> bytes:
    """A real ClientHello, as Python's TLS stack (OpenSSL) writes it."""
    context = ssl.create_default_context()
    context.check_hostname = False
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


HELLO = client_hello("nas1.link.test")


def test_a_real_client_hello_gives_its_name_lower_cased() -> None:
    assert parse_client_hello(HELLO) == ServerName("nas1.link.test")
    assert parse_client_hello(client_hello("NAS1.Link.Test")) == ServerName("nas1.link.test")


def test_no_sni_is_a_complete_hello_without_a_name() -> None:
    assert parse_client_hello(client_hello(None)) == ServerName(None)


def test_every_prefix_needs_more_and_every_split_completes() -> None:
    for cut in range(len(HELLO)):
        assert parse_client_hello(HELLO[:cut]) == NeedMore(), cut
    assert parse_client_hello(HELLO + b"trailing bytes") == ServerName("nas1.link.test")


def test_a_hello_split_over_several_records() -> None:
    record_body = HELLO[5:]
    pieces = [record_body[i : i + 100] for i in range(0, len(record_body), 100)]
    records = b"".join(b"\x16\x03\x01" + len(p).to_bytes(2, "big") + p for p in pieces)
    assert parse_client_hello(records) == ServerName("nas1.link.test")


def test_plain_http_and_other_records_are_not_tls() -> None:
    assert isinstance(parse_client_hello(b"GET / HTTP/1.1\r\n\r\n"), NotTls)
    assert isinstance(parse_client_hello(b"\x17\x03\x03\x00\x10" + b"x" * 16), NotTls)
    assert isinstance(parse_client_hello(b"\x16\x02\x00\x00\x05hello"), NotTls)


def test_a_hello_longer_than_the_limit_is_refused_before_it_is_complete() -> None:
    huge = b"\x16\x03\x01\x40\x00" + b"\x01" + (60000).to_bytes(3, "big") + b"\x00" * 100
    assert isinstance(parse_client_hello(huge, limit=16384), NotTls)


@settings(max_examples=400, deadline=1000)
@given(st.binary(max_size=2048))
def test_random_bytes_never_raise(data: bytes) -> None:
    result = parse_client_hello(data)
    assert isinstance(result, NeedMore | NotTls | ServerName)


@settings(max_examples=400, deadline=1000)
@given(st.lists(st.tuples(st.integers(0, len(HELLO) - 1), st.integers(0, 255)), max_size=6))
def test_mutated_hellos_never_raise(flips: list[tuple[int, int]]) -> None:
    data = bytearray(HELLO)
    for position, value in flips:
        data[position] = value
    result = parse_client_hello(bytes(data))
    assert isinstance(result, NeedMore | NotTls | ServerName)
    if isinstance(result, ServerName) and result.name is not None:
        assert result.name == result.name.lower() and len(result.name) <= 253


def _in_records(hello: bytes, size: int) -> bytes:
    """The same ClientHello, its handshake bytes re-cut into records of `size` bytes."""
    body = hello[5:]
    return b"".join(
        b"\x16\x03\x01" + len(body[i : i + size]).to_bytes(2, "big") + body[i : i + size]
        for i in range(0, len(body), size)
    )


def test_a_hello_in_a_few_records_is_read_and_one_in_a_thousand_is_refused() -> None:
    # Real clients send one or two records; a peer that cuts a hello into one-byte records
    # makes every new byte a parse of all the records so far (quadratic CPU per connection).
    assert parse_client_hello(_in_records(HELLO, 64)) == ServerName("nas1.link.test")
    crumbs = _in_records(HELLO, 1)
    assert isinstance(parse_client_hello(crumbs), NotTls)
    assert isinstance(parse_client_hello(crumbs[: 6 * 100]), NotTls)
