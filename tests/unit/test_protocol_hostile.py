"""Hostile input: arbitrary bytes into `receive_data` give events or RemoteProtocolError, never
another exception, never unbounded buffering."""

from __future__ import annotations

import itertools
import subprocess
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import protocol
from protocol import Connection, RemoteProtocolError
from protocol._frames import HEADER, FrameType, encode_frame
from protocol._messages import Open, Ping, Reset, WindowUpdate, encode_body

from .pairs import open_pair, server

_SETTINGS = settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


def _feed(conn: Connection, chunks: list[bytes]) -> None:
    """Feed chunks; only RemoteProtocolError may come out, and it ends the feeding."""
    for chunk in chunks:
        if not chunk:
            continue
        try:
            events = conn.receive_data(chunk)
        except RemoteProtocolError:
            assert conn.state is protocol.ConnectionState.CLOSED
            return
        assert all(isinstance(event, protocol.Event) for event in events)
        # Whatever the peer sent, what we buffer stays within one frame's limit.
        assert len(conn._header_buf) < HEADER.size
        assert conn._have <= conn.settings.max_frame_bytes


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@_SETTINGS
@given(st.binary(max_size=4096), st.lists(st.integers(min_value=0), max_size=8))
def test_random_bytes_before_the_handshake(data: bytes, cuts: list[int]) -> None:
    _feed(server(), _split(data, cuts))


@_SETTINGS
@given(st.binary(max_size=4096), st.lists(st.integers(min_value=0), max_size=8))
def test_random_bytes_on_an_open_connection(data: bytes, cuts: list[int]) -> None:
    client, srv = open_pair()
    _feed(srv, _split(data, cuts))
    _feed(client, _split(data, cuts))


def _valid_transcript() -> bytes:
    """Frames a well-behaved client sends after the handshake."""
    return b"".join(
        [
            encode_frame(FrameType.OPEN, 0, 1, encode_body(Open("web", "192.0.2.1", 443))),
            encode_frame(FrameType.DATA, 0, 1, b"GET / HTTP/1.1\r\n\r\n"),
            encode_frame(FrameType.WINDOW, 0, 0, encode_body(WindowUpdate(1000))),
            encode_frame(FrameType.PING, 0, 0, encode_body(Ping(bytes(8)))),
            encode_frame(FrameType.OPEN, 0, 3, encode_body(Open("web"))),
            encode_frame(FrameType.RESET, 0, 3, encode_body(Reset(7))),
            encode_frame(FrameType.MESSAGE, 0, 0, encode_body(protocol.Ack(5))),
            encode_frame(FrameType.DATA, 1, 1, b""),
        ]
    )


TRANSCRIPT = _valid_transcript()


def test_the_unmutated_transcript_is_accepted() -> None:
    _, srv = open_pair()
    events = srv.receive_data(TRANSCRIPT)
    assert [type(e).__name__ for e in events] == [
        "StreamOpened",
        "DataReceived",
        "WindowUpdated",
        "PingReceived",
        "StreamOpened",
        "StreamReset",
        "MessageReceived",
        "StreamEnded",
    ]


@_SETTINGS
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["flip", "insert", "delete"]),
            st.integers(min_value=0, max_value=len(TRANSCRIPT) - 1),
            st.integers(min_value=0, max_value=255),
        ),
        min_size=1,
        max_size=6,
    ),
    st.lists(st.integers(min_value=0), max_size=8),
)
def test_mutated_valid_frames(mutations: list[tuple[str, int, int]], cuts: list[int]) -> None:
    data = bytearray(TRANSCRIPT)
    for kind, position, value in mutations:
        position %= len(data) or 1
        if kind == "flip" and data:
            data[position] ^= value or 1
        elif kind == "insert":
            data.insert(position, value)
        elif data:
            del data[position]
    _, srv = open_pair()
    _feed(srv, _split(bytes(data), cuts))


@_SETTINGS
@given(
    st.sampled_from(list(FrameType)),
    st.integers(min_value=0, max_value=2**32 - 1),
    st.integers(min_value=0, max_value=2**32 - 1),
    st.binary(max_size=256),
)
def test_frames_that_lie_about_their_length(
    frame_type: FrameType, stream_id: int, length: int, body: bytes
) -> None:
    _, srv = open_pair()
    wire = HEADER.pack(frame_type, 0, stream_id, length) + body
    try:
        srv.receive_data(wire)
        # Whatever was not a whole frame waits for more; EOF now must be an error.
        if srv._frame is not None or srv._header_buf:
            try:
                srv.receive_data(b"")
            except RemoteProtocolError:
                pass
            else:  # pragma: no cover - the assertion below reports it
                raise AssertionError("EOF in the middle of a frame was accepted")
    except RemoteProtocolError:
        pass


def test_a_huge_length_is_refused_before_any_body_arrives() -> None:
    _, srv = open_pair()
    try:
        srv.receive_data(HEADER.pack(FrameType.DATA, 0, 1, 2**31))
    except RemoteProtocolError as exc:
        assert exc.error_code == protocol.ErrorCode.FRAME_SIZE_ERROR
    else:  # pragma: no cover
        raise AssertionError("a 2 GiB frame was not refused")


def test_a_control_frame_larger_than_16k_is_refused_from_its_header() -> None:
    _, srv = open_pair()
    try:
        srv.receive_data(HEADER.pack(FrameType.MESSAGE, 0, 0, 100_000))
    except RemoteProtocolError as exc:
        assert exc.error_code == protocol.ErrorCode.FRAME_SIZE_ERROR
    else:  # pragma: no cover
        raise AssertionError("a 100 kB control frame was not refused")


def test_msgpack_bombs_in_control_bodies_are_protocol_errors() -> None:
    # Deep nesting, a map claiming 2^32 entries, and a string claiming 4 GiB.
    bodies = [b"\x91" * 5000, b"\xdf\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff", b"\xc1"]
    for body in bodies:
        _, srv = open_pair()
        try:
            srv.receive_data(encode_frame(FrameType.MESSAGE, 0, 0, body[:16384]))
        except RemoteProtocolError:
            continue
        raise AssertionError(f"body {body[:8]!r} was accepted")  # pragma: no cover


def test_importing_protocol_loads_no_trio_and_no_socket() -> None:
    code = "import sys, protocol; print(sorted({'trio', 'socket'} & set(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"


def test_protocol_core_sources_import_no_io_clock_or_randomness() -> None:
    # sys.modules cannot show this for time and random, which the standard library loads
    # anyway, so the core's own import statements are checked.
    import ast
    from pathlib import Path

    core = [p for p in Path(protocol.__file__).parent.glob("_*.py")]
    assert core
    for path in core:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            for name in names:
                root = name.split(".")[0]
                assert root not in {"trio", "socket", "time", "random", "secrets", "os"}, (
                    f"{path.name} imports {name}"
                )
