"""Frame layout: a 10-byte header (type, flags, stream id, length) then the body (SPEC.md 2).

Only constants, the header codec and the header's own checks live here; the parser loop is in
`_connection`, where it can hand DATA bodies over without extra copies.
"""

from __future__ import annotations

import enum
import struct
from typing import Final

from ._errors import ErrorCode, RemoteProtocolError
from ._messages import MAX_STREAM_ID

__all__ = ["HEADER", "HEADER_BYTES", "Flag", "FrameType", "check_header", "encode_frame"]

#: type (u8), flags (u8), stream id (u32), body length (u32), network byte order.
HEADER: Final = struct.Struct("!BBII")
HEADER_BYTES: Final = HEADER.size
#: Control bodies are small maps; a larger one is refused before msgpack sees it.
MAX_CONTROL_BODY_BYTES: Final = 16 * 1024
#: Limit on every frame until the peer's HELLO says otherwise.
HANDSHAKE_MAX_FRAME_BYTES: Final = 16 * 1024


class FrameType(enum.IntEnum):
    DATA = 0x0
    HELLO = 0x1
    AUTH = 0x2
    AUTH_OK = 0x3
    OPEN = 0x4
    RESET = 0x5
    WINDOW = 0x6
    PING = 0x7
    GOAWAY = 0x8
    MESSAGE = 0x9


class Flag(enum.IntFlag):
    NONE = 0x0
    #: DATA: the sender's last frame on this stream.
    END_STREAM = 0x1
    #: PING: this is the answer.
    ACK = 0x1


def encode_frame(frame_type: int, flags: int, stream_id: int, body: bytes) -> bytes:
    """One whole frame (used for control frames and by the test vectors)."""
    return HEADER.pack(frame_type, flags, stream_id, len(body)) + body


_STREAM_FRAMES: Final = frozenset({FrameType.DATA, FrameType.OPEN, FrameType.RESET})
_EITHER_FRAMES: Final = frozenset({FrameType.WINDOW})
_DATA: Final = int(FrameType.DATA)


def check_header(frame_type: int, stream_id: int, length: int, limit: int) -> None:
    """Everything knowable from the header alone, checked before the body is buffered."""
    if length > limit:
        raise RemoteProtocolError(
            f"frame of {length} bytes exceeds the limit of {limit}",
            ErrorCode.FRAME_SIZE_ERROR,
        )
    if stream_id > MAX_STREAM_ID:
        raise RemoteProtocolError(f"stream id {stream_id} uses the reserved high bit")
    if frame_type == _DATA:
        if stream_id == 0:
            raise RemoteProtocolError("DATA on stream 0")
        return
    if frame_type > FrameType.MESSAGE:
        raise RemoteProtocolError(f"unknown frame type {frame_type:#x}")
    if length > MAX_CONTROL_BODY_BYTES:
        raise RemoteProtocolError(
            f"control frame of {length} bytes exceeds {MAX_CONTROL_BODY_BYTES}",
            ErrorCode.FRAME_SIZE_ERROR,
        )
    if frame_type in _STREAM_FRAMES:
        if stream_id == 0:
            raise RemoteProtocolError(f"{FrameType(frame_type).name} on stream 0")
    elif frame_type not in _EITHER_FRAMES and stream_id != 0:
        raise RemoteProtocolError(f"{FrameType(frame_type).name} on stream {stream_id}")
