"""Read the server name (SNI) from a TLS ClientHello, without terminating TLS.

Sans-IO: give it the bytes read so far; it says it needs more, found a name, found none, or
that the bytes are not a ClientHello. The ClientHello may span several TLS records. Nothing
is decrypted and nothing but the name is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["NeedMore", "NotTls", "ServerName", "parse_client_hello"]

# Real clients send a ClientHello in one record, two with a large post-quantum key share.
# Every byte that arrives is a parse of all the records so far: one-byte records would make
# a connection's CPU quadratic in its size.
MAX_HELLO_RECORDS = 16

RECORD_HANDSHAKE: Final = 22
HANDSHAKE_CLIENT_HELLO: Final = 1
EXTENSION_SERVER_NAME: Final = 0
NAME_TYPE_HOST: Final = 0


@dataclass(frozen=True, slots=True)
class NeedMore:
    """Not enough bytes yet."""


@dataclass(frozen=True, slots=True)
class NotTls:
    """Not a TLS ClientHello (or a malformed one): close the connection."""

    why: str


@dataclass(frozen=True, slots=True)
class ServerName:
    """A complete ClientHello; `name` is the lower-cased SNI host name, or None if absent."""

    name: str | None


Result = NeedMore | NotTls | ServerName


def _handshake_bytes(data: bytes, limit: int) -> bytes | Result:
    """The handshake-layer bytes carried by the TLS records in `data`, as far as complete."""
    out = bytearray()
    pos = 0
    records = 0
    while pos + 5 <= len(data):
        records += 1
        if records > MAX_HELLO_RECORDS:
            return NotTls("ClientHello spread over too many records")
        if data[pos] != RECORD_HANDSHAKE:
            return NotTls("not a handshake record")
        if data[pos + 1] != 3:
            return NotTls("not a TLS record version")
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        if length == 0 or length > 16384 + 256:
            return NotTls("bad TLS record length")
        if pos + 5 + length > len(data):
            out += data[pos + 5 :]
            break
        out += data[pos + 5 : pos + 5 + length]
        pos += 5 + length
        if len(out) >= 4 and len(out) >= 4 + int.from_bytes(out[1:4], "big"):
            break
    if len(out) > limit:
        return NotTls("ClientHello too large")
    return bytes(out)


def parse_client_hello(data: bytes, limit: int = 16384) -> Result:
    """Parse as much of a ClientHello as `data` holds."""
    if not data:
        return NeedMore()
    if data[0] != RECORD_HANDSHAKE:
        return NotTls("not a TLS handshake")
    handshake = _handshake_bytes(data, limit)
    if not isinstance(handshake, bytes):
        return handshake
    if len(handshake) < 4:
        return NeedMore() if len(data) < limit else NotTls("ClientHello too large")
    if handshake[0] != HANDSHAKE_CLIENT_HELLO:
        return NotTls("first handshake message is not a ClientHello")
    body_length = int.from_bytes(handshake[1:4], "big")
    if body_length > limit:
        return NotTls("ClientHello too large")
    if len(handshake) < 4 + body_length:
        return NeedMore()
    return _server_name(handshake[4 : 4 + body_length])


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise ValueError("truncated")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def number(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, length_size: int) -> bytes:
        return self.take(self.number(length_size))


def _server_name(body: bytes) -> Result:
    try:
        reader = _Reader(body)
        reader.take(2 + 32)  # client version, random
        reader.vector(1)  # session id
        reader.vector(2)  # cipher suites
        reader.vector(1)  # compression methods
        if reader.pos == len(body):
            return ServerName(None)  # no extensions at all
        extensions = _Reader(reader.vector(2))
        while extensions.pos < len(extensions.data):
            kind = extensions.number(2)
            content = extensions.vector(2)
            if kind != EXTENSION_SERVER_NAME:
                continue
            names = _Reader(_Reader(content).vector(2))
            while names.pos < len(names.data):
                name_type = names.number(1)
                name = names.vector(2)
                if name_type == NAME_TYPE_HOST:
                    text = name.decode("ascii").lower().rstrip(".")
                    if not text or len(text) > 253 or any(c in text for c in " /\\\x00"):
                        return NotTls("invalid server name")
                    return ServerName(text)
            return ServerName(None)
        return ServerName(None)
    except (ValueError, UnicodeDecodeError):
        return NotTls("malformed ClientHello")
