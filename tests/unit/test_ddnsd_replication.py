"""The worker socket's codec: every message both ways, the wire shape the processes have
always spoken, and hostile bodies give ReplicationError and nothing else."""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from ddnsd._replication import (
    Applied,
    Apply,
    Devices,
    Hello,
    Message,
    Ready,
    ReplicationError,
    Reply,
    Serve,
    Update,
    WorkerSocket,
    decode,
    encode,
)
from ddnsd._zone import Change

# (message, its msgpack map on the wire, keys in this order)
VECTORS: list[tuple[Message, dict[str, Any]]] = [
    (Hello(), {"t": "hello"}),
    (Ready(), {"t": "ready"}),
    (Serve(), {"t": "serve"}),
    (
        Apply(7, (Change("nas1", "A", 60, ("192.0.2.1",)), Change("nas1", "AAAA", 60, ())), 3),
        {
            "t": "apply",
            "serial": 7,
            "changes": [["nas1", "A", 60, ["192.0.2.1"]], ["nas1", "AAAA", 60, []]],
            "id": 3,
        },
    ),
    (
        Devices(("nas1", "nas2"), {"dyn.test": 9, "link.test": 2}, 4, ("nas2",)),
        {
            "t": "devices",
            "devices": ["nas1", "nas2"],
            "serials": {"dyn.test": 9, "link.test": 2},
            "id": 4,
            "link_off": ["nas2"],
        },
    ),
    (Applied(4), {"t": "applied", "id": 4}),
    (
        Update(1, b"\x00\x01", "192.0.2.9", True),
        {"t": "update", "id": 1, "wire": b"\x00\x01", "client": "192.0.2.9", "tcp": True},
    ),
    (Reply(1, (b"\x00\x01", b"\x02")), {"t": "reply", "id": 1, "replies": [b"\x00\x01", b"\x02"]}),
]


@pytest.mark.parametrize(("message", "wire"), VECTORS)
def test_encode_and_decode(message: Message, wire: dict[str, Any]) -> None:
    body = msgpack.packb(wire, use_bin_type=True)
    assert encode(message) == struct.pack("!I", len(body)) + body
    assert decode(body) == message


def test_extra_keys_are_ignored() -> None:
    assert decode(msgpack.packb({"t": "applied", "id": 2, "later": 1})) == Applied(2)


BAD: list[Any] = [
    [1, 2],
    {"t": "nope"},
    {"t": 5},
    {},
    {"t": "applied"},
    {"t": "applied", "id": True},
    {"t": "applied", "id": -1},
    {"t": "apply", "serial": 2**32, "changes": [], "id": 1},
    {"t": "apply", "serial": 1, "changes": [["nas1", "A", 60]], "id": 1},
    {"t": "apply", "serial": 1, "changes": [["nas1", "A", "60", []]], "id": 1},
    {"t": "apply", "serial": 1, "changes": [["nas1", "A", 60, "192.0.2.1"]], "id": 1},
    {"t": "devices", "devices": ["nas1"], "serials": {"dyn.test": "9"}, "id": 1},
    {"t": "devices", "devices": "nas1", "serials": {}, "id": 1},
    {"t": "update", "id": 1, "wire": "text", "client": "192.0.2.9", "tcp": True},
    {"t": "update", "id": 1, "wire": b"", "client": "192.0.2.9", "tcp": 1},
    {"t": "reply", "id": 1, "replies": ["text"]},
]


@pytest.mark.parametrize("raw", BAD)
def test_invalid_messages_are_refused(raw: Any) -> None:
    with pytest.raises(ReplicationError):
        decode(msgpack.packb(raw, use_bin_type=True))


@given(st.binary(max_size=200))
def test_any_body_decodes_or_is_refused(body: bytes) -> None:
    try:
        decode(body)
    except ReplicationError:
        pass


async def test_worker_socket_frames_messages_both_ways() -> None:
    a, b = trio.testing.memory_stream_pair()
    ours, theirs = WorkerSocket(a), WorkerSocket(b)
    for message, _ in VECTORS:
        await ours.send(message)
    for message, _ in VECTORS:
        assert await theirs.receive() == message
    await a.aclose()
    assert await theirs.receive() is None


async def test_an_oversized_frame_is_refused() -> None:
    a, b = trio.testing.memory_stream_pair()
    await a.send_all(struct.pack("!I", 2**31))
    with pytest.raises(ReplicationError):
        await WorkerSocket(b).receive()
