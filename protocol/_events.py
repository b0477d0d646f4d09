"""Events that `Connection.receive_data` returns: what the peer did, in order.

Plain frozen records; the connection builds them and the application reads them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._messages import AppMessage, Open

__all__ = [
    "AuthenticationRequested",
    "ConnectionClosed",
    "ConnectionTerminated",
    "DataReceived",
    "Event",
    "HandshakeComplete",
    "MessageReceived",
    "PingAcknowledged",
    "PingReceived",
    "StreamEnded",
    "StreamOpened",
    "StreamReset",
    "WindowUpdated",
]


class Event:
    """Base class of every event."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class AuthenticationRequested(Event):
    """Server only: a client claims `name`; answer with `accept_authentication` or
    `reject_authentication` once the key registered for it is known."""

    kind: str
    name: str
    public_key: bytes


@dataclass(frozen=True, slots=True)
class HandshakeComplete(Event):
    """Both sides agreed; streams and messages may flow. `peer_name` is the server's name on
    the client and the authenticated client's name on the server."""

    version: int
    capabilities: frozenset[str]
    kind: str
    peer_name: str


@dataclass(frozen=True, slots=True)
class StreamOpened(Event):
    """The peer opened a stream, as `request` says: to which service, for which client, and
    with a data token whether its bytes come on a data connection (SPEC.md 7.3)."""

    stream_id: int
    request: Open


@dataclass(frozen=True, slots=True)
class DataReceived(Event):
    """Stream data. Give `flow_controlled_length` back with `acknowledge_received_data` once
    the application has consumed it, or the peer runs out of credit."""

    stream_id: int
    data: bytes
    flow_controlled_length: int


@dataclass(frozen=True, slots=True)
class StreamEnded(Event):
    """The peer will send no more data on this stream."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset(Event):
    """The stream is gone. `remote` is False when the connection reset it on our behalf (a
    stream refused by the peer's GOAWAY)."""

    stream_id: int
    error_code: int
    remote: bool = True


@dataclass(frozen=True, slots=True)
class WindowUpdated(Event):
    """More send credit for `stream_id` (0: the whole connection)."""

    stream_id: int
    delta: int


@dataclass(frozen=True, slots=True)
class PingReceived(Event):
    """The peer pinged; the answer is already queued."""

    opaque: bytes


@dataclass(frozen=True, slots=True)
class PingAcknowledged(Event):
    opaque: bytes


@dataclass(frozen=True, slots=True)
class MessageReceived(Event):
    message: AppMessage


@dataclass(frozen=True, slots=True)
class ConnectionTerminated(Event):
    """The peer sent GOAWAY: no new streams; ours above `last_stream_id` were refused."""

    error_code: int
    last_stream_id: int
    message: str


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """The transport reached EOF cleanly, between frames."""
