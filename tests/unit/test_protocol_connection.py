"""The sans-IO connection with no sockets: handshake and authentication, every cell of the
connection and stream state tables, flow control, GOAWAY and PING."""

from __future__ import annotations

import itertools

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import protocol
from protocol import (
    Connection,
    ConnectionState,
    ErrorCode,
    LocalProtocolError,
    RemoteProtocolError,
    Role,
    Settings,
)
from protocol._frames import FrameType, encode_frame
from protocol._messages import (
    Auth,
    AuthOk,
    GoAway,
    Hello,
    Open,
    Ping,
    Reset,
    WindowUpdate,
    encode_body,
)
from protocol._state import TRANSITIONS as CONNECTION_TRANSITIONS
from protocol._state import ConnectionInput
from protocol._streams import StreamInput, StreamState

from .pairs import NONCE, SERVER_NAME, client, open_pair, server, shuttle

# The expected cells come from SPEC.md's own tables, not from the code under test.
from .test_protocol_spec_tables import SPEC_ALLOWED, SPEC_STREAM_TRANSITIONS

# -- handshake and authentication ------------------------------------------------------------


def _until_auth(
    key: Ed25519PrivateKey | None = None, name: str = "nas1", nonce: bytes = NONCE
) -> tuple[Connection, Connection, Ed25519PrivateKey, bytes]:
    c, key = client(name=name, key=key)
    s = server(nonce=nonce)
    shuttle(c, s)
    shuttle(s, c)
    auth_bytes = c.data_to_send()
    [request] = s.receive_data(auth_bytes)
    assert request == protocol.AuthenticationRequested(
        "device", name, protocol.public_key_bytes(key)
    )
    return c, s, key, auth_bytes


def test_handshake_success_agrees_on_version_and_names() -> None:
    c, s, key, _ = _until_auth()
    done = s.accept_authentication(protocol.public_key_bytes(key))
    assert done == protocol.HandshakeComplete(1, frozenset(), "device", "nas1")
    [event] = shuttle(s, c)
    assert event == protocol.HandshakeComplete(1, frozenset(), "device", SERVER_NAME)
    assert c.state is s.state is ConnectionState.OPEN
    assert s.peer_name == "nas1"


def test_capabilities_are_the_intersection() -> None:
    c, key = client(settings=Settings(capabilities=frozenset({"proxy-v2", "zstd"})))
    s = server(settings=Settings(capabilities=frozenset({"proxy-v2", "other"})))
    shuttle(c, s)
    shuttle(s, c)
    shuttle(c, s)
    assert s.accept_authentication(protocol.public_key_bytes(key)).capabilities == {"proxy-v2"}
    [event] = shuttle(s, c)
    assert isinstance(event, protocol.HandshakeComplete)
    assert event.capabilities == {"proxy-v2"}


def _assert_auth_failed(s: Connection, c: Connection) -> None:
    assert s.state is ConnectionState.CLOSED
    [event] = shuttle(s, c)
    assert event == protocol.ConnectionTerminated(
        ErrorCode.AUTHENTICATION_FAILED, 0, "authentication failed"
    )


def test_wrong_registered_key_fails() -> None:
    c, s, _, _ = _until_auth()
    other = protocol.public_key_bytes(Ed25519PrivateKey.generate())
    with pytest.raises(RemoteProtocolError) as info:
        s.accept_authentication(other)
    assert info.value.error_code == ErrorCode.AUTHENTICATION_FAILED
    _assert_auth_failed(s, c)


def _signed_auth(
    key: Ed25519PrivateKey,
    *,
    name: str = "nas1",
    signed_name: str = "nas1",
    signed_server: str = SERVER_NAME,
    presented_key: bytes | None = None,
) -> Auth:
    """An AUTH as a forger could build it: signed over one set of values, claiming others."""
    public = protocol.public_key_bytes(key)
    payload = protocol.auth_payload(1, "device", signed_server, signed_name, NONCE, public)
    return Auth("device", name, presented_key or public, key.sign(payload))


def _server_receiving(auth: Auth) -> Connection:
    """A server (nonce NONCE) that got a client's HELLO, then `auth`."""
    s = server()
    c, _ = client()
    shuttle(c, s)
    s.data_to_send()
    [request] = s.receive_data(encode_frame(FrameType.AUTH, 0, 0, encode_body(auth)))
    assert isinstance(request, protocol.AuthenticationRequested)
    return s


def test_forged_auth_helper_accepts_an_honest_signature() -> None:
    # The control for the three tests below: the same path with nothing forged succeeds.
    key = Ed25519PrivateKey.generate()
    s = _server_receiving(_signed_auth(key))
    s.accept_authentication(protocol.public_key_bytes(key))
    assert s.state is ConnectionState.OPEN


def test_signature_by_another_key_fails_even_if_the_presented_key_matches() -> None:
    registered = protocol.public_key_bytes(Ed25519PrivateKey.generate())
    forged = _signed_auth(Ed25519PrivateKey.generate(), presented_key=registered)
    with pytest.raises(RemoteProtocolError):
        _server_receiving(forged).accept_authentication(registered)


def test_signature_is_bound_to_the_client_name() -> None:
    key = Ed25519PrivateKey.generate()
    forged = _signed_auth(key, name="nas2", signed_name="nas1")
    with pytest.raises(RemoteProtocolError):
        _server_receiving(forged).accept_authentication(protocol.public_key_bytes(key))


def test_signature_is_bound_to_the_server_name() -> None:
    key = Ed25519PrivateKey.generate()
    forged = _signed_auth(key, signed_server="relay-other.test")
    with pytest.raises(RemoteProtocolError):
        _server_receiving(forged).accept_authentication(protocol.public_key_bytes(key))


def test_replayed_auth_fails_on_a_new_connection() -> None:
    # Capture a valid AUTH, then replay it on a connection whose server nonce differs.
    _, _, key, auth_bytes = _until_auth(nonce=NONCE)
    s = server(nonce=bytes(32))
    c, _ = client(key=key)
    shuttle(c, s)
    c.receive_data(s.data_to_send())
    c.data_to_send()  # the genuine AUTH for this nonce is dropped; the old one is replayed
    [request] = s.receive_data(auth_bytes)
    assert isinstance(request, protocol.AuthenticationRequested)
    with pytest.raises(RemoteProtocolError):
        s.accept_authentication(protocol.public_key_bytes(key))


def test_client_refuses_a_server_with_another_name() -> None:
    # The client signs the name it trusts, and stops before signing for another.
    key = Ed25519PrivateKey.generate()
    c = Connection(
        Role.CLIENT,
        server_name="relay-a.test",
        credentials=protocol.Credentials("device", "nas1", key),
    )
    s = Connection(Role.SERVER, server_name="relay-b.test", nonce=NONCE)
    shuttle(c, s)
    with pytest.raises(RemoteProtocolError) as info:
        shuttle(s, c)
    assert info.value.error_code == ErrorCode.AUTHENTICATION_FAILED


def test_the_nonce_is_single_use() -> None:
    _c, s, key, _ = _until_auth()
    with pytest.raises(RemoteProtocolError):
        s.accept_authentication(b"\x00" * 32)
    with pytest.raises(LocalProtocolError):
        s.accept_authentication(protocol.public_key_bytes(key))


def test_unknown_name_is_refused_like_a_wrong_key() -> None:
    c, s, _, _ = _until_auth()
    s.reject_authentication()
    _assert_auth_failed(s, c)


def test_kind_not_accepted_by_the_server() -> None:
    c, _ = client(kind=protocol.AuthKind.INSTALL)
    s = Connection(
        Role.SERVER,
        server_name=SERVER_NAME,
        nonce=NONCE,
        accepted_kinds=frozenset({protocol.AuthKind.SERVICE}),
    )
    shuttle(c, s)
    shuttle(s, c)
    with pytest.raises(RemoteProtocolError) as info:
        shuttle(c, s)
    assert info.value.error_code == ErrorCode.AUTHENTICATION_FAILED


def test_no_common_version() -> None:
    s = server()
    hello = Hello(versions=(7, 9))
    with pytest.raises(RemoteProtocolError) as info:
        s.receive_data(encode_frame(FrameType.HELLO, 0, 0, encode_body(hello)))
    assert info.value.error_code == ErrorCode.UNSUPPORTED_VERSION
    assert s.data_to_send().startswith(bytes([FrameType.GOAWAY]))


def test_server_hello_must_carry_a_nonce_and_a_version_we_offered() -> None:
    for hello in (
        Hello(versions=(1,), name=SERVER_NAME),
        Hello(versions=(2,), name=SERVER_NAME, nonce=NONCE),
        Hello(versions=(1, 2), name=SERVER_NAME, nonce=NONCE),
    ):
        c, _ = client()
        with pytest.raises(RemoteProtocolError):
            c.receive_data(encode_frame(FrameType.HELLO, 0, 0, encode_body(hello)))


def test_auth_ok_for_another_name_is_rejected() -> None:
    c, s, key, _ = _until_auth()
    s.accept_authentication(protocol.public_key_bytes(key))
    s.data_to_send()
    with pytest.raises(RemoteProtocolError):
        c.receive_data(encode_frame(FrameType.AUTH_OK, 0, 0, encode_body(AuthOk("nas2"))))


def test_constructor_misuse_is_local() -> None:
    with pytest.raises(LocalProtocolError):
        Connection(Role.SERVER, server_name=SERVER_NAME, nonce=b"short")
    with pytest.raises(LocalProtocolError):
        Connection(Role.CLIENT, server_name=SERVER_NAME)
    with pytest.raises(LocalProtocolError):
        protocol.Credentials("device", "Bad_Name", Ed25519PrivateKey.generate())


# -- the connection state table: every (role, state, frame type) cell -----------------------

_SAMPLE_BODIES: dict[FrameType, tuple[int, int, bytes]] = {
    FrameType.DATA: (0, 1, b"x"),
    FrameType.HELLO: (0, 0, encode_body(Hello(versions=(1,), name=SERVER_NAME, nonce=NONCE))),
    FrameType.AUTH: (0, 0, encode_body(Auth("device", "nas1", bytes(32), bytes(64)))),
    FrameType.AUTH_OK: (0, 0, encode_body(AuthOk("nas1"))),
    FrameType.OPEN: (0, 0, encode_body(Open("web"))),
    FrameType.RESET: (0, 1, encode_body(Reset(ErrorCode.CANCEL))),
    FrameType.WINDOW: (0, 0, encode_body(WindowUpdate(1))),
    FrameType.PING: (0, 0, encode_body(Ping(bytes(8)))),
    FrameType.GOAWAY: (0, 0, encode_body(GoAway(0))),
    FrameType.MESSAGE: (0, 0, encode_body(protocol.Ack(1))),
}


def _connection_in(role: Role, state: ConnectionState) -> tuple[Connection, bytes]:
    """A connection of `role` in `state`, and the AUTH frame a server received."""
    c, key = client()
    s = server()
    auth = b""
    if role is Role.SERVER:
        if state is ConnectionState.AWAIT_HELLO:
            return s, b""
        shuttle(c, s)
        c.receive_data(s.data_to_send())
        auth = c.data_to_send()
        if state is ConnectionState.AWAIT_AUTH:
            return s, auth
        s.receive_data(auth)
        if state is ConnectionState.AUTH_PENDING:
            return s, auth
        s.accept_authentication(protocol.public_key_bytes(key))
        return s, auth
    if state is ConnectionState.AWAIT_HELLO:
        return c, b""
    shuttle(c, s)
    shuttle(s, c)
    if state is ConnectionState.AWAIT_AUTH_OK:
        return c, b""
    shuttle(c, s)
    s.accept_authentication(protocol.public_key_bytes(key))
    shuttle(s, c)
    return c, b""


@pytest.mark.parametrize(
    ("role", "state", "frame_type"),
    [
        (role, state, ft)
        for (role, state) in SPEC_ALLOWED
        if state is not ConnectionState.CLOSED  # receive_data refuses it before any frame
        for ft in FrameType
    ],
    ids=lambda value: getattr(value, "name", str(value)),
)
def test_connection_state_table_cell(
    role: Role, state: ConnectionState, frame_type: FrameType
) -> None:
    conn, _auth = _connection_in(role, state)
    assert conn.state is state
    flags, stream_id, body = _SAMPLE_BODIES[frame_type]
    peer_stream = 2 if role is Role.CLIENT else 1  # the peer's parity
    if frame_type is FrameType.OPEN:
        stream_id = peer_stream
    if frame_type in (FrameType.DATA, FrameType.RESET):
        stream_id = peer_stream
        if state is ConnectionState.OPEN:  # these need a stream: the peer opens one first
            conn.receive_data(encode_frame(FrameType.OPEN, 0, peer_stream, encode_body(Open("w"))))
    frame = encode_frame(frame_type, flags, stream_id, body)
    if frame_type in SPEC_ALLOWED[(role, state)]:
        conn.receive_data(frame)  # no exception
    else:
        with pytest.raises(RemoteProtocolError) as info:
            conn.receive_data(frame)
        assert info.value.error_code == ErrorCode.PROTOCOL_ERROR
        assert conn.state is ConnectionState.CLOSED


@pytest.mark.parametrize("state", list(ConnectionState), ids=lambda state: state.name)
def test_connection_transitions_close_on_errors_and_drain_only_when_open(
    state: ConnectionState,
) -> None:
    closing = (
        ConnectionInput.SEND_GOAWAY_ERROR,
        ConnectionInput.RECV_GOAWAY_ERROR,
        ConnectionInput.RECV_EOF,
    )
    drain = (ConnectionInput.SEND_GOAWAY, ConnectionInput.RECV_GOAWAY)
    if state is ConnectionState.CLOSED:
        assert not [key for key in CONNECTION_TRANSITIONS if key[0] is state]
        return
    for event in closing:
        assert CONNECTION_TRANSITIONS[(state, event)] is ConnectionState.CLOSED
    expected = state if state is ConnectionState.OPEN else ConnectionState.CLOSED
    for event in drain:
        assert CONNECTION_TRANSITIONS[(state, event)] is expected


def test_handshake_walks_the_transition_table_in_order() -> None:
    c, key = client()
    s = server()
    seen = [(c.state, s.state)]
    shuttle(c, s)
    seen.append((c.state, s.state))
    shuttle(s, c)
    seen.append((c.state, s.state))
    shuttle(c, s)
    seen.append((c.state, s.state))
    s.accept_authentication(protocol.public_key_bytes(key))
    shuttle(s, c)
    seen.append((c.state, s.state))
    C = ConnectionState
    assert seen == [
        (C.AWAIT_HELLO, C.AWAIT_HELLO),
        (C.AWAIT_HELLO, C.AWAIT_AUTH),  # SEND_HELLO
        (C.AWAIT_AUTH_OK, C.AWAIT_AUTH),  # SEND_AUTH
        (C.AWAIT_AUTH_OK, C.AUTH_PENDING),  # RECV_AUTH
        (C.OPEN, C.OPEN),  # SEND_AUTH_OK, RECV_AUTH_OK
    ]


def test_closed_connection_refuses_input_but_reports_eof() -> None:
    c, _s = open_pair()
    c.close(ErrorCode.INTERNAL_ERROR, "bye")
    assert c.state is ConnectionState.CLOSED
    with pytest.raises(LocalProtocolError):
        c.receive_data(b"\x00")
    assert c.receive_data(b"") == [protocol.ConnectionClosed()]


def test_eof_mid_frame_is_an_error_and_between_frames_is_clean() -> None:
    c, s = open_pair()
    c.ping(bytes(8))
    frame = c.data_to_send()
    s.receive_data(frame[:5])
    with pytest.raises(RemoteProtocolError):
        s.receive_data(b"")
    c, s = open_pair()
    assert s.receive_data(b"") == [protocol.ConnectionClosed()]


# -- the stream state table: every (state, input) cell ---------------------------------------


def _stream_in(state: StreamState) -> tuple[Connection, Connection, int]:
    c, s = open_pair()
    stream_id = c.open_stream(Open("web"))
    shuttle(c, s)
    if state in (StreamState.HALF_CLOSED_LOCAL, StreamState.CLOSED):
        c.end_stream(stream_id)
        shuttle(c, s)
    if state in (StreamState.HALF_CLOSED_REMOTE, StreamState.CLOSED):
        s.end_stream(stream_id)
        shuttle(s, c)
    return c, s, stream_id


def _apply(c: Connection, s: Connection, stream_id: int, event: StreamInput) -> None:
    if event is StreamInput.SEND_DATA:
        c.send_data(stream_id, b"abc")
    elif event is StreamInput.SEND_END:
        c.end_stream(stream_id)
    elif event is StreamInput.SEND_RESET:
        c.reset_stream(stream_id)
    else:
        # The peer does it: forge the frame so the peer's own checks do not stop it.
        frame = {
            StreamInput.RECV_DATA: encode_frame(FrameType.DATA, 0, stream_id, b"abc"),
            StreamInput.RECV_END: encode_frame(FrameType.DATA, 1, stream_id, b""),
            StreamInput.RECV_RESET: encode_frame(
                FrameType.RESET, 0, stream_id, encode_body(Reset(ErrorCode.CANCEL))
            ),
        }[event]
        c.receive_data(frame)


@pytest.mark.parametrize(
    ("state", "event"),
    list(itertools.product([s for s in StreamState if s is not StreamState.CLOSED], StreamInput)),
    ids=lambda value: value.name,
)
def test_stream_state_table_cell(state: StreamState, event: StreamInput) -> None:
    c, s, stream_id = _stream_in(state)
    assert c.streams[stream_id].state is state
    expected = SPEC_STREAM_TRANSITIONS.get((state, event))
    if expected is None:
        error = LocalProtocolError if event.name.startswith("SEND") else RemoteProtocolError
        with pytest.raises(error) as info:
            _apply(c, s, stream_id, event)
        assert info.value.error_code == ErrorCode.STREAM_CLOSED
        return
    _apply(c, s, stream_id, event)
    if expected is StreamState.CLOSED:
        assert stream_id not in c.streams
    else:
        assert c.streams[stream_id].state is expected


def test_closed_stream_frames_are_dropped_and_never_opened_ids_are_errors() -> None:
    c, _s, stream_id = _stream_in(StreamState.CLOSED)
    assert stream_id not in c.streams
    # DATA for a stream that existed: dropped (after our RESET the peer's frames may cross).
    assert c.receive_data(encode_frame(FrameType.DATA, 0, stream_id, b"late")) == []
    assert c.receive_data(encode_frame(FrameType.RESET, 0, stream_id, encode_body(Reset(0)))) == []
    with pytest.raises(RemoteProtocolError):
        c.receive_data(encode_frame(FrameType.DATA, 0, 99, b"never"))


def test_stream_ids_parity_and_order() -> None:
    c, s = open_pair()
    assert [c.open_stream(Open("a")), c.open_stream(Open("b"))] == [1, 3]
    assert s.open_stream(Open("c")) == 2
    shuttle(c, s)
    with pytest.raises(RemoteProtocolError):  # our own parity
        s.receive_data(encode_frame(FrameType.OPEN, 0, 4, encode_body(Open("x"))))
    c, s = open_pair()
    s.receive_data(encode_frame(FrameType.OPEN, 0, 5, encode_body(Open("x"))))
    with pytest.raises(RemoteProtocolError):  # not increasing
        s.receive_data(encode_frame(FrameType.OPEN, 0, 3, encode_body(Open("x"))))


def test_stream_flood_is_refused_per_stream_not_fatal() -> None:
    _c, s = open_pair(server_settings=Settings(max_streams=2))
    opened = [
        s.receive_data(encode_frame(FrameType.OPEN, 0, sid, encode_body(Open("web"))))
        for sid in (1, 3, 5, 7)
    ]
    assert [len(events) for events in opened] == [1, 1, 0, 0]
    assert s.state is ConnectionState.OPEN
    assert _frames(s.data_to_send()) == [
        (FrameType.RESET, 5, Reset(ErrorCode.REFUSED_STREAM)),
        (FrameType.RESET, 7, Reset(ErrorCode.REFUSED_STREAM)),
    ]


def _frames(wire: bytes) -> list[tuple[FrameType, int, object]]:
    """Split bytes into (type, stream id, decoded body) for assertions."""
    from protocol._frames import HEADER
    from protocol._messages import decode_body

    bodies = {FrameType.RESET: Reset, FrameType.WINDOW: WindowUpdate, FrameType.GOAWAY: GoAway}
    out: list[tuple[FrameType, int, object]] = []
    while wire:
        frame_type, _flags, stream_id, length = HEADER.unpack_from(wire)
        body = wire[HEADER.size : HEADER.size + length]
        kind = FrameType(frame_type)
        out.append((kind, stream_id, decode_body(bodies[kind], body) if kind in bodies else body))
        wire = wire[HEADER.size + length :]
    return out


def test_open_beyond_peer_limit_is_local_error() -> None:
    c, _s = open_pair(server_settings=Settings(max_streams=1))
    c.open_stream(Open("web"))
    with pytest.raises(LocalProtocolError):
        c.open_stream(Open("web"))


# -- flow control ---------------------------------------------------------------------------

_SMALL = Settings(stream_window_bytes=1000, connection_window_bytes=1500)


def test_send_window_limits_local_sends() -> None:
    c, _s = open_pair(server_settings=_SMALL)
    sid = c.open_stream(Open("web"))
    assert c.local_flow_control_window(sid) == 1000
    c.send_data(sid, b"x" * 600)
    assert c.local_flow_control_window(sid) == 400
    with pytest.raises(LocalProtocolError) as info:
        c.send_data(sid, b"x" * 401)
    assert info.value.error_code == ErrorCode.FLOW_CONTROL_ERROR
    sid2 = c.open_stream(Open("web"))
    assert c.local_flow_control_window(sid2) == 900  # the connection window is shared


def test_peer_that_sends_past_the_stream_window_is_a_protocol_error() -> None:
    c, s = open_pair(server_settings=_SMALL)
    sid = c.open_stream(Open("web"))
    shuttle(c, s)
    s.receive_data(encode_frame(FrameType.DATA, 0, sid, b"x" * 1000))
    with pytest.raises(RemoteProtocolError) as info:
        s.receive_data(encode_frame(FrameType.DATA, 0, sid, b"x"))
    assert info.value.error_code == ErrorCode.FLOW_CONTROL_ERROR


def test_peer_that_sends_past_the_connection_window_is_a_protocol_error() -> None:
    c, s = open_pair(server_settings=_SMALL)
    a, b = c.open_stream(Open("web")), c.open_stream(Open("web"))
    shuttle(c, s)
    s.receive_data(encode_frame(FrameType.DATA, 0, a, b"x" * 1000))
    with pytest.raises(RemoteProtocolError) as info:
        s.receive_data(encode_frame(FrameType.DATA, 0, b, b"x" * 501))
    assert info.value.error_code == ErrorCode.FLOW_CONTROL_ERROR


def test_credit_returns_only_when_the_application_acknowledges() -> None:
    c, s = open_pair(server_settings=_SMALL)
    sid = c.open_stream(Open("web"))
    c.send_data(sid, b"x" * 1000)
    events = shuttle(c, s)
    assert [type(e) for e in events] == [protocol.StreamOpened, protocol.DataReceived]
    assert s.data_to_send() == b""  # received but not consumed: no credit
    s.acknowledge_received_data(sid, 400)
    assert s.data_to_send() == b""  # below half of the stream window: still batched
    s.acknowledge_received_data(sid, 100)
    updates = shuttle(s, c)
    assert protocol.WindowUpdated(sid, 500) in updates
    assert c.local_flow_control_window(sid) == 500


def test_acknowledging_more_than_received_is_local_error() -> None:
    c, s = open_pair()
    sid = c.open_stream(Open("web"))
    c.send_data(sid, b"abc")
    shuttle(c, s)
    with pytest.raises(LocalProtocolError):
        s.acknowledge_received_data(sid, 4)


def test_data_for_a_reset_stream_still_counts_and_is_credited_back() -> None:
    c, s = open_pair(server_settings=_SMALL)
    sid = c.open_stream(Open("web"))
    shuttle(c, s)
    s.reset_stream(sid)
    s.data_to_send()
    # The client had sent these before it saw the RESET.
    s.receive_data(encode_frame(FrameType.DATA, 0, sid, b"x" * 800))
    assert s.connection_receive_window == 1500 - 800 + 800  # credited back at once
    assert protocol.WindowUpdated(0, 800) in c.receive_data(s.data_to_send())


def test_window_overflow_is_flow_control_error() -> None:
    c, _s = open_pair()
    with pytest.raises(RemoteProtocolError) as info:
        c.receive_data(encode_frame(FrameType.WINDOW, 0, 0, encode_body(WindowUpdate(2**31 - 1))))
    assert info.value.error_code == ErrorCode.FLOW_CONTROL_ERROR


def test_large_send_is_split_at_the_peer_frame_limit() -> None:
    c, s = open_pair(server_settings=Settings(max_frame_bytes=16384))
    sid = c.open_stream(Open("web"))
    payload = bytes(range(256)) * 200  # 51200 bytes
    c.send_data(sid, payload, end_stream=True)
    events = shuttle(c, s)
    chunks = [e for e in events if isinstance(e, protocol.DataReceived)]
    assert [len(e.data) for e in chunks] == [16384, 16384, 16384, 2048]
    assert b"".join(e.data for e in chunks) == payload
    assert isinstance(events[-1], protocol.StreamEnded)


def test_frame_above_our_limit_is_refused_from_the_header_alone() -> None:
    _c, s = open_pair()
    header = encode_frame(FrameType.DATA, 0, 1, b"")[:6] + (2**32 - 1).to_bytes(4, "big")
    with pytest.raises(RemoteProtocolError) as info:
        s.receive_data(header)
    assert info.value.error_code == ErrorCode.FRAME_SIZE_ERROR


# -- GOAWAY, PING, messages --------------------------------------------------------------------


def test_graceful_goaway_refuses_unprocessed_streams_and_keeps_the_others() -> None:
    c, s = open_pair()
    early = c.open_stream(Open("web"))
    shuttle(c, s)
    late = c.open_stream(Open("web"))  # in flight when the server says GOAWAY
    s.close()
    events = shuttle(s, c)
    assert protocol.StreamReset(late, ErrorCode.REFUSED_STREAM, remote=False) in events
    assert events[-1] == protocol.ConnectionTerminated(ErrorCode.NO_ERROR, early, "")
    with pytest.raises(LocalProtocolError):
        c.open_stream(Open("web"))
    c.send_data(early, b"still fine")
    assert isinstance(shuttle(c, s)[0], protocol.DataReceived)
    # A stream the server receives after its GOAWAY is refused, not processed.
    c.data_to_send()
    s.receive_data(encode_frame(FrameType.OPEN, 0, late + 2, encode_body(Open("web"))))
    assert s.data_to_send().startswith(bytes([FrameType.RESET]))


def test_goaway_with_an_error_closes_at_once() -> None:
    c, s = open_pair()
    c.open_stream(Open("web"))
    s.close(ErrorCode.INTERNAL_ERROR, "disk full")
    assert s.state is ConnectionState.CLOSED
    events = shuttle(s, c)
    assert events == [protocol.ConnectionTerminated(ErrorCode.INTERNAL_ERROR, 0, "disk full")]
    assert c.state is ConnectionState.CLOSED


def test_ping_is_answered_and_acknowledged() -> None:
    c, s = open_pair()
    c.ping(b"12345678")
    assert shuttle(c, s) == [protocol.PingReceived(b"12345678")]
    assert shuttle(s, c) == [protocol.PingAcknowledged(b"12345678")]


def test_ping_flood_is_rate_limited() -> None:
    _c, s = open_pair()
    flood = encode_frame(FrameType.PING, 0, 0, encode_body(Ping(bytes(8)))) * 40
    with pytest.raises(RemoteProtocolError) as info:
        s.receive_data(flood)
    assert info.value.error_code == ErrorCode.RATE_LIMITED


def test_messages_round_trip() -> None:
    c, s = open_pair()
    messages: list[protocol.AppMessage] = [
        protocol.Register(lan_addresses=("192.168.1.2", "fd00::2"), services=("web",)),
        protocol.DdnsUpdate(1, "nas1", "nas1", "AAAA", ("2001:db8::5",)),
        protocol.DdnsUpdate(2, "nas1", "_acme-challenge.nas1", "TXT", ("token",)),
        protocol.InstallRegister(3, "ABCD-EFGH", ("192.168.1.2",), 8080),
        protocol.Ack(3),
        protocol.Error(ErrorCode.NOT_PERMITTED, "no", 2),
    ]
    for message in messages:
        c.send_message(message)
    assert shuttle(c, s) == [protocol.MessageReceived(m) for m in messages]


def test_local_actions_before_the_handshake_are_local_errors() -> None:
    c, _ = client()
    for action in (
        lambda: c.open_stream(Open("web")),
        lambda: c.ping(bytes(8)),
        lambda: c.send_message(protocol.Ack(1)),
        lambda: c.send_data(1, b"x"),
    ):
        with pytest.raises(LocalProtocolError):
            action()
