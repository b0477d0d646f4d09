"""Per-stream state: the state machine table and the two flow-control windows (SPEC.md 7, 8).

A stream knows nothing of frames or of the connection; `_connection` drives it.
"""

from __future__ import annotations

import enum
from typing import Final

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


class Stream:
    """Bookkeeping for one live stream.

    send_window: bytes we may still send. receive_window: bytes the peer may still send.
    unacknowledged: bytes delivered to the application and not yet given back.
    pending_credit: bytes given back by the application and not yet advertised.
    """

    __slots__ = (
        "pending_credit",
        "receive_window",
        "send_window",
        "state",
        "stream_id",
        "unacknowledged",
    )

    def __init__(self, stream_id: int, send_window: int, receive_window: int) -> None:
        self.stream_id = stream_id
        self.state = StreamState.OPEN
        self.send_window = send_window
        self.receive_window = receive_window
        self.unacknowledged = 0
        self.pending_credit = 0
