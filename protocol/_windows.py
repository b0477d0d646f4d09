"""Flow-control credit of one level, a stream or the whole connection (SPEC.md 8).

One class serves both levels, as h2's `windows.py` does; stream id 0 is the connection, as on
the wire. It must not know frames, stream states or the connection: `_connection` feeds it
sizes and sends the WINDOW increments it returns.
"""

from __future__ import annotations

from ._errors import ErrorCode, RemoteProtocolError
from ._messages import MAX_WINDOW

__all__ = ["WindowManager"]


class WindowManager:
    """Both directions of one level's credit.

    send_window: bytes we may still send. receive_window: bytes the peer may still send.
    unacknowledged: bytes delivered to the application and not yet given back; the
    connection counts them as it delivers, apart from `window_consumed`, since DATA that
    breaks the protocol is consumed but never delivered. update_threshold: half the receive
    window we announced, rounded up; credit given back is advertised once it reaches that, at
    least half the window (SPEC.md 8).
    """

    __slots__ = (
        "_pending_credit",
        "receive_window",
        "send_window",
        "stream_id",
        "unacknowledged",
        "update_threshold",
    )

    def __init__(self, stream_id: int, send_window: int, receive_window: int) -> None:
        self.stream_id = stream_id
        self.send_window = send_window
        self.receive_window = receive_window
        # Rounded up: 500 of 1001 is less than half, and SPEC.md 8 says "at least half".
        self.update_threshold = (receive_window + 1) // 2
        self.unacknowledged = 0
        self._pending_credit = 0  # given back by the application, not yet advertised

    def window_consumed(self, size: int) -> None:
        """The peer sent `size` bytes of DATA; more than the window is its fault."""
        if size > self.receive_window:
            where = (
                "the connection flow-control window"
                if self.stream_id == 0
                else f"the flow-control window of stream {self.stream_id}"
            )
            raise RemoteProtocolError(f"DATA exceeds {where}", ErrorCode.FLOW_CONTROL_ERROR)
        self.receive_window -= size

    def process_bytes(self, size: int) -> int:
        """The application consumed `size` bytes (at most the unacknowledged ones count).

        Returns the increment to send in WINDOW now, or 0 while the freed credit is below half
        the announced window, so a reader that consumes a byte at a time does not cause a
        frame per byte.
        """
        # Comparisons, not min(): this runs for every DataReceived, at both levels.
        if size > self.unacknowledged:
            size = self.unacknowledged
        self.unacknowledged -= size
        credit = self._pending_credit + size
        if credit < self.update_threshold:
            self._pending_credit = credit
            return 0
        self._pending_credit = 0
        self.receive_window += credit
        return credit

    def send_window_opened(self, increment: int) -> None:
        """The peer sent WINDOW; a window above 2^31-1 is its fault (SPEC.md 8)."""
        if self.send_window + increment > MAX_WINDOW:
            what = (
                "connection window" if self.stream_id == 0 else f"window of stream {self.stream_id}"
            )
            raise RemoteProtocolError(f"{what} exceeds 2^31-1", ErrorCode.FLOW_CONTROL_ERROR)
        self.send_window += increment

    def send_credit(self, connection: WindowManager) -> int:
        """Bytes this stream may send now: its own window and the `connection`'s both bound it."""
        return max(0, min(self.send_window, connection.send_window))
