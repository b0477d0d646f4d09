"""Per-stream state: the state machine table, and a stream's credit (SPEC.md 7, 8).

A stream knows nothing of frames or of the connection; `_connection` drives it.
"""

from __future__ import annotations

import enum
from typing import Final

from ._windows import WindowManager

__all__ = ["StreamInput", "StreamState", "next_state"]


class StreamState(enum.Enum):
    OPEN = "open"
    HALF_CLOSED_LOCAL = "half-closed (local)"
    HALF_CLOSED_REMOTE = "half-closed (remote)"
    CLOSED = "closed"


class StreamInput(enum.Enum):
    SEND_DATA = "send DATA"
    SEND_END = "send END_STREAM"
    SEND_RESET = "send RESET"
    RECV_DATA = "receive DATA"
    RECV_END = "receive END_STREAM"
    RECV_RESET = "receive RESET"


_S = StreamState
_I = StreamInput

#: (state, input) -> next state. A missing pair is a protocol violation: by us for SEND_*
#: inputs, by the peer for RECV_* inputs. A stream starts OPEN (OPEN frame sent or received).
TRANSITIONS: Final[dict[tuple[StreamState, StreamInput], StreamState]] = {
    (_S.OPEN, _I.SEND_DATA): _S.OPEN,
    (_S.OPEN, _I.SEND_END): _S.HALF_CLOSED_LOCAL,
    (_S.OPEN, _I.SEND_RESET): _S.CLOSED,
    (_S.OPEN, _I.RECV_DATA): _S.OPEN,
    (_S.OPEN, _I.RECV_END): _S.HALF_CLOSED_REMOTE,
    (_S.OPEN, _I.RECV_RESET): _S.CLOSED,
    (_S.HALF_CLOSED_LOCAL, _I.SEND_RESET): _S.CLOSED,
    (_S.HALF_CLOSED_LOCAL, _I.RECV_DATA): _S.HALF_CLOSED_LOCAL,
    (_S.HALF_CLOSED_LOCAL, _I.RECV_END): _S.CLOSED,
    (_S.HALF_CLOSED_LOCAL, _I.RECV_RESET): _S.CLOSED,
    (_S.HALF_CLOSED_REMOTE, _I.SEND_DATA): _S.HALF_CLOSED_REMOTE,
    (_S.HALF_CLOSED_REMOTE, _I.SEND_END): _S.CLOSED,
    (_S.HALF_CLOSED_REMOTE, _I.SEND_RESET): _S.CLOSED,
    (_S.HALF_CLOSED_REMOTE, _I.RECV_RESET): _S.CLOSED,
}


def next_state(state: StreamState, event: StreamInput) -> StreamState | None:
    """The state after `event`, or None if `event` is not allowed in `state`."""
    return TRANSITIONS.get((state, event))


class Stream(WindowManager):
    """Bookkeeping for one live stream: its state, and its credit as a `WindowManager`.

    A subclass, not a field: the DATA hot path reads the windows without another lookup.
    """

    __slots__ = ("state",)

    def __init__(self, stream_id: int, send_window: int, receive_window: int) -> None:
        super().__init__(stream_id, send_window, receive_window)
        self.state = StreamState.OPEN
