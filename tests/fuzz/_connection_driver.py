"""Feeding fuzz bytes to a `protocol.Connection`, and the contract every target checks.

Contract (SPEC.md 3, protocol/_connection.py): `receive_data` returns events or raises
`RemoteProtocolError` with a wire code; it parses the same bytes the same way however reads
split them; what it queues in answer is valid protocol that its real peer can read.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import protocol
from protocol import Connection, ConnectionState, ErrorCode, RemoteProtocolError, Role, Settings

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
