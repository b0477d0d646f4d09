"""Feeding fuzz bytes to a `protocol.Connection`, and the contract every target checks.

Contract (SPEC.md 3, protocol/_connection.py): `receive_data` returns events or raises
`RemoteProtocolError` with a wire code; it parses the same bytes the same way however reads
split them; what it queues in answer is valid protocol that its real peer can read; and an
application that acts on every event as the daemons do (accept the AUTH, give credit back,
echo data, end what the peer ended, reset, ping) never meets an exception from its calls.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import protocol
from protocol import Connection, ConnectionState, ErrorCode, RemoteProtocolError, Role, Settings
from protocol._streams import StreamState

SERVER_NAME = "relay.test"
NONCE = bytes(range(32))
# A fixed key keeps every run (and every replay) of an input identical.
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
PUBLIC_KEY = protocol.public_key_bytes(KEY)
# Small windows and few streams, so that credit and stream limits are within a fuzzer's reach.
SETTINGS = Settings(
    max_frame_bytes=16 * 1024, stream_window_bytes=64, connection_window_bytes=256, max_streams=3
)

Outcome = tuple[list[protocol.Event], int | None]  # events, and the error code if it raised


def client() -> Connection:
    credentials = protocol.Credentials(protocol.AuthKind.DEVICE, "nas1", KEY)
    return Connection(
        Role.CLIENT, server_name=SERVER_NAME, credentials=credentials, settings=SETTINGS
    )


def server() -> Connection:
    return Connection(Role.SERVER, server_name=SERVER_NAME, nonce=NONCE, settings=SETTINGS)


def receive(conn: Connection, data: bytes) -> Outcome:
    """Events of one `receive_data` call, or the code of the RemoteProtocolError it raised."""
    try:
        events = conn.receive_data(data)
    except RemoteProtocolError as exc:
        assert conn.state is ConnectionState.CLOSED, conn.state
        assert isinstance(exc.error_code, int) and 0 <= exc.error_code < 2**32
        ErrorCode.describe(exc.error_code)
        return [], exc.error_code
    for event in events:
        assert isinstance(event, protocol.Event), event
    return events, None


def _closed(conn: Connection) -> bool:
    return conn.state is ConnectionState.CLOSED


def feed(conn: Connection, data: bytes, chunk_bytes: int) -> Outcome:
    """Feed `data` in reads of `chunk_bytes` (all at once if 0), stopping when it closes."""
    if chunk_bytes <= 0:
        return receive(conn, data)
    events: list[protocol.Event] = []
    for start in range(0, len(data), chunk_bytes):
        if conn.state is ConnectionState.CLOSED:
            break
        more, code = receive(conn, data[start : start + chunk_bytes])
        events += more
        if code is not None:
            return events, code
    return events, None


_SENDING = (StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE)


def _sendable(conn: Connection, stream_id: int) -> int:
    """How many bytes the application may send on `stream_id` now (0 if it may not)."""
    stream = conn.streams.get(stream_id)
    if conn.state is not ConnectionState.OPEN or stream is None or stream.state not in _SENDING:
        return 0
    return conn.local_flow_control_window(stream_id)


def _react(conn: Connection, event: protocol.Event, reads: int) -> None:
    """What a daemon does with `event`; every call is one the API allows in that state."""
    if isinstance(event, protocol.AuthenticationRequested):
        try:
            conn.accept_authentication(event.public_key)
        except RemoteProtocolError as exc:
            assert exc.error_code == ErrorCode.AUTHENTICATION_FAILED
    elif isinstance(event, protocol.DataReceived):
        conn.acknowledge_received_data(event.stream_id, event.flow_controlled_length)
        echo = event.data[: _sendable(conn, event.stream_id)]
        if echo:
            conn.send_data(event.stream_id, echo)
    elif isinstance(event, protocol.StreamOpened):
        if _sendable(conn, event.stream_id):
            conn.send_data(event.stream_id, b"+")
        if reads % 3 == 2 and event.stream_id in conn.streams:
            conn.reset_stream(event.stream_id)
    elif isinstance(event, protocol.StreamEnded):
        stream = conn.streams.get(event.stream_id)
        if conn.state is ConnectionState.OPEN and stream is not None and stream.state in _SENDING:
            conn.end_stream(event.stream_id)
    elif isinstance(event, protocol.PingReceived) and conn.state is ConnectionState.OPEN:
        conn.ping(event.opaque)


def serve(conn: Connection, data: bytes, chunk_bytes: int) -> None:
    """Feed `data` in reads of `chunk_bytes`, acting on each read's events before the next,
    as the daemons do; the calls it makes must never raise (a LocalProtocolError here is a
    bug of the connection's bookkeeping, since `_react` asks only what the state allows)."""
    for reads, start in enumerate(range(0, len(data), chunk_bytes)):
        if conn.state is ConnectionState.CLOSED:
            return
        events, code = receive(conn, data[start : start + chunk_bytes])
        for event in events:
            if _closed(conn):
                return
            _react(conn, event, reads)
        if code is not None:
            return
    if conn.state is not ConnectionState.CLOSED:
        conn.close()
        receive(conn, b"")


def check(make: Callable[[], tuple[Connection, Connection]], data: bytes) -> None:
    """The whole contract: `make()` gives (connection under test, its real peer)."""
    if len(data) < 2:
        return  # b"" would mean EOF, which every target reaches at the end anyway
    chunk_bytes, data = data[0] % 17, data[1:]
    whole, peer = make()
    split, _ = make()
    events, code = feed(whole, data, 0)
    split_events, split_code = feed(split, data, chunk_bytes or 1)
    # How reads split a byte stream must not change what it means. When it raises, the
    # events of earlier reads of the split feed were delivered; the whole feed's were not.
    assert code == split_code, (code, split_code)
    if code is None:
        assert events == split_events, (events, split_events)
        assert whole.state is split.state
    assert whole.data_to_send() == split.data_to_send() or code is not None

    # A server with an AUTH pending decides; the signature check must not raise otherwise.
    for conn in (whole, split):
        if conn.state is ConnectionState.AUTH_PENDING:
            request = next(
                e for e in events + split_events if isinstance(e, protocol.AuthenticationRequested)
            )
            try:
                conn.accept_authentication(request.public_key)
            except RemoteProtocolError as exc:
                assert exc.error_code == ErrorCode.AUTHENTICATION_FAILED
                assert _closed(conn)  # a call, since mypy holds the state narrowed
        if not _closed(conn):
            receive(conn, b"")  # EOF: ConnectionClosed, or an error for a cut-off frame

    # What the connection queued in answer (PING acks, WINDOW, GOAWAY) is valid protocol.
    answer = whole.data_to_send()
    if answer and peer.state is not ConnectionState.CLOSED:
        receive(peer, answer)

    # The same bytes to a connection whose application acts on them as they come, and what
    # it sent in all (credit, echoes, ends, resets, GOAWAY) to its peer.
    app, app_peer = make()
    serve(app, data, chunk_bytes or max(1, len(data)))
    answer = app.data_to_send()
    if answer and app_peer.state is not ConnectionState.CLOSED:
        receive(app_peer, answer)
