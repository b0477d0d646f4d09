"""The Trio binding: a protocol `Connection` over a Trio stream, shared by relayd and the agent.

One reader task feeds the connection, one writer task is the only caller of the transport's
`send_all`. Backpressure comes from flow-control credit only, so a stream whose reader stalls
never stalls the others. Knows nothing of relayd, the agent, TLS or the registry.
"""

from __future__ import annotations

import contextlib
import math
import random
import struct
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVarTuple, Unpack

import trio
from trio.lowlevel import ParkingLot, checkpoint

from protocol import (
    AppMessage,
    Connection,
    ConnectionState,
    ConnectionTerminated,
    DataReceived,
    ErrorCode,
    Event,
    HandshakeComplete,
    MessageReceived,
    Open,
    PingAcknowledged,
    RemoteProtocolError,
    StreamEnded,
    StreamOpened,
    StreamReset,
    WindowUpdated,
)

from ._ending import TRANSPORT_ERRORS
from ._inbox import Inbox
from ._stream import TunnelStream
from ._tasks import BoundedTasks

__all__ = ["DEFAULT_MAX_TASKS", "DEFAULT_MAX_UNSENT_MESSAGES", "DEFAULT_RECEIVE_BYTES", "Tunnel"]

# Tunnel.on_message: called by the reader for each application message.
MessageHandler = Callable[["Tunnel", AppMessage], None]

DEFAULT_RECEIVE_BYTES: Final = 256 * 1024
#: The largest share of the keepalive interval a tunnel's wait is shortened by (see __init__).
KEEPALIVE_SPREAD: Final = 0.2
#: Tasks (start_soon) and queued messages (send_message_soon) one tunnel may have at once.
DEFAULT_MAX_TASKS: Final = 64
DEFAULT_MAX_UNSENT_MESSAGES: Final = 64
_PING: Final = struct.Struct("!Q")
_Ts = TypeVarTuple("_Ts")


class Tunnel:
    """A live, authenticated protocol connection over a Trio stream. Use `open_tunnel`."""

    def __init__(
        self,
        transport: trio.abc.Stream,
        conn: Connection,
        *,
        receive_bytes: int = DEFAULT_RECEIVE_BYTES,
        keepalive_interval_s: float | None = None,
        keepalive_timeout_s: float | None = None,
        accept_backlog: int = 64,
        message_backlog: int = 64,
        max_tasks: int = DEFAULT_MAX_TASKS,
        max_unsent_messages: int = DEFAULT_MAX_UNSENT_MESSAGES,
    ) -> None:
        # At most 29 attributes: from 30, CPython 3.11 stops sharing instance dicts' keys and
        # every Tunnel grows by 1.3 KiB (28 now; bench/tunnels.py's target is 32 KiB a tunnel).
        self.transport = transport
        self.conn = conn
        self.handshake: HandshakeComplete | None = None
        #: Why the tunnel ended, once it has.
        self.error: BaseException | None = None
        self.goaway: ConnectionTerminated | None = None
        self.bytes_received = 0
        self._receive_bytes = receive_bytes
        # Each tunnel waits a little less than the interval, by a share fixed at random: tunnels
        # set up together (every agent is back within seconds of a relay's restart) would
        # otherwise ping together, every interval, for as long as they live.
        self._keepalive_interval_s = (
            None
            if keepalive_interval_s is None
            else keepalive_interval_s * (1.0 - KEEPALIVE_SPREAD * random.random())
        )
        self._keepalive_timeout_s = keepalive_timeout_s
        self._streams: dict[int, TunnelStream] = {}
        self._accepts = Inbox[TunnelStream](accept_backlog)
        self._messages = Inbox[AppMessage](message_backlog)
        #: If set (before the first await after open_tunnel returns, to see every message),
        #: application messages go to it, synchronously from the reader, instead of to
        #: receive_message: for a side that answers them without a task waiting per tunnel.
        self.on_message: MessageHandler | None = None
        #: If set (likewise before the first await), streams the peer opens go to it, from the
        #: reader and in the order they were opened, instead of to accept_stream: a stream
        #: then starts without waiting for a task to take it. `wait_no_more_streams` tells
        #: when the peer can open no more.
        self.on_stream: Callable[[TunnelStream], None] | None = None
        self._writer_task: trio.lowlevel.Task | None = None  # the writer, while it sleeps
        self._writer_finished = False
        self._writer_done: trio.Event | None = None  # made when someone waits for it
        self._closing = False
        self._finished = trio.Event()
        self._streams_changed: ParkingLot | None = None  # made when someone drains
        self._pings: dict[int, trio.Event] = {}
        self._ping_counter = 0
        self._last_receive = 0.0
        self._receive_scope: trio.CancelScope | None = None  # the reader's wait, if waiting
        self._pending_events: list[Event] = []
        self._tasks = BoundedTasks(max_tasks)  # bound to the nursery by open_tunnel
        self._max_unsent_messages = max_unsent_messages
        self._unsent_messages = 0  # by send_message_soon, since the writer last took output

    @property
    def closed(self) -> bool:
        return self._finished.is_set()

    # -- the application's API -------------------------------------------------------------

    async def open_stream(self, request: Open) -> TunnelStream:
        """Open a stream as `request` says: to the peer's `service`, for a client, its bytes
        on a data connection if it carries a data token and port."""
        await checkpoint()
        self._check_usable()
        if self.conn.goaway_sent or self.conn.goaway_received:
            raise trio.BrokenResourceError("the tunnel is draining; no new streams")
        stream_id = self.conn.open_stream(request)
        stream = TunnelStream(self, stream_id, request)
        self._streams[stream_id] = stream
        self._wake_writer()
        return stream

    async def accept_stream(self) -> TunnelStream:
        """The next stream the peer opens. Raises BrokenResourceError once the tunnel ends
        or the peer sent GOAWAY."""
        try:
            return await self._accepts.get()
        except trio.EndOfChannel:
            raise trio.BrokenResourceError(self._end_reason()) from None

    async def wait_no_more_streams(self) -> None:
        """Return once the peer can open no more streams: it sent GOAWAY, or the tunnel
        ended. For a side whose streams go to `on_stream`."""
        with contextlib.suppress(trio.EndOfChannel):
            while True:
                await self._accepts.get()  # empty: on_stream takes every stream

    async def send_message(self, message: AppMessage) -> None:
        await checkpoint()
        self._check_usable()
        self.conn.send_message(message)
        self._wake_writer()

    def send_message_soon(self, message: AppMessage) -> bool:
        """Queue a message for the writer without waiting, as from `on_message` in the reader.

        False, and the message dropped, if the tunnel is over or closing, or if
        `max_unsent_messages` already wait for the writer (a peer that sends requests but
        does not read the answers gets no more answers, rather than our memory).
        """
        if self._closing or self.closed or self.conn.state is not ConnectionState.OPEN:
            return False
        if self._unsent_messages >= self._max_unsent_messages:
            return False
        self._unsent_messages += 1
        self.conn.send_message(message)
        self._wake_writer()
        return True

    def start_soon(self, fn: Callable[[Unpack[_Ts]], Awaitable[object]], *args: *_Ts) -> bool:
        """Run `fn(*args)` for no longer than this tunnel lives, in the tunnel's own nursery.

        False, and nothing started, if the tunnel is over or closing, or already runs
        `max_tasks` such tasks (a peer's every message must not get a task of its own). The
        tasks are cancelled when the tunnel ends. An exception from one ends the tunnel and is
        raised out of `open_tunnel`, as in any nursery.
        """
        if self._closing or self.closed:
            return False
        return self._tasks.start_soon(fn, *args)

    @property
    def tasks_running(self) -> int:
        """Tasks started by `start_soon` that have not ended yet."""
        return self._tasks.running

    async def receive_message(self) -> AppMessage:
        """The next application message; BrokenResourceError once the tunnel ends."""
        try:
            return await self._messages.get()
        except trio.EndOfChannel:
            raise trio.BrokenResourceError(self._end_reason()) from None

    async def ping(self) -> float:
        """Round-trip time of a PING, in seconds of trio's clock."""
        self._check_usable()
        self._ping_counter += 1
        token = self._ping_counter
        done = self._pings[token] = trio.Event()
        started = trio.current_time()
        self.conn.ping(_PING.pack(token))
        self._wake_writer()
        try:
            await done.wait()
        finally:
            self._pings.pop(token, None)
        self._check_usable()
        return trio.current_time() - started

    async def drain(self, timeout_s: float) -> None:
        """Graceful stop: GOAWAY, let open streams finish for up to `timeout_s`, then close."""
        if self.conn.state is ConnectionState.OPEN:
            self.conn.close()
            self._wake_writer()
            with trio.move_on_after(timeout_s):
                while self._streams and not self.closed:
                    if self._streams_changed is None:
                        self._streams_changed = ParkingLot()
                    await self._streams_changed.park()
        await self.aclose()

    async def aclose(self, error_code: int = ErrorCode.NO_ERROR, message: str = "") -> None:
        """Close now: GOAWAY (best effort, for up to a second), then the transport."""
        if not self._closing:
            self._closing = True
            if self.conn.state is ConnectionState.OPEN:
                self.conn.close(error_code, message)
            self._wake_writer()
            with trio.move_on_after(1.0) as scope:
                scope.shield = True
                await self._wait_writer_done()
            await trio.aclose_forcefully(self.transport)
            self._finish(None)
        await checkpoint()

    async def wait_closed(self) -> None:
        await self._finished.wait()

    @property
    def why_closed(self) -> str:
        """Why it ended, for a log line: the peer's GOAWAY, an error, or a plain close."""
        return self._end_reason()

    # -- internals -------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self.closed or self._closing or self.conn.state is not ConnectionState.OPEN:
            raise trio.BrokenResourceError(self._end_reason())

    def _end_reason(self) -> str:
        if self.goaway is not None:
            return f"peer sent GOAWAY ({ErrorCode.describe(self.goaway.error_code)})"
        if self.error is not None:
            return f"tunnel closed: {self.error}"
        return "tunnel closed"

    async def _wait_writer_done(self) -> None:
        if self._writer_finished:
            await checkpoint()
            return
        if self._writer_done is None:
            self._writer_done = trio.Event()
        await self._writer_done.wait()

    def _wake_writer(self) -> None:
        task = self._writer_task
        if task is not None:
            self._writer_task = None
            trio.lowlevel.reschedule(task)

    def _acknowledge(self, stream_id: int, length: int) -> None:
        if self.conn.state is ConnectionState.OPEN:
            self.conn.acknowledge_received_data(stream_id, length)
            self._wake_writer()

    def _forget(self, stream_id: int) -> None:
        if self._streams.pop(stream_id, None) is not None and self._streams_changed is not None:
            self._streams_changed.unpark_all()

    def _forget_if_done(self, stream: TunnelStream) -> None:
        # Judged by the stream's own flags: by the time events are dispatched, the connection
        # may already have processed frames (a RESET) that the stream still has to see.
        if stream._send_ended and stream._eof:
            self._forget(stream.stream_id)

    def _finish(self, error: BaseException | None) -> None:
        """The tunnel is over: every waiter wakes up to a broken stream or channel."""
        if self._finished.is_set():
            return
        if error is not None and self.error is None:
            self.error = error
        for stream in list(self._streams.values()):
            stream._break(None)
        self._streams.clear()
        if self._streams_changed is not None:
            self._streams_changed.unpark_all()
        self._accepts.close()
        self._messages.close()
        for waiter in self._pings.values():
            waiter.set()
        self._tasks.close()
        self._closing = True
        self._wake_writer()
        self._finished.set()
        if self._receive_scope is not None:
            self._receive_scope.cancel()  # the reader sees the tunnel finished and stops

    async def _run_background(self) -> None:
        """The reader (keepalive included) until the tunnel ends; then give the writer a
        second to flush and close the transport. One task where there were three: an idle
        tunnel's memory is mostly its tasks (bench/RESULTS.md, "Idle tunnels")."""
        await self._run_reader()
        await self._finished.wait()
        with trio.move_on_after(1.0):
            await self._wait_writer_done()
        await trio.aclose_forcefully(self.transport)

    async def _run_reader(self) -> None:
        conn = self.conn
        self._last_receive = trio.current_time()
        if self._pending_events:
            self._dispatch(self._pending_events)
            self._pending_events = []
        interval = self._keepalive_interval_s
        deadline = math.inf if interval is None else self._last_receive + interval
        try:
            while conn.state is not ConnectionState.CLOSED and not self._finished.is_set():
                # Receiving is cancel-safe on our transports: nothing is read and lost. The
                # scope is also how _finish stops the reader (no second scope per tunnel).
                with trio.move_on_at(deadline) as idle_scope:
                    self._receive_scope = idle_scope
                    data = await self.transport.receive_some(self._receive_bytes)
                self._receive_scope = None
                if self._finished.is_set():
                    return
                if idle_scope.cancelled_caught:
                    if not self._keep_alive():
                        return
                    assert interval is not None
                    deadline = trio.current_time() + interval
                    continue
                self._last_receive = trio.current_time()
                if interval is not None:
                    deadline = self._last_receive + interval
                self.bytes_received += len(data)
                events = conn.receive_data(data)
                self._dispatch(events)
                if not data:
                    break
        except RemoteProtocolError as exc:
            # GOAWAY with the reason is queued: the tunnel is over for its streams at once
            # (the connection takes no more calls), and _run_background gives the writer a
            # second to send it before the transport closes.
            self._finish(exc)
            return
        except TRANSPORT_ERRORS as exc:
            self._finish(exc)
            return
        self._finish(ConnectionResetError("peer closed the tunnel"))

    def _dispatch(self, events: list[Event]) -> None:
        handlers = _HANDLERS
        streams = self._streams
        for event in events:
            if type(event) is DataReceived:
                # The hot path, inline: a table look-up and a call cost DATA about 5% per event
                # (in-process dispatch of 1 KiB DATA events; not seen end to end).
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream._deliver(event.data)
                else:
                    self._acknowledge(event.stream_id, event.flow_controlled_length)
                continue
            handler = handlers.get(type(event))
            if handler is not None:  # the rest (PING, the handshake's) need nothing from us
                handler(self, event)
        self._wake_writer()

    # -- the reader's handlers, one per event type (_HANDLERS) ------------------------------

    def _on_window_updated(self, event: WindowUpdated) -> None:
        if event.stream_id == 0:
            for stream in self._streams.values():
                stream._send_lot.unpark_all()
        elif (one := self._streams.get(event.stream_id)) is not None:
            one._send_lot.unpark_all()

    def _on_stream_ended(self, event: StreamEnded) -> None:
        if (stream := self._streams.get(event.stream_id)) is not None:
            stream._end()
            self._forget_if_done(stream)

    def _on_stream_reset(self, event: StreamReset) -> None:
        if (stream := self._streams.get(event.stream_id)) is not None:
            stream._break(event.error_code)
            self._forget(event.stream_id)

    def _on_message_received(self, event: MessageReceived) -> None:
        if self.on_message is not None:
            self.on_message(self, event.message)
            return
        try:
            self._messages.put_nowait(event.message)
        except trio.WouldBlock:
            # The application is not keeping up with control messages: a peer that floods
            # them loses its tunnel rather than our memory.
            self.conn.close(ErrorCode.RATE_LIMITED, "too many unanswered messages")
            self._finish(RemoteProtocolError("message flood", ErrorCode.RATE_LIMITED))

    def _on_ping_acknowledged(self, event: PingAcknowledged) -> None:
        if len(event.opaque) == _PING.size:
            waiter = self._pings.get(_PING.unpack(event.opaque)[0])
            if waiter is not None:
                waiter.set()

    def _on_connection_terminated(self, event: ConnectionTerminated) -> None:
        self.goaway = event
        self._accepts.close()
        if self.conn.state is ConnectionState.CLOSED:
            self._finish(RemoteProtocolError(self._end_reason(), event.error_code))

    def _on_stream_opened(self, event: StreamOpened) -> None:
        stream = TunnelStream(self, event.stream_id, event.request)
        self._streams[event.stream_id] = stream
        if self.on_stream is not None:
            self.on_stream(stream)
            return
        try:
            self._accepts.put_nowait(stream)
        except (trio.WouldBlock, trio.ClosedResourceError):
            # Nobody is accepting this fast: refuse the stream, keep the tunnel.
            self._forget(event.stream_id)
            self.conn.reset_stream(event.stream_id, ErrorCode.REFUSED_STREAM)

    async def _run_writer(self) -> None:
        conn = self.conn
        try:
            while True:
                out = conn.data_to_send()
                if out:
                    self._unsent_messages = 0
                    await self.transport.send_all(out)
                    continue
                if self._closing:
                    break
                # Sleep until _wake_writer: one task, one waiter, so no parking lot (an idle
                # tunnel's writer sleeps here for its whole life).
                self._writer_task = trio.lowlevel.current_task()

                def abort(_: object) -> trio.lowlevel.Abort:
                    self._writer_task = None
                    return trio.lowlevel.Abort.SUCCEEDED

                await trio.lowlevel.wait_task_rescheduled(abort)
        except TRANSPORT_ERRORS as exc:
            self._finish(exc)
        finally:
            self._writer_finished = True
            if self._writer_done is not None:
                self._writer_done.set()

    def _keep_alive(self) -> bool:
        """The line was idle for a keepalive interval: PING, or declare the peer dead if
        nothing arrived for the timeout. False once the tunnel is over."""
        timeout = self._keepalive_timeout_s
        assert timeout is not None
        idle = trio.current_time() - self._last_receive
        if idle >= timeout:
            self.conn.close(ErrorCode.TIMEOUT, "keepalive timeout")
            self._wake_writer()
            self._finish(TimeoutError(f"no traffic from the peer for {idle:.1f} s"))
            return False
        if self.conn.state is ConnectionState.OPEN:
            self._ping_counter += 1
            self.conn.ping(_PING.pack(self._ping_counter))
            self._wake_writer()
        return True


#: The reader's handler for each event type but DATA (inline in _dispatch), called with the
#: tunnel and the event. (Each takes its own event type; the table cannot say so, hence Any.)
_HANDLERS: Final[dict[type[Event], Callable[[Tunnel, Any], None]]] = {
    WindowUpdated: Tunnel._on_window_updated,
    StreamEnded: Tunnel._on_stream_ended,
    StreamReset: Tunnel._on_stream_reset,
    StreamOpened: Tunnel._on_stream_opened,
    MessageReceived: Tunnel._on_message_received,
    PingAcknowledged: Tunnel._on_ping_acknowledged,
    ConnectionTerminated: Tunnel._on_connection_terminated,
}
