"""A peer that writes but never reads: the frames its traffic makes us queue stay bounded
(SPEC.md 9.3), while our own DATA and the application's messages are bounded elsewhere."""

from __future__ import annotations

import pytest

from protocol import ConnectionState, ErrorCode, RemoteProtocolError, Settings
from protocol._connection import MAX_OUTBOUND_CONTROL_BYTES
from protocol._frames import HEADER, FrameType, encode_frame
from protocol._messages import GoAway, Open, Ping, decode_body, encode_body

from .pairs import open_pair


def _opens(first: int, count: int) -> bytes:
    """`count` OPENs on the client's stream ids from `first` on."""
    body = encode_body(Open("web"))
    return b"".join(encode_frame(FrameType.OPEN, 0, first + 2 * i, body) for i in range(count))


def _last_goaway(wire: bytes) -> GoAway:
    goaway = None
    while wire:
        frame_type, _flags, _stream_id, length = HEADER.unpack_from(wire)
        if frame_type == FrameType.GOAWAY:
            goaway = decode_body(GoAway, wire[HEADER.size : HEADER.size + length])
        wire = wire[HEADER.size + length :]
    assert goaway is not None
    return goaway


def test_refused_open_flood_without_reading_is_rate_limited() -> None:
    _c, s = open_pair(server_settings=Settings(max_streams=1))
    # Every OPEN past the first is refused with a RESET; the peer never takes them.
    flood = _opens(1, 20_000)
    with pytest.raises(RemoteProtocolError) as info:
        for start in range(0, len(flood), 4096):
            s.receive_data(flood[start : start + 4096])
    assert info.value.error_code == ErrorCode.RATE_LIMITED
    assert s.state is ConnectionState.CLOSED
    wire = s.data_to_send()
    assert _last_goaway(wire).error_code == ErrorCode.RATE_LIMITED
    # What piled up is the cap, plus what one read of 4 KiB can provoke, plus the GOAWAY.
    assert len(wire) <= MAX_OUTBOUND_CONTROL_BYTES + 4096 + 512


def test_refused_opens_are_fine_while_the_peer_reads() -> None:
    _c, s = open_pair(server_settings=Settings(max_streams=1))
    flood = _opens(1, 20_000)
    for start in range(0, len(flood), 4096):
        s.receive_data(flood[start : start + 4096])
        s.data_to_send()  # the writer keeps up: the count starts again
    assert s.state is ConnectionState.OPEN


def test_resets_the_application_queues_for_peer_streams_count() -> None:
    # The tunnel refuses streams nobody accepts with reset_stream, after receive_data returned:
    # the next receive_data notices the pile.
    _c, s = open_pair()
    sid = 1
    with pytest.raises(RemoteProtocolError) as info:
        for _ in range(20_000):
            s.receive_data(_opens(sid, 1))
            s.reset_stream(sid, ErrorCode.REFUSED_STREAM)
            sid += 2
    assert info.value.error_code == ErrorCode.RATE_LIMITED
    assert s.state is ConnectionState.CLOSED


def test_ping_acks_count_towards_the_cap() -> None:
    # 32 PINGs per read never trips the PING rule, but their ACKs still pile up unread.
    _c, s = open_pair()
    pings = encode_frame(FrameType.PING, 0, 0, encode_body(Ping(bytes(8)))) * 32
    with pytest.raises(RemoteProtocolError) as info:
        for _ in range(20_000):
            s.receive_data(pings)
            s._pending_ping_acks = 0  # as if each batch were a separate flush of PINGs only
    assert info.value.error_code == ErrorCode.RATE_LIMITED


def test_our_own_data_is_not_counted() -> None:
    c, s = open_pair()
    stream_id = c.open_stream(Open("web"))
    s.receive_data(c.data_to_send())
    for _ in range(64):
        s.send_data(stream_id, b"x" * 16 * 1024)  # 1 MiB of DATA, never taken
    s.receive_data(encode_frame(FrameType.PING, 0, 0, encode_body(Ping(bytes(8)))))
    assert s.state is ConnectionState.OPEN
