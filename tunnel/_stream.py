"""One multiplexed stream of a tunnel, as a `trio.abc.HalfCloseableStream`.

Buffers what the tunnel's reader delivers and gives credit back as the application reads; sends
wait for the peer's credit. Reaches its connection only through its `Tunnel`; knows nothing of
the reader, the writer or who uses the stream.
"""

from __future__ import annotations

import operator
from collections import deque
from typing import TYPE_CHECKING

import trio
from trio.lowlevel import ParkingLot, checkpoint

from protocol import ConnectionState, ErrorCode, Open

if TYPE_CHECKING:
    from ._tunnel import Tunnel

__all__ = ["TunnelStream"]


class TunnelStream(trio.abc.HalfCloseableStream):
    """One multiplexed stream of a tunnel.

    `receive_some` gives credit back as the application consumes data; `send_all` waits for
    credit from the peer. A reset by the peer makes both directions raise BrokenResourceError
    (after data already received has been read, unless the peer had ended cleanly).
    """

    def __init__(
        self,
        tunnel: Tunnel,
        stream_id: int,
        request: Open,
    ) -> None:
        self.stream_id = stream_id
        #: What the OPEN said: the service, the client, and, when the stream's bytes travel
        #: on a data connection (SPEC.md 7.3), its token and port.
        self.request = request
        #: Wire error code of the reset that ended this stream, if one did.
        self.reset_code: int | None = None
        self._tunnel = tunnel
        self._buffer: deque[bytes] = deque()
        self._buffered = 0
        self._eof = False  # the peer ended its side
        self._broken = False  # reset, or the tunnel is gone
        self._closed = False  # we called aclose
        self._send_ended = False  # we sent END_STREAM
        self._receive_busy = False
        self._send_busy = False
        self._receive_lot = ParkingLot()
        self._send_lot = ParkingLot()

    @property
    def bytes_buffered(self) -> int:
        """Bytes received and not yet read by the application."""
        return self._buffered

    # -- receiving -----------------------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError("max_bytes must be >= 1")
        if self._receive_busy:
            raise trio.BusyResourceError("another task is already receiving on this stream")
        self._receive_busy = True
        try:
            await checkpoint()
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("this stream was closed")
                if self._buffer:
                    break
                if self._eof:
                    return b""
                if self._broken:
                    raise trio.BrokenResourceError(self._broken_reason())
                await self._receive_lot.park()
            chunk = self._take(self._buffered if max_bytes is None else max_bytes)
            self._buffered -= len(chunk)
            self._tunnel._acknowledge(self.stream_id, len(chunk))
            return chunk
        finally:
            self._receive_busy = False

    def _take(self, limit: int) -> bytes:
        """Up to `limit` buffered bytes; a lone chunk that fits is returned without a copy."""
        buffer = self._buffer
        first = buffer.popleft()
        if len(first) >= limit or not buffer:
            if len(first) > limit:
                buffer.appendleft(first[limit:])
                return first[:limit]
            return first
        parts = [first]
        size = len(first)
        while buffer and size < limit:
            part = buffer.popleft()
            if size + len(part) > limit:
                buffer.appendleft(part[limit - size :])
                part = part[: limit - size]
            parts.append(part)
            size += len(part)
        return b"".join(parts)

    # -- sending -------------------------------------------------------------------------

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._send_busy:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._send_busy = True
        try:
            await checkpoint()
            self._check_sendable()
            view = memoryview(data).cast("B") if not isinstance(data, bytes) else None
            size = len(data)
            sent = 0
            conn = self._tunnel.conn
            while sent < size:
                window = conn.local_flow_control_window(self.stream_id)
                if window == 0:
                    await self._send_lot.park()
                    self._check_sendable()
                    continue
                end = min(size, sent + window)
                if view is None and sent == 0 and end == size:
                    chunk = data  # the common case: one bytes object, queued without a copy
                else:
                    chunk = bytes((view if view is not None else memoryview(data))[sent:end])
                conn.send_data(self.stream_id, bytes(chunk) if type(chunk) is not bytes else chunk)
                sent = end
                self._tunnel._wake_writer()
        finally:
            self._send_busy = False

    async def wait_send_all_might_not_block(self) -> None:
        if self._send_busy:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._send_busy = True
        try:
            await checkpoint()
            self._check_sendable()
            while self._tunnel.conn.local_flow_control_window(self.stream_id) == 0:
                await self._send_lot.park()
                if self._closed:
                    raise trio.ClosedResourceError("this stream was closed")
                if self._broken:
                    return
        finally:
            self._send_busy = False

    async def send_eof(self) -> None:
        if self._send_busy:
            raise trio.BusyResourceError("another task is sending on this stream")
        await checkpoint()
        if self._closed:
            raise trio.ClosedResourceError("this stream was closed")
        if self._send_ended:
            return
        if self._broken:
            raise trio.BrokenResourceError(self._broken_reason())
        self._send_ended = True
        self._tunnel.conn.end_stream(self.stream_id)
        self._tunnel._wake_writer()
        self._tunnel._forget_if_done(self)

    async def reset(self, error_code: int = ErrorCode.CANCEL) -> None:
        """Abandon the stream in both directions with a reason the peer sees."""
        if not self._closed and not self._broken:
            tunnel = self._tunnel
            if tunnel.conn.state is ConnectionState.OPEN and self.stream_id in tunnel.conn.streams:
                tunnel.conn.reset_stream(self.stream_id, error_code)
                tunnel._wake_writer()
            self._broken = True
        await self.aclose()

    async def aclose(self) -> None:
        """Close both directions: END_STREAM if we had not sent it, and RESET(CANCEL) if the
        peer is still sending. Data not yet read is discarded (its credit goes back)."""
        if not self._closed:
            self._closed = True
            tunnel = self._tunnel
            if not self._broken and tunnel.conn.state is ConnectionState.OPEN:
                if self.stream_id in tunnel.conn.streams:
                    if not self._send_ended:
                        self._send_ended = True
                        tunnel.conn.end_stream(self.stream_id)
                    if not self._eof:
                        tunnel.conn.reset_stream(self.stream_id, ErrorCode.CANCEL)
                tunnel._wake_writer()
            if self._buffered:
                tunnel._acknowledge(self.stream_id, self._buffered)
            self._buffer.clear()
            self._buffered = 0
            tunnel._forget(self.stream_id)
            self._receive_lot.unpark_all()
            self._send_lot.unpark_all()
        await checkpoint()

    def _check_sendable(self) -> None:
        if self._closed or self._send_ended:
            raise trio.ClosedResourceError("this stream was closed for sending")
        if self._broken:
            raise trio.BrokenResourceError(self._broken_reason())

    def _broken_reason(self) -> str:
        if self.reset_code is not None:
            return f"stream reset by peer ({ErrorCode.describe(self.reset_code)})"
        return "the tunnel is closed"

    # -- called by the tunnel's reader -----------------------------------------------------

    def _deliver(self, data: bytes) -> None:
        self._buffer.append(data)
        self._buffered += len(data)
        self._receive_lot.unpark_all()

    def _end(self) -> None:
        self._eof = True
        self._receive_lot.unpark_all()

    def _break(self, reset_code: int | None) -> None:
        self._broken = True
        self.reset_code = reset_code
        self._receive_lot.unpark_all()
        self._send_lot.unpark_all()
