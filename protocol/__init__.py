"""The nascloud wire protocol, sans-IO: bytes in, events out (see SPEC.md).

This package imports no trio, socket, time or random, and holds nothing that does I/O: the
Trio and OS binding (tunnels, TLS, splicing, key files) is the `tunnel` package.
"""

from ._auth import auth_payload, public_key_bytes
from ._connection import SETUP_SERVICE, Connection
from ._errors import ErrorCode, LocalProtocolError, ProtocolError, RemoteProtocolError
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
from ._frames import HEADER_BYTES, Flag, FrameType
from ._handshake import DATA_CONNECTIONS, DATA_POOL, SUPPORTED_VERSIONS, Credentials, Settings
from ._messages import (
    ACME_PREFIX,
    DATA_TOKEN_BYTES,
    PAIRING_CODE_ALPHABET,
    Ack,
    AppMessage,
    AuthKind,
    DataPool,
    DdnsUpdate,
    Error,
    InstallRegister,
    Open,
    PairCode,
    Paired,
    PairRequest,
    Register,
)
from ._names import account_caa, canonical_address, parse_caa, validate_label
from ._state import ConnectionState, Role
from ._streams import StreamState

__all__ = [
    "ACME_PREFIX",
    "DATA_CONNECTIONS",
    "DATA_POOL",
    "DATA_TOKEN_BYTES",
    "HEADER_BYTES",
    "PAIRING_CODE_ALPHABET",
    "SETUP_SERVICE",
    "SUPPORTED_VERSIONS",
    "Ack",
    "AppMessage",
    "AuthKind",
    "AuthenticationRequested",
    "Connection",
    "ConnectionClosed",
    "ConnectionState",
    "ConnectionTerminated",
    "Credentials",
    "DataPool",
    "DataReceived",
    "DdnsUpdate",
    "Error",
    "ErrorCode",
    "Event",
    "Flag",
    "FrameType",
    "HandshakeComplete",
    "InstallRegister",
    "LocalProtocolError",
    "MessageReceived",
    "Open",
    "PairCode",
    "PairRequest",
    "Paired",
    "PingAcknowledged",
    "PingReceived",
    "ProtocolError",
    "Register",
    "RemoteProtocolError",
    "Role",
    "Settings",
    "StreamEnded",
    "StreamOpened",
    "StreamReset",
    "StreamState",
    "WindowUpdated",
    "account_caa",
    "auth_payload",
    "canonical_address",
    "parse_caa",
    "public_key_bytes",
    "validate_label",
]
