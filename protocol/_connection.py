"""The sans-IO connection: bytes in, events out; method calls in, bytes out.

Drives the connection's and every stream's state tables, both levels of credit and the
handshake's rules (`_state`, `_streams`, `_windows`, `_handshake`). It must not know sockets,
trio, clocks or randomness: the server's nonce comes in through the constructor, and keepalive
timing belongs to the caller (SPEC.md 3, 7, 8, 9).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from ._errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from ._events import (
    AuthenticationRequested,
    ConnectionClosed,
    ConnectionTerminated,
    DataReceived,
    Event,
    HandshakeComplete,
    MessageReceived,
    PingAcknowledged,
    PingReceived,
    StreamEnded,
    StreamOpened,
    StreamReset,
    WindowUpdated,
)
from ._frames import (
    HANDSHAKE_MAX_FRAME_BYTES,
    HEADER,
    HEADER_BYTES,
    Flag,
    FrameType,
    check_header,
    encode_frame,
)
from ._handshake import DATA_CONNECTIONS, SUPPORTED_VERSIONS, Credentials, Handshake, Settings
from ._messages import (
    MAX_STREAM_ID,
    NONCE_BYTES,
    AppMessage,
    Auth,
    AuthKind,
    AuthOk,
    Body,
    GoAway,
    Hello,
    Open,
    Ping,
    Reset,
    WindowUpdate,
    decode_body,
    encode_body,
)
from ._state import ALLOWED, TRANSITIONS, ConnectionInput, ConnectionState, Role
from ._streams import Stream, StreamInput, StreamState, next_state
from ._windows import WindowManager

__all__ = ["SETUP_SERVICE", "Connection"]

# The service of the streams that carry a relayed setup session to an install-mode client
# (SPEC.md 7.4).
SETUP_SERVICE: Final = "setup"
#: Unanswered PINGs allowed between two `data_to_send` calls before the peer counts as flooding.
MAX_PENDING_PING_ACKS: Final = 32
#: Bytes of frames the peer's traffic calls for (RESETs of refused or peer-opened streams, PING
#: ACKs, WINDOWs) allowed between two `data_to_send` calls: a peer that writes but never reads
#: would otherwise grow `_out` without bound (SPEC.md 9.3). Our own DATA is bounded by the
#: peer's windows, and messages by the application (the tunnel's `max_unsent_messages`).
MAX_OUTBOUND_CONTROL_BYTES: Final = 16 * 1024


_F = FrameType
_I = ConnectionInput
_DATA: Final = int(FrameType.DATA)
_END_STREAM: Final = int(Flag.END_STREAM)
_pack_header = HEADER.pack
_unpack_header = HEADER.unpack_from
_OPEN: Final = ConnectionState.OPEN
# Sending is allowed in these stream states without a change of state (SPEC.md 7).
_SENDING_OPEN: Final = StreamState.OPEN
_SENDING_HCR: Final = StreamState.HALF_CLOSED_REMOTE


def _encode_window(stream_id: int, increment: int) -> bytes:
    return encode_frame(FrameType.WINDOW, 0, stream_id, encode_body(WindowUpdate(increment)))


class Connection:
    """One end of a nascloud protocol connection.

    Client: ``Connection(Role.CLIENT, credentials=..., server_name=...)`` queues HELLO at once.
    Server: ``Connection(Role.SERVER, server_name=..., nonce=os.urandom(32))``.
    Feed received bytes to `receive_data` (``b""`` at EOF), send what `data_to_send` returns.
    """

    # Slots, not a __dict__: a relay holds one Connection per tunnel, thousands idle.
    __slots__ = (
        "_allowed",
        "_chunks",
        "_frame",
        "_goaway_last_stream",
        "_handshake",
        "_have",
        "_header_buf",
        "_highest_peer_stream",
        "_last_processed_stream",
        "_next_stream_id",
        "_out",
        "_peer",
        "_peer_streams_open",
        "_pending_ping_acks",
        "_provoked_bytes",
        "_receive_limit",
        "_send_frame_limit",
        "_window",
        "capabilities",
        "goaway_received",
        "goaway_sent",
        "peer_kind",
        "peer_name",
        "peer_public_key",
        "role",
        "server_name",
        "settings",
        "state",
        "streams",
        "version",
    )

    def __init__(
        self,
        role: Role,
        *,
        server_name: str,
        credentials: Credentials | None = None,
        nonce: bytes | None = None,
        settings: Settings | None = None,
        accepted_kinds: frozenset[str] = AuthKind.ALL,
    ) -> None:
        if not server_name or len(server_name) > 253:
            raise LocalProtocolError("server_name must be 1 to 253 characters")
        if role is Role.CLIENT and credentials is None:
            raise LocalProtocolError("a client connection needs credentials")
        if role is Role.SERVER and (not isinstance(nonce, bytes) or len(nonce) != NONCE_BYTES):
            raise LocalProtocolError(f"a server connection needs a fresh {NONCE_BYTES}-byte nonce")
        self.role = role
        self.server_name = server_name
        self.settings = settings or Settings()
        self.state = ConnectionState.AWAIT_HELLO
        self._allowed = ALLOWED[(role, self.state)]
        self.version = 0
        self.capabilities: frozenset[str] = frozenset()
        self.peer_name = ""
        self.peer_kind = ""
        self.peer_public_key = b""  # server: the key the client authenticated with
        self._handshake = Handshake(credentials, nonce or b"", accepted_kinds)

        # Outbound: a list of byte strings, joined once by data_to_send.
        self._out: list[bytes] = []
        self._pending_ping_acks = 0
        self._provoked_bytes = 0  # see MAX_OUTBOUND_CONTROL_BYTES

        # Inbound parser state: a partial header, or a header whose body is incomplete.
        self._header_buf = bytearray()
        self._frame: tuple[int, int, int, int] | None = None
        self._chunks: list[bytes | memoryview] = []
        self._have = 0
        self._receive_limit = HANDSHAKE_MAX_FRAME_BYTES

        # Peer limits, known once its HELLO arrives.
        self._peer = Hello(versions=(1,))
        self._send_frame_limit = HANDSHAKE_MAX_FRAME_BYTES

        # Streams and flow control (SPEC.md 7, 8).
        self.streams: dict[int, Stream] = {}
        self._next_stream_id = 1 if role is Role.CLIENT else 2
        self._highest_peer_stream = 0  # highest id the peer opened, accepted or refused
        self._last_processed_stream = 0  # highest peer stream we accepted; GOAWAY carries it
        self._peer_streams_open = 0
        # The connection's credit; the send side is the peer's to announce, in its HELLO.
        self._window = WindowManager(0, 0, self.settings.connection_window_bytes)
        self.goaway_sent = False
        self.goaway_received = False
        self._goaway_last_stream = MAX_STREAM_ID

        if role is Role.CLIENT:
            self._queue(FrameType.HELLO, 0, 0, self.settings.hello(SUPPORTED_VERSIONS))

    # -- output ----------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Everything queued for the peer since the last call, as one byte string."""
        out = self._out
        self._pending_ping_acks = 0
        self._provoked_bytes = 0
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    def _queue(self, frame_type: int, flags: int, stream_id: int, body: Body) -> None:
        self._out.append(encode_frame(frame_type, flags, stream_id, encode_body(body)))

    def _queue_provoked(self, frame: bytes) -> None:
        """Queue a frame the peer's traffic calls for, counting it against
        MAX_OUTBOUND_CONTROL_BYTES; `receive_data` checks the count (SPEC.md 9.3)."""
        self._out.append(frame)
        self._provoked_bytes += len(frame)

    # -- handshake (server side decisions) ---------------------------------------------------

    def accept_authentication(self, registered_key: bytes) -> HandshakeComplete:
        """Server: check the pending AUTH against the key registered for its name.

        On success AUTH_OK is queued and the connection is open. On failure GOAWAY is queued
        and RemoteProtocolError(AUTHENTICATION_FAILED) is raised.
        """
        handshake = self._handshake
        auth = handshake.pending_auth
        if self.state is not ConnectionState.AUTH_PENDING or auth is None:
            raise LocalProtocolError(f"no authentication is pending (state: {self.state.value})")
        if not handshake.verify(auth, registered_key, self.version, self.server_name):
            self.reject_authentication()
            raise RemoteProtocolError("authentication failed", ErrorCode.AUTHENTICATION_FAILED)
        handshake.pending_auth = None
        self.peer_name, self.peer_kind = auth.name, auth.kind
        self.peer_public_key = auth.public_key
        self._queue(FrameType.AUTH_OK, 0, 0, AuthOk(name=auth.name))
        self._open(_I.SEND_AUTH_OK)
        return HandshakeComplete(self.version, self.capabilities, auth.kind, auth.name)

    def reject_authentication(self) -> None:
        """Server: refuse the pending AUTH. The peer learns nothing about why."""
        if self.state is not ConnectionState.AUTH_PENDING:
            raise LocalProtocolError(f"no authentication is pending (state: {self.state.value})")
        self._handshake.pending_auth = None
        self._terminate(ErrorCode.AUTHENTICATION_FAILED, "authentication failed")

    def _open(self, event: ConnectionInput) -> None:
        self._move(event)
        self._window.send_window = self._peer.connection_window_bytes
        self._send_frame_limit = self._peer.max_frame_bytes
        self._receive_limit = self.settings.max_frame_bytes

    # -- streams (local actions) -------------------------------------------------------------

    def open_stream(self, request: Open) -> int:
        """Open a stream to `request.service` on the peer; returns its id."""
        self._require_open()
        if self.goaway_sent or self.goaway_received:
            raise LocalProtocolError("the connection is going away; no new streams")
        if len(self.streams) - self._peer_streams_open >= self._peer.max_streams:
            raise LocalProtocolError(
                f"the peer allows {self._peer.max_streams} concurrent streams",
                ErrorCode.REFUSED_STREAM,
            )
        stream_id = self._next_stream_id
        if stream_id > MAX_STREAM_ID:
            raise LocalProtocolError("stream ids are exhausted; open a new connection")
        if request.data_token is not None and DATA_CONNECTIONS not in self.capabilities:
            raise LocalProtocolError("the peer did not offer data connections")
        self._next_stream_id += 2
        self.streams[stream_id] = Stream(
            stream_id, self._peer.stream_window_bytes, self.settings.stream_window_bytes
        )
        self._queue(FrameType.OPEN, 0, stream_id, request)
        return stream_id

    def local_flow_control_window(self, stream_id: int) -> int:
        """How many bytes `send_data` accepts for this stream right now."""
        return self._local_stream(stream_id).send_credit(self._window)

    def send_data(self, stream_id: int, data: bytes, *, end_stream: bool = False) -> None:
        """Queue `data` on a stream, split into frames of the peer's maximum size.

        The data must fit the flow-control window (`local_flow_control_window`). A bytes
        object is queued as it is and copied once, by `data_to_send`.
        """
        stream = self.streams.get(stream_id)
        if stream is None or self.state is not ConnectionState.OPEN:
            stream = self._local_stream(stream_id)  # raises the right error
        if stream.state is not _SENDING_OPEN and stream.state is not _SENDING_HCR:
            self._transition(stream, StreamInput.SEND_DATA)  # raises
        size = len(data)
        window = self._window
        if size > stream.send_window or size > window.send_window:
            raise LocalProtocolError(
                f"{size} bytes exceed the flow-control window ({stream.send_credit(window)})",
                ErrorCode.FLOW_CONTROL_ERROR,
            )
        if type(data) is not bytes:
            data = bytes(data)  # a caller may reuse its buffer once we return
        stream.send_window -= size
        window.send_window -= size
        limit = self._send_frame_limit
        out = self._out
        if size <= limit:
            out.append(_pack_header(_DATA, _END_STREAM if end_stream else 0, stream_id, size))
            if size:
                out.append(data)
        else:
            view = memoryview(data)
            for start in range(0, size, limit):
                chunk = view[start : start + limit]
                flags = _END_STREAM if end_stream and start + limit >= size else 0
                out.append(_pack_header(_DATA, flags, stream_id, len(chunk)))
                out.append(bytes(chunk))
        if end_stream:
            self._transition(stream, StreamInput.SEND_END)

    def end_stream(self, stream_id: int) -> None:
        """Send END_STREAM: we will send no more data on this stream."""
        stream = self._local_stream(stream_id)
        self._transition(stream, StreamInput.SEND_END)
        self._out.append(HEADER.pack(FrameType.DATA, Flag.END_STREAM, stream_id, 0))

    def reset_stream(self, stream_id: int, error_code: int = ErrorCode.CANCEL) -> None:
        """Abandon a stream in both directions. Resetting a closed stream does nothing."""
        self._require_open()
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        self._transition(stream, StreamInput.SEND_RESET)
        frame = encode_frame(FrameType.RESET, 0, stream_id, encode_body(Reset(error_code)))
        if stream_id % 2 == self._next_stream_id % 2:
            self._out.append(frame)
        else:
            # The peer can open streams as fast as it likes; refusing each is its doing.
            self._queue_provoked(frame)

    def acknowledge_received_data(self, stream_id: int, length: int) -> None:
        """The application consumed `length` bytes of the stream: give the credit back.

        Call it for every DataReceived, also for data that is discarded. WINDOW frames go out
        once half a window has been given back (as h2 does), so a reader that consumes a byte
        at a time does not cause a frame per byte.
        """
        window = self._window
        if length < 0 or length > window.unacknowledged:
            raise LocalProtocolError(
                f"acknowledged {length} bytes, but only {window.unacknowledged} are unacknowledged"
            )
        increment = window.process_bytes(length)
        if increment:
            self._queue_provoked(_encode_window(0, increment))
        stream = self.streams.get(stream_id)
        # Once the peer has ended the stream its credit is moot; only the connection's counts.
        if stream is None or stream.state is StreamState.HALF_CLOSED_REMOTE:
            return
        increment = stream.process_bytes(length)
        if increment:
            self._queue_provoked(_encode_window(stream_id, increment))

    # -- connection-level local actions --------------------------------------------------------

    def ping(self, opaque: bytes) -> None:
        """Send PING with 8 opaque bytes; PingAcknowledged comes back with them."""
        self._require_open()
        self._queue(FrameType.PING, 0, 0, Ping(opaque=opaque))

    def send_message(self, message: AppMessage) -> None:
        """Send an application message (SPEC.md 5)."""
        self._require_open()
        self._queue(FrameType.MESSAGE, 0, 0, message)

    def close(self, error_code: int = ErrorCode.NO_ERROR, message: str = "") -> None:
        """Send GOAWAY. With NO_ERROR, streams already open may finish (graceful drain);
        with any other code the connection is closed at once."""
        if self.state is ConnectionState.CLOSED:
            return
        event = _I.SEND_GOAWAY if error_code == ErrorCode.NO_ERROR else _I.SEND_GOAWAY_ERROR
        if TRANSITIONS[(self.state, event)] is ConnectionState.CLOSED:
            self._terminate(error_code, message, event)
            return
        if not self.goaway_sent:
            self.goaway_sent = True
            self._queue(
                FrameType.GOAWAY,
                0,
                0,
                GoAway(
                    last_stream_id=self._last_processed_stream,
                    error_code=error_code,
                    message=message,
                ),
            )

    @property
    def connection_send_window(self) -> int:
        """Bytes we may still send on the connection, all streams together."""
        return self._window.send_window

    @property
    def connection_receive_window(self) -> int:
        """Bytes the peer may still send on the connection, all streams together."""
        return self._window.receive_window

    @property
    def open_stream_count(self) -> int:
        return len(self.streams)

    @property
    def local_streams_allowed(self) -> int:
        """How many streams the peer lets us have open at once (its HELLO's max_streams)."""
        return self._peer.max_streams

    def _terminate(
        self, error_code: int, message: str, event: ConnectionInput = _I.SEND_GOAWAY_ERROR
    ) -> None:
        """Queue a final GOAWAY and close; nothing else is sent or accepted afterwards."""
        if self.state is ConnectionState.CLOSED:
            return
        self.goaway_sent = True
        self._queue(
            FrameType.GOAWAY,
            0,
            0,
            GoAway(
                last_stream_id=self._last_processed_stream,
                error_code=error_code,
                message=message[:256],
            ),
        )
        self._move(event)

    def _move(self, event: ConnectionInput) -> ConnectionState:
        """Enter the state the table gives for `event` (SPEC.md 9.1); closing drops the streams."""
        state = TRANSITIONS.get((self.state, event))
        if state is None:  # a bug here: ALLOWED refuses the peer's frames before they get here
            raise LocalProtocolError(f"cannot {event.value} in state {self.state.value}")
        self.state = state
        self._allowed = ALLOWED.get((self.role, state), frozenset())
        if state is ConnectionState.CLOSED:
            self.streams.clear()
        return state

    def _require_open(self) -> None:
        if self.state is not ConnectionState.OPEN:
            raise LocalProtocolError(f"the connection is not open (state: {self.state.value})")

    def _local_stream(self, stream_id: int) -> Stream:
        self._require_open()
        stream = self.streams.get(stream_id)
        if stream is None:
            raise LocalProtocolError(f"stream {stream_id} is not open", ErrorCode.STREAM_CLOSED)
        return stream

    def _transition(self, stream: Stream, event: StreamInput) -> None:
        new = next_state(stream.state, event)
        if new is None:
            message = f"cannot {event.value} on stream {stream.stream_id} ({stream.state.value})"
            if event.name.startswith("SEND"):
                raise LocalProtocolError(message, ErrorCode.STREAM_CLOSED)
            raise RemoteProtocolError(message, ErrorCode.STREAM_CLOSED)
        stream.state = new
        if new is StreamState.CLOSED:
            self._forget(stream.stream_id)

    def _forget(self, stream_id: int) -> None:
        if self.streams.pop(stream_id, None) is not None and (
            stream_id % 2 != self._next_stream_id % 2
        ):
            self._peer_streams_open -= 1

    # -- input -------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Parse bytes from the peer; ``b""`` means the transport reached EOF.

        Returns the events in order. Raises RemoteProtocolError (with GOAWAY queued) if the
        peer broke the protocol; any other exception is a bug.
        """
        if self.state is ConnectionState.CLOSED and not data:
            return [ConnectionClosed()]
        if self.state is ConnectionState.CLOSED:
            raise LocalProtocolError("receive_data on a closed connection")
        events: list[Event] = []
        try:
            if not data:
                if self._header_buf or self._frame is not None:
                    raise RemoteProtocolError("connection closed in the middle of a frame")
                self._move(_I.RECV_EOF)
                events.append(ConnectionClosed())
            else:
                self._parse(data if type(data) is bytes else bytes(data), events)
            if self._provoked_bytes > MAX_OUTBOUND_CONTROL_BYTES:
                self._check_provoked()
        except RemoteProtocolError as exc:
            self._terminate(exc.error_code, str(exc))
            raise
        return events

    def _check_provoked(self) -> None:
        """Checked once a read is parsed, not per frame: one read adds about its own size at
        most, and what the application queued for the peer's traffic since counts too."""
        if self.state is not ConnectionState.CLOSED:
            raise RemoteProtocolError(
                f"{self._provoked_bytes} bytes of replies queued for a peer that does not read",
                ErrorCode.RATE_LIMITED,
            )

    def _parse(self, data: bytes, events: list[Event]) -> None:
        size = len(data)
        pos = 0
        if not self._header_buf and self._frame is None and self.state is _OPEN:
            pos = self._parse_data_frames(data, events)
        while pos < size and self.state is not ConnectionState.CLOSED:
            frame = self._frame
            if frame is not None:
                # Collect the rest of a body that began in an earlier read; one join copies it.
                need = frame[3] - self._have
                take = min(need, size - pos)
                self._chunks.append(memoryview(data)[pos : pos + take])
                self._have += take
                pos += take
                if take < need:
                    return
                body = b"".join(self._chunks)
                self._frame = None
                self._chunks = []
                self._have = 0
                self._dispatch(frame[0], frame[1], frame[2], body, events)
                continue
            if self._header_buf or size - pos < HEADER_BYTES:
                take = min(HEADER_BYTES - len(self._header_buf), size - pos)
                self._header_buf += data[pos : pos + take]
                pos += take
                if len(self._header_buf) < HEADER_BYTES:
                    return
                frame_type, flags, stream_id, length = HEADER.unpack(self._header_buf)
                self._header_buf.clear()
            else:
                frame_type, flags, stream_id, length = HEADER.unpack_from(data, pos)
                pos += HEADER_BYTES
            check_header(frame_type, stream_id, length, self._receive_limit)
            if size - pos >= length:
                body = data[pos : pos + length]
                pos += length
                if frame_type == _DATA and self.state is ConnectionState.OPEN:
                    self._on_data(flags, stream_id, body, events)
                else:
                    self._dispatch(frame_type, flags, stream_id, body, events)
            else:
                self._frame = (frame_type, flags, stream_id, length)
                if pos < size:
                    self._chunks.append(memoryview(data)[pos:])
                    self._have = size - pos
                return

    def _parse_data_frames(self, data: bytes, events: list[Event]) -> int:
        """The hot path: whole DATA frames on streams in good standing, inlined.

        Returns where it stopped; `_parse` handles everything else, with every check.
        """
        size = len(data)
        pos = 0
        unpack = _unpack_header
        streams = self.streams
        window = self._window
        limit = self._receive_limit
        append = events.append
        while size - pos >= HEADER_BYTES:
            frame_type, flags, stream_id, length = unpack(data, pos)
            end = pos + HEADER_BYTES + length
            if frame_type != _DATA or length > limit or end > size or flags & ~_END_STREAM:
                break
            stream = streams.get(stream_id)
            if (
                stream is None
                or length > stream.receive_window
                or length > window.receive_window
                or stream.state is StreamState.HALF_CLOSED_REMOTE
            ):
                break
            if length:
                body = data[pos + HEADER_BYTES : end]
                # WindowManager.window_consumed at both levels, less the checks made above.
                window.receive_window -= length
                stream.receive_window -= length
                window.unacknowledged += length
                stream.unacknowledged += length
                append(DataReceived(stream_id, body, length))
            if flags:
                self._transition(stream, StreamInput.RECV_END)
                append(StreamEnded(stream_id))
            pos = end
        return pos

    def _dispatch(
        self, frame_type: int, flags: int, stream_id: int, body: bytes, events: list[Event]
    ) -> None:
        if frame_type == _DATA and self.state is ConnectionState.OPEN:
            self._on_data(flags, stream_id, body, events)
            return
        if frame_type not in self._allowed:
            raise RemoteProtocolError(
                f"unexpected {FrameType(frame_type).name} frame in state {self.state.value}"
            )
        _HANDLERS[frame_type](self, flags, stream_id, body, events)

    # -- frame handlers ----------------------------------------------------------------------

    def _on_data(self, flags: int, stream_id: int, body: bytes, events: list[Event]) -> None:
        length = len(body)
        self._window.window_consumed(length)
        stream = self.streams.get(stream_id)
        if stream is None:
            self._check_known_stream(stream_id)
            # A stream we reset may still receive frames in flight: drop them, but give the
            # connection credit back, since no application will ever consume them.
            if length:
                self._window.unacknowledged += length
                self.acknowledge_received_data(stream_id, length)
            return
        if stream.state is StreamState.HALF_CLOSED_REMOTE:
            self._transition(stream, StreamInput.RECV_DATA)  # raises STREAM_CLOSED
        if length:
            stream.window_consumed(length)
            stream.unacknowledged += length
            self._window.unacknowledged += length
            events.append(DataReceived(stream_id, body, length))
        if flags & _END_STREAM:
            self._transition(stream, StreamInput.RECV_END)
            events.append(StreamEnded(stream_id))

    def _check_known_stream(self, stream_id: int) -> None:
        """A frame for a stream that is not open: fine if the stream existed once."""
        ours = stream_id % 2 == self._next_stream_id % 2
        if (ours and stream_id >= self._next_stream_id) or (
            not ours and stream_id > self._highest_peer_stream
        ):
            raise RemoteProtocolError(f"frame for stream {stream_id}, which was never opened")

    def _on_hello(self, flags: int, stream_id: int, body: bytes, events: list[Event]) -> None:
        hello = decode_body(Hello, body)
        self.version, self.capabilities, reply = self._handshake.answer_hello(
            hello, self.settings, self.server_name
        )
        self._peer = hello
        if self.role is Role.SERVER:
            self._queue(FrameType.HELLO, 0, 0, reply)
            self._move(_I.SEND_HELLO)
        else:
            self._queue(FrameType.AUTH, 0, 0, reply)
            self._move(_I.SEND_AUTH)

    def _on_auth(self, flags: int, stream_id: int, body: bytes, events: list[Event]) -> None:
        auth = decode_body(Auth, body)
        try:
            self._handshake.receive_auth(auth)
        except RemoteProtocolError:
            # The peer learns only that it failed, as when its signature does not verify.
            self._terminate(ErrorCode.AUTHENTICATION_FAILED, "authentication failed")
            raise
        self._move(_I.RECV_AUTH)
        events.append(AuthenticationRequested(auth.kind, auth.name, auth.public_key))

    def _on_auth_ok(self, flags: int, stream_id: int, body: bytes, events: list[Event]) -> None:
        credentials = self._handshake.check_auth_ok(decode_body(AuthOk, body))
        self.peer_name, self.peer_kind = self.server_name, "server"
        self._open(_I.RECV_AUTH_OK)
        events.append(
            HandshakeComplete(self.version, self.capabilities, credentials.kind, self.server_name)
        )

    def _on_open(self, flags: int, stream_id: int, body: bytes, events: list[Event]) -> None:
        request = decode_body(Open, body)
        if stream_id % 2 == self._next_stream_id % 2:
            raise RemoteProtocolError(f"peer opened stream {stream_id}, which has our parity")
        if stream_id <= self._highest_peer_stream:
            raise RemoteProtocolError(
                f"stream {stream_id} opened after stream {self._highest_peer_stream}"
            )
        self._highest_peer_stream = stream_id
        if self.goaway_sent or self._peer_streams_open >= self.settings.max_streams:
            # Refused, not processed: frames already in flight for it are dropped quietly.
            self._queue_provoked(
                encode_frame(
                    FrameType.RESET, 0, stream_id, encode_body(Reset(ErrorCode.REFUSED_STREAM))
                )
            )
            return
        self._last_processed_stream = stream_id
        self._peer_streams_open += 1
        self.streams[stream_id] = Stream(
            stream_id, self._peer.stream_window_bytes, self.settings.stream_window_bytes
        )
        events.append(StreamOpened(stream_id, request))

    def _on_reset(self, flags: int, stream_id: int, body: bytes, events: list[Event]) -> None:
        reset = decode_body(Reset, body)
        stream = self.streams.get(stream_id)
        if stream is None:
            self._check_known_stream(stream_id)
            return
        self._transition(stream, StreamInput.RECV_RESET)
        events.append(StreamReset(stream_id, reset.error_code))

    def _on_window(self, flags: int, stream_id: int, body: bytes, events: list[Event]) -> None:
        increment = decode_body(WindowUpdate, body).increment
        window = self._window if stream_id == 0 else self.streams.get(stream_id)
        if window is None:
            self._check_known_stream(stream_id)
            return
        window.send_window_opened(increment)
        events.append(WindowUpdated(stream_id, increment))

    def _on_ping(self, flags: int, stream_id: int, body: bytes, events: list[Event]) -> None:
        ping = decode_body(Ping, body)
        if flags & Flag.ACK:
            events.append(PingAcknowledged(ping.opaque))
            return
        self._pending_ping_acks += 1
        if self._pending_ping_acks > MAX_PENDING_PING_ACKS:
            raise RemoteProtocolError("PING flood", ErrorCode.RATE_LIMITED)
        self._queue_provoked(encode_frame(FrameType.PING, Flag.ACK, 0, encode_body(ping)))
        events.append(PingReceived(ping.opaque))

    def _on_goaway(self, flags: int, stream_id: int, body: bytes, events: list[Event]) -> None:
        goaway = decode_body(GoAway, body)
        self.goaway_received = True
        self._goaway_last_stream = min(self._goaway_last_stream, goaway.last_stream_id)
        event = _I.RECV_GOAWAY if goaway.error_code == ErrorCode.NO_ERROR else _I.RECV_GOAWAY_ERROR
        if self._move(event) is ConnectionState.OPEN:
            # Streams we opened that the peer never processed will not be: refuse them here.
            ours = [
                sid
                for sid in self.streams
                if sid % 2 == self._next_stream_id % 2 and sid > goaway.last_stream_id
            ]
            for sid in ours:
                self._forget(sid)
                events.append(StreamReset(sid, ErrorCode.REFUSED_STREAM, remote=False))
        events.append(
            ConnectionTerminated(goaway.error_code, goaway.last_stream_id, goaway.message)
        )

    def _on_message(self, flags: int, stream_id: int, body: bytes, events: list[Event]) -> None:
        message: AppMessage = decode_body(None, body)
        events.append(MessageReceived(message))


# Frame type -> handler, shared by every connection (a dict of bound methods each was memory).
_HANDLERS: Final[dict[int, Callable[[Connection, int, int, bytes, list[Event]], None]]] = {
    FrameType.HELLO: Connection._on_hello,
    FrameType.AUTH: Connection._on_auth,
    FrameType.AUTH_OK: Connection._on_auth_ok,
    FrameType.OPEN: Connection._on_open,
    FrameType.RESET: Connection._on_reset,
    FrameType.WINDOW: Connection._on_window,
    FrameType.PING: Connection._on_ping,
    FrameType.GOAWAY: Connection._on_goaway,
    FrameType.MESSAGE: Connection._on_message,
}
