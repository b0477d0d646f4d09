"""The connection's state machine (SPEC.md 9.1): which frames each role accepts in each state,
and which inputs move it from one state to the next.

Tables only, as in h11's `_state.py`: it must not know frame bodies, streams or credit.
"""

from __future__ import annotations

import enum
from typing import Final

from ._frames import FrameType

__all__ = ["ALLOWED", "TRANSITIONS", "ConnectionInput", "ConnectionState", "Role"]


class Role(enum.Enum):
    CLIENT = "client"  # the agent, or relayd when it connects to ddnsd
    SERVER = "server"  # relayd for agents, ddnsd for relayd


class ConnectionState(enum.Enum):
    AWAIT_HELLO = "await HELLO"
    AWAIT_AUTH = "await AUTH"  # server
    AUTH_PENDING = "authentication pending"  # server, waiting for the application's verdict
    AWAIT_AUTH_OK = "await AUTH_OK"  # client
    OPEN = "open"
    CLOSED = "closed"


class ConnectionInput(enum.Enum):
    SEND_HELLO = "send HELLO"  # the server's, answering the client's (which is sent at start)
    SEND_AUTH = "send AUTH"  # the client's, answering the server's HELLO
    RECV_AUTH = "receive AUTH"
    SEND_AUTH_OK = "send AUTH_OK"
    RECV_AUTH_OK = "receive AUTH_OK"
    SEND_GOAWAY = "send GOAWAY NO_ERROR"
    RECV_GOAWAY = "receive GOAWAY NO_ERROR"
    SEND_GOAWAY_ERROR = "send GOAWAY with an error"  # also a refused handshake
    RECV_GOAWAY_ERROR = "receive GOAWAY with an error"
    RECV_EOF = "receive EOF"


_C = ConnectionState
_F = FrameType
_I = ConnectionInput

#: Which frames each role accepts in each state (SPEC.md 9.1). Anything else is PROTOCOL_ERROR.
ALLOWED: Final[dict[tuple[Role, ConnectionState], frozenset[FrameType]]] = {
    (Role.CLIENT, _C.AWAIT_HELLO): frozenset({_F.HELLO, _F.GOAWAY}),
    (Role.CLIENT, _C.AWAIT_AUTH_OK): frozenset({_F.AUTH_OK, _F.GOAWAY}),
    (Role.SERVER, _C.AWAIT_HELLO): frozenset({_F.HELLO, _F.GOAWAY}),
    (Role.SERVER, _C.AWAIT_AUTH): frozenset({_F.AUTH, _F.GOAWAY}),
    (Role.SERVER, _C.AUTH_PENDING): frozenset({_F.GOAWAY}),
    (Role.CLIENT, _C.OPEN): frozenset(
        {_F.DATA, _F.OPEN, _F.RESET, _F.WINDOW, _F.PING, _F.GOAWAY, _F.MESSAGE}
    ),
    (Role.SERVER, _C.OPEN): frozenset(
        {_F.DATA, _F.OPEN, _F.RESET, _F.WINDOW, _F.PING, _F.GOAWAY, _F.MESSAGE}
    ),
}

_HANDSHAKE: Final = (_C.AWAIT_HELLO, _C.AWAIT_AUTH, _C.AUTH_PENDING, _C.AWAIT_AUTH_OK)

#: (state, input) -> next state. GOAWAY NO_ERROR drains an open connection (SPEC.md 9.2) and
#: ends a handshake; any other GOAWAY, or EOF, closes it. CLOSED takes no input. A missing pair
#: is a bug in `_connection`: `ALLOWED` has already refused the peer's frame.
TRANSITIONS: Final[dict[tuple[ConnectionState, ConnectionInput], ConnectionState]] = {
    (_C.AWAIT_HELLO, _I.SEND_HELLO): _C.AWAIT_AUTH,
    (_C.AWAIT_HELLO, _I.SEND_AUTH): _C.AWAIT_AUTH_OK,
    (_C.AWAIT_AUTH, _I.RECV_AUTH): _C.AUTH_PENDING,
    (_C.AUTH_PENDING, _I.SEND_AUTH_OK): _C.OPEN,
    (_C.AWAIT_AUTH_OK, _I.RECV_AUTH_OK): _C.OPEN,
    (_C.OPEN, _I.SEND_GOAWAY): _C.OPEN,
    (_C.OPEN, _I.RECV_GOAWAY): _C.OPEN,
    **{(state, _I.SEND_GOAWAY): _C.CLOSED for state in _HANDSHAKE},
    **{(state, _I.RECV_GOAWAY): _C.CLOSED for state in _HANDSHAKE},
    **{
        (state, event): _C.CLOSED
        for state in (*_HANDSHAKE, _C.OPEN)
        for event in (_I.SEND_GOAWAY_ERROR, _I.RECV_GOAWAY_ERROR, _I.RECV_EOF)
    },
}
