"""Flow-control credit (SPEC.md 8), one level at a time and both levels through a connection.

Written from the spec's rules: DATA counts against the window and may not exceed it; credit
comes back only when the application consumed the data, in a WINDOW frame once at least half
the window is free; a window above 2^31-1 is FLOW_CONTROL_ERROR; DATA dropped for a closed
stream still counts against the connection window and the receiver returns it itself.
"""

from __future__ import annotations

import pytest

from protocol import ErrorCode, Open, RemoteProtocolError, Settings
from protocol._frames import HEADER, FrameType, encode_frame
from protocol._messages import WindowUpdate, decode_body
from protocol._windows import WindowManager

from .pairs import open_pair, shuttle

MAX_WINDOW = 2**31 - 1
ANNOUNCED = 1000  # the receive window we announce: half of it is 500


def _deliver(window: WindowManager, size: int) -> None:
    """What the connection does with a DATA body in good standing."""
    window.window_consumed(size)
    window.unacknowledged += size


# -- one level: the half-window update rule ---------------------------------------------------

# (steps, the increment each "ack" returns, the receive window at the end). A step is
# ("recv", n): the peer sent n bytes the application got; ("ack", n): it consumed n of them.
_RECEIVE_CASES = {
    "receiving alone gives nothing back": ([("recv", 1000)], [], 0),
    "below half: credit is held": ([("recv", 400), ("ack", 400)], [0], 600),
    "exactly half: all of it goes back": ([("recv", 500), ("ack", 500)], [500], 1000),
    "held credit adds up until half": (
        [("recv", 1000), ("ack", 200), ("ack", 200), ("ack", 200)],
        [0, 0, 600],
        600,
    ),
    "one byte at a time: one increment per half window": (
        [("recv", 1000)] + [("ack", 1)] * 1000,
        ([0] * 499 + [500]) * 2,
        1000,
    ),
    "after an increment the count starts again": (
        [("recv", 1000), ("ack", 600), ("ack", 300), ("ack", 100)],
        [600, 0, 0],
        600,
    ),
    "credit can be spent again once returned": (
        [("recv", 1000), ("ack", 1000), ("recv", 1000), ("ack", 500)],
        [1000, 500],
        500,
    ),
    "only bytes delivered can be given back": ([("recv", 300), ("ack", 800)], [0], 700),
    "giving back nothing changes nothing": ([("recv", 100), ("ack", 0)], [0], 900),
}


@pytest.mark.parametrize(
    ("steps", "increments", "final_window"), _RECEIVE_CASES.values(), ids=_RECEIVE_CASES.keys()
)
def test_receive_window_sequence(
    steps: list[tuple[str, int]], increments: list[int], final_window: int
) -> None:
    window = WindowManager(5, 0, ANNOUNCED)
    returned = []
    for action, size in steps:
        if action == "recv":
            _deliver(window, size)
        else:
            returned.append(window.process_bytes(size))
    assert returned == increments
    assert window.receive_window == final_window


# (announced window, acknowledgements, the increment each returns): "at least half" of an odd
# window is half rounded up, so 500 of 1001 is not yet half (SPEC.md 8).
_HALF_CASES = {
    "odd window: half rounded down is too early": (1001, [500, 1], [0, 501]),
    "odd window: half rounded up goes back": (1001, [501], [501]),
    "window of 3: one byte is not half, two are": (3, [1, 1], [0, 2]),
    "window of 1: one byte": (1, [1], [1]),
    "even window: exactly half": (1000, [499, 1], [0, 500]),
}


@pytest.mark.parametrize(
    ("announced", "acks", "increments"), _HALF_CASES.values(), ids=_HALF_CASES.keys()
)
def test_update_waits_for_at_least_half_the_window(
    announced: int, acks: list[int], increments: list[int]
) -> None:
    window = WindowManager(5, 0, announced)
    _deliver(window, announced)
    assert [window.process_bytes(size) for size in acks] == increments


@pytest.mark.parametrize(
    ("received", "extra"), [(0, 1001), (1000, 1), (999, 2), (500, 501)], ids=str
)
def test_data_beyond_the_receive_window_is_the_peers_flow_control_error(
    received: int, extra: int
) -> None:
    window = WindowManager(5, 0, ANNOUNCED)
    _deliver(window, received)
    with pytest.raises(RemoteProtocolError) as info:
        window.window_consumed(extra)
    assert info.value.error_code == ErrorCode.FLOW_CONTROL_ERROR
    assert window.receive_window == ANNOUNCED - received  # nothing counted


def test_data_that_fills_the_window_exactly_is_allowed() -> None:
    window = WindowManager(5, 0, ANNOUNCED)
    _deliver(window, 600)
    window.window_consumed(400)
    assert window.receive_window == 0


# -- one level: the send window and overflow ----------------------------------------------------

# (initial send window, the peer's increment, the window after it, or None for an error).
_OPEN_CASES = [
    (0, 1, 1),
    (100, 50, 150),
    (0, MAX_WINDOW, MAX_WINDOW),
    (MAX_WINDOW - 1, 1, MAX_WINDOW),
    (MAX_WINDOW, 1, None),
    (1, MAX_WINDOW, None),
    (2**30, 2**30, None),
]


@pytest.mark.parametrize(("initial", "increment", "after"), _OPEN_CASES, ids=str)
@pytest.mark.parametrize("stream_id", [0, 3], ids=["connection", "stream"])
def test_send_window_opened_by_the_peer(
    stream_id: int, initial: int, increment: int, after: int | None
) -> None:
    window = WindowManager(stream_id, initial, ANNOUNCED)
    if after is None:
        with pytest.raises(RemoteProtocolError) as info:
            window.send_window_opened(increment)
        assert info.value.error_code == ErrorCode.FLOW_CONTROL_ERROR
        assert window.send_window == initial
    else:
        window.send_window_opened(increment)
        assert window.send_window == after


@pytest.mark.parametrize(
    ("stream_window", "connection_window", "credit"),
    [(1000, 5000, 1000), (5000, 1000, 1000), (0, 1000, 0), (700, 700, 700)],
    ids=str,
)
def test_a_stream_may_send_what_both_levels_allow(
    stream_window: int, connection_window: int, credit: int
) -> None:
    stream = WindowManager(3, stream_window, ANNOUNCED)
    connection = WindowManager(0, connection_window, ANNOUNCED)
    assert stream.send_credit(connection) == credit


# The messages name the level: they end up in logs and in GOAWAY (golden).
@pytest.mark.parametrize(
    ("stream_id", "overflow", "excess"),
    [
        (0, "connection window exceeds 2^31-1", "DATA exceeds the connection flow-control window"),
        (
            7,
            "window of stream 7 exceeds 2^31-1",
            "DATA exceeds the flow-control window of stream 7",
        ),
    ],
    ids=["connection", "stream"],
)
def test_error_messages_name_the_level(stream_id: int, overflow: str, excess: str) -> None:
    window = WindowManager(stream_id, MAX_WINDOW, ANNOUNCED)
    with pytest.raises(RemoteProtocolError) as info:
        window.send_window_opened(1)
    assert str(info.value) == overflow
    with pytest.raises(RemoteProtocolError) as info:
        window.window_consumed(ANNOUNCED + 1)
    assert str(info.value) == excess


# -- both levels through a connection ------------------------------------------------------------


def _windows_sent(wire: bytes) -> list[tuple[int, int]]:
    """The (stream id, increment) of every WINDOW frame in `wire`."""
    out = []
    while wire:
        frame_type, _flags, stream_id, length = HEADER.unpack_from(wire)
        body = wire[HEADER.size : HEADER.size + length]
        if frame_type == FrameType.WINDOW:
            out.append((stream_id, decode_body(WindowUpdate, body).increment))
        wire = wire[HEADER.size + length :]
    return out


# Stream windows of 1000 (half: 500) under a connection window of 1600 (half: 800). Streams
# "a" and "b" each receive 600; then each step acknowledges bytes of one of them and lists the
# WINDOW frames that must go out at once (0: the connection).
_TWO_LEVEL_CASES: dict[str, list[tuple[str, int, list[tuple[str | int, int]]]]] = {
    "a stream's half goes back before the connection's": [
        ("a", 600, [("a", 600)]),
        ("b", 300, [(0, 900)]),
    ],
    "small acknowledgements are held at both levels": [
        ("a", 100, []),
        ("b", 100, []),
        ("a", 400, [("a", 500)]),
        ("b", 300, [(0, 900)]),
    ],
    "one acknowledgement can free both levels, the connection first": [
        ("b", 300, []),
        ("a", 500, [(0, 800), ("a", 500)]),
    ],
}


@pytest.mark.parametrize("steps", _TWO_LEVEL_CASES.values(), ids=_TWO_LEVEL_CASES.keys())
def test_window_frames_at_both_levels(
    steps: list[tuple[str, int, list[tuple[str | int, int]]]],
) -> None:
    c, s = open_pair(
        server_settings=Settings(stream_window_bytes=1000, connection_window_bytes=1600)
    )
    ids = {"a": c.open_stream(Open("web")), "b": c.open_stream(Open("web"))}
    for name in "ab":
        c.send_data(ids[name], b"x" * 600)
    shuttle(c, s)
    for name, length, expected in steps:
        s.acknowledge_received_data(ids[name], length)
        sent = _windows_sent(s.data_to_send())
        assert sent == [(ids[sid] if isinstance(sid, str) else sid, inc) for sid, inc in expected]


@pytest.mark.parametrize(
    ("dropped", "increments"),
    [(800, [(0, 800)]), (100, []), (1500, [(0, 1500)])],
    ids=str,
)
def test_data_dropped_for_a_closed_stream_is_returned_by_the_same_rule(
    dropped: int, increments: list[tuple[int, int]]
) -> None:
    c, s = open_pair(
        server_settings=Settings(stream_window_bytes=2000, connection_window_bytes=1500)
    )
    sid = c.open_stream(Open("web"))
    shuttle(c, s)
    s.reset_stream(sid)
    s.data_to_send()
    # Sent by the client before it saw the RESET: the connection window still counts it.
    assert s.receive_data(encode_frame(FrameType.DATA, 0, sid, b"x" * dropped)) == []
    assert _windows_sent(s.data_to_send()) == increments
    assert s.connection_receive_window == 1500 - dropped + sum(i for _, i in increments)
