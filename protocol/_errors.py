"""The protocol's error root and its wire error codes.

Errors are split by fault, as in h11: `LocalProtocolError` means our own code misused the API,
`RemoteProtocolError` means the peer broke the protocol. Each carries the code sent on the wire.
"""

from __future__ import annotations

import enum

__all__ = [
    "ErrorCode",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
]


class ErrorCode(enum.IntEnum):
    """Codes carried by RESET, GOAWAY and ERROR (SPEC.md section 6)."""

    NO_ERROR = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2
    FLOW_CONTROL_ERROR = 3
    FRAME_SIZE_ERROR = 4
    STREAM_CLOSED = 5
    REFUSED_STREAM = 6
    CANCEL = 7
    UNSUPPORTED_VERSION = 8
    AUTHENTICATION_FAILED = 9
    SERVICE_UNAVAILABLE = 10
    NOT_PERMITTED = 11
    RATE_LIMITED = 12
    INVALID_REQUEST = 13
    TIMEOUT = 14
    INSTALL_ENDED = 15

    @classmethod
    def describe(cls, code: int) -> str:
        """The code's name, or ``UNKNOWN(n)`` for a code this version does not define."""
        try:
            return cls(code).name
        except ValueError:
            return f"UNKNOWN({code})"


class ProtocolError(Exception):
    """Root of every error the protocol package raises."""

    def __init__(self, message: str, error_code: int = ErrorCode.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.error_code = error_code


class LocalProtocolError(ProtocolError):
    """Our side asked the connection to do something the protocol forbids."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids; the connection is unusable."""
