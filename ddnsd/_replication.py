"""What the main process and its workers say over the worker socket: typed messages, their
codec (length-prefixed msgpack maps keyed by `"t"`, validated on decode) and the framed
socket end both sides use. The only module that knows the wire shape; knows nothing of
zones' storage, of DNS, or of which process is which.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import msgpack
import trio

from ._zone import Change

__all__ = [
    "MAX_FRAME",
    "Applied",
    "Apply",
    "Devices",
    "Hello",
    "Message",
    "Ready",
    "ReplicationError",
    "Reply",
    "Serve",
    "Update",
    "WorkerSocket",
    "decode",
    "encode",
]

MAX_FRAME: Final = 64 * 1024 * 1024
_LENGTH = struct.Struct("!I")
_SERIALS: Final = 2**32


class ReplicationError(ValueError):
    """The other process sent something that is not a valid message (a bug, not an attack:
    both ends are this program)."""


def _check_id(number: int) -> None:
    if number < 0:
        raise ReplicationError(f"message id {number} is negative")


# main -> worker


@dataclass(frozen=True, slots=True)
class Hello:
    """Sent once a worker is connected: from now on it is sent every change."""


@dataclass(frozen=True, slots=True)
class Apply:
    """A committed batch: the device zone's new serial and the changes it holds. `id` is
    numbered per worker by the main process's end of its socket (0 until then)."""

    serial: int
    changes: tuple[Change, ...]
    id: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.serial < _SERIALS:
            raise ReplicationError(f"serial {self.serial} is not a 32-bit serial")
        _check_id(self.id)


@dataclass(frozen=True, slots=True)
class Devices:
    """The whole device list, the devices with Link off (no link-zone names), and every
    zone's serial, after an enrolment, a deletion or Link turned on or off."""

    devices: tuple[str, ...]
    serials: Mapping[str, int] = field(hash=False)
    id: int = 0
    link_off: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for origin, serial in self.serials.items():
            if not 0 <= serial < _SERIALS:
                raise ReplicationError(f"serial {serial} of {origin} is not a 32-bit serial")
        _check_id(self.id)


@dataclass(frozen=True, slots=True)
class Serve:
    """Sent once the worker is Ready: every change sent before this one is in its copy once
    it has applied them, and from now on each change waits for its Applied. Only then does
    the worker answer anyone (a change sent before might already be acknowledged)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """The main process's replies to an UPDATE a worker forwarded, in order."""

    id: int
    replies: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _check_id(self.id)


# worker -> main


@dataclass(frozen=True, slots=True)
class Ready:
    """The worker has loaded the zones and bound every DNS address; it answers once it has
    applied every change sent before the main process's Serve."""


@dataclass(frozen=True, slots=True)
class Applied:
    """The worker has applied the Apply or Devices with this id."""

    id: int

    def __post_init__(self) -> None:
        _check_id(self.id)


@dataclass(frozen=True, slots=True)
class Update:
    """An UPDATE message a worker received, for the main process (the only writer)."""

    id: int
    wire: bytes
    client: str
    tcp: bool

    def __post_init__(self) -> None:
        _check_id(self.id)


Message = Hello | Apply | Devices | Serve | Reply | Ready | Applied | Update


def encode(message: Message) -> bytes:
    """One frame: a 4-byte big-endian length, then the msgpack map."""
    body = msgpack.packb(_to_wire(message), use_bin_type=True)
    return _LENGTH.pack(len(body)) + body


def _to_wire(message: Message) -> dict[str, Any]:
    match message:
        case Hello():
            return {"t": "hello"}
        case Ready():
            return {"t": "ready"}
        case Serve():
            return {"t": "serve"}
        case Apply(serial, changes, number):
            wire_changes = [[c.owner, c.rrtype, c.ttl, list(c.values)] for c in changes]
            return {"t": "apply", "serial": serial, "changes": wire_changes, "id": number}
        case Devices(devices, serials, number, link_off):
            return {
                "t": "devices",
                "devices": list(devices),
                "serials": dict(serials),
                "id": number,
                "link_off": list(link_off),
            }
        case Applied(number):
            return {"t": "applied", "id": number}
        case Update(number, wire, client, tcp):
            return {"t": "update", "id": number, "wire": wire, "client": client, "tcp": tcp}
        case Reply(number, replies):
            return {"t": "reply", "id": number, "replies": list(replies)}


def _int(raw: Any, what: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ReplicationError(f"{what}: expected an integer, got {type(raw).__name__}")
    return raw


def _typed(raw: Any, kind: type[Any], what: str) -> Any:
    if not isinstance(raw, kind):
        raise ReplicationError(f"{what}: expected {kind.__name__}, got {type(raw).__name__}")
    return raw


def _list(raw: Any, item: Callable[[Any, str], Any], what: str) -> tuple[Any, ...]:
    return tuple(item(x, f"{what}[{i}]") for i, x in enumerate(_typed(raw, list, what)))


def _str(raw: Any, what: str) -> str:
    return str(_typed(raw, str, what))


def _bytes(raw: Any, what: str) -> bytes:
    return bytes(_typed(raw, bytes, what))


def _change(raw: Any, what: str) -> Change:
    fields = _typed(raw, list, what)
    if len(fields) != 4:
        raise ReplicationError(f"{what}: expected [owner, rrtype, ttl, values]")
    owner, rrtype, ttl, values = fields
    return Change(
        _str(owner, f"{what}.owner"),
        _str(rrtype, f"{what}.rrtype"),
        _int(ttl, f"{what}.ttl"),
        _list(values, _str, f"{what}.values"),
    )


def _serials(raw: Any, what: str) -> dict[str, int]:
    return {
        _str(k, f"{what} key"): _int(v, f"{what}[{k!r}]")
        for k, v in _typed(raw, dict, what).items()
    }


def decode(body: bytes) -> Message:
    """The message in one frame's body; ReplicationError if it is not a valid one (extra
    keys are ignored)."""
    try:
        raw = msgpack.unpackb(body, raw=False)
    except ValueError as exc:  # every msgpack decoding error is one
        raise ReplicationError(f"not msgpack: {exc}") from None
    fields = _typed(raw, dict, "message")
    kind = fields.get("t")

    def get(key: str) -> Any:
        if key not in fields:
            raise ReplicationError(f"{kind}: {key} is missing")
        return fields[key]

    match kind:
        case "hello":
            return Hello()
        case "ready":
            return Ready()
        case "serve":
            return Serve()
        case "apply":
            return Apply(
                _int(get("serial"), "apply.serial"),
                _list(get("changes"), _change, "apply.changes"),
                _int(get("id"), "apply.id"),
            )
        case "devices":
            return Devices(
                _list(get("devices"), _str, "devices.devices"),
                _serials(get("serials"), "devices.serials"),
                _int(get("id"), "devices.id"),
                _list(get("link_off"), _str, "devices.link_off"),
            )
        case "applied":
            return Applied(_int(get("id"), "applied.id"))
        case "update":
            return Update(
                _int(get("id"), "update.id"),
                _bytes(get("wire"), "update.wire"),
                _str(get("client"), "update.client"),
                _typed(get("tcp"), bool, "update.tcp"),
            )
        case "reply":
            return Reply(
                _int(get("id"), "reply.id"), _list(get("replies"), _bytes, "reply.replies")
            )
    raise ReplicationError(f"unknown message type {kind!r}")


class WorkerSocket:
    """One end of the worker socket: whole messages out (one lock, one write per message),
    whole messages in."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._buffer = bytearray()
        self._send_lock = trio.Lock()

    async def send(self, message: Message) -> None:
        frame = encode(message)
        async with self._send_lock:
            await self.stream.send_all(frame)

    async def receive(self) -> Message | None:
        """The next message, or None at EOF; ReplicationError for a bad frame."""
        buffer = self._buffer
        while True:
            if len(buffer) >= _LENGTH.size:
                size = _LENGTH.unpack_from(buffer)[0]
                if size > MAX_FRAME:
                    raise ReplicationError("oversized frame on the worker socket")
                if len(buffer) >= _LENGTH.size + size:
                    body = bytes(buffer[_LENGTH.size : _LENGTH.size + size])
                    del buffer[: _LENGTH.size + size]
                    return decode(body)
            data = await self.stream.receive_some(65536)
            if not data:
                return None
            buffer += data

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)
