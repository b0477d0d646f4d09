"""Protocol codec throughput, side by side with h2 (the sans-IO HTTP/2 library) in one run.

Measures, in one process with no I/O:
  * DATA path: send_data + data_to_send + receive_data + credit acknowledgement, for 16 KiB and
    64 KiB payloads, one frame per call and 16 frames per call;
  * control messages: PING round trips, and an application message (DdnsUpdate) encoded,
    decoded and validated;
and prints each figure with its ratio to h2 doing the same work, and to a bare memory-copy
floor (the two copies a one-copy-per-direction design cannot avoid).

Run: make bench   (or .venv/bin/python bench/protocol.py [--seconds 0.3])
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

# This script shares its name with the package it measures: keep its own folder off the path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import h2.config  # noqa: E402  (installed by `make bench`: the bench extra)
import h2.connection  # noqa: E402
import h2.events  # noqa: E402
import h2.settings  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

import protocol  # noqa: E402
from protocol import Open  # noqa: E402


def best_rate(step: Callable[[], int], seconds: float, repeats: int = 5) -> float:
    """Units per second of `step` (which returns the units it did), best of `repeats`."""
    best = 0.0
    for _ in range(repeats):
        done = 0
        start = time.perf_counter()
        deadline = start + seconds / repeats
        while True:
            done += step()
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, done / (now - start))
    return best


# -- nascloud ---------------------------------------------------------------------------------


def nascloud_pair(frame_bytes: int) -> tuple[protocol.Connection, protocol.Connection, int]:
    settings = protocol.Settings(
        max_frame_bytes=max(frame_bytes, 16384),
        stream_window_bytes=2**30,
        connection_window_bytes=2**30,
    )
    key = Ed25519PrivateKey.generate()
    client = protocol.Connection(
        protocol.Role.CLIENT,
        server_name="bench.test",
        credentials=protocol.Credentials("device", "bench", key),
        settings=settings,
    )
    server = protocol.Connection(
        protocol.Role.SERVER, server_name="bench.test", nonce=os.urandom(32), settings=settings
    )
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    server.accept_authentication(protocol.public_key_bytes(key))
    client.receive_data(server.data_to_send())
    stream_id = client.open_stream(Open("web"))
    server.receive_data(client.data_to_send())
    return client, server, stream_id


def nascloud_data(size: int, batch: int) -> Callable[[], int]:
    client, server, stream_id = nascloud_pair(size)
    payload = os.urandom(size)

    def step() -> int:
        for _ in range(batch):
            client.send_data(stream_id, payload)
        for event in server.receive_data(client.data_to_send()):
            assert isinstance(event, protocol.DataReceived)
            server.acknowledge_received_data(stream_id, event.flow_controlled_length)
        credit = server.data_to_send()
        if credit:
            client.receive_data(credit)
        return size * batch

    return step


def nascloud_message() -> Callable[[], int]:
    client, server, _ = nascloud_pair(16384)
    message = protocol.DdnsUpdate(1, "nas1", "nas1", "A", ("198.51.100.4",))

    def step() -> int:
        client.send_message(message)
        server.receive_data(client.data_to_send())
        return 1

    return step


# -- h2 ---------------------------------------------------------------------------------------


def h2_pair(frame_bytes: int) -> tuple[h2.connection.H2Connection, h2.connection.H2Connection, int]:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
    )
    client.initiate_connection()
    server.initiate_connection()
    wanted: dict[h2.settings.SettingCodes | int, int] = {
        h2.settings.SettingCodes.MAX_FRAME_SIZE: max(frame_bytes, 16384),
        h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1,
    }
    client.update_settings(wanted)
    server.update_settings(wanted)
    for _ in range(3):  # SETTINGS and their ACKs both ways
        server.receive_data(client.data_to_send())
        client.receive_data(server.data_to_send())
    client.increment_flow_control_window(2**31 - 1 - 65535)
    server.increment_flow_control_window(2**31 - 1 - 65535)
    stream_id = client.get_next_available_stream_id()
    client.send_headers(
        stream_id,
        [(":method", "POST"), (":path", "/"), (":scheme", "https"), (":authority", "bench")],
    )
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    return client, server, stream_id


def h2_data(size: int, batch: int) -> Callable[[], int]:
    client, server, stream_id = h2_pair(size)
    payload = os.urandom(size)
    data_received = h2.events.DataReceived

    def step() -> int:
        for _ in range(batch):
            client.send_data(stream_id, payload)
        for event in server.receive_data(client.data_to_send()):
            if isinstance(event, data_received):
                assert event.flow_controlled_length is not None
                server.acknowledge_received_data(event.flow_controlled_length, stream_id)
        credit = server.data_to_send()
        if credit:
            client.receive_data(credit)
        return size * batch

    return step


class Pinger(Protocol):
    """What both libraries offer for a PING round trip."""

    def ping(self, opaque: bytes, /) -> object: ...
    def data_to_send(self) -> bytes: ...
    def receive_data(self, data: bytes, /) -> object: ...


def ping_round_trip(client: Pinger, server: Pinger) -> Callable[[], int]:
    opaque = b"12345678"

    def step() -> int:
        client.ping(opaque)
        server.receive_data(client.data_to_send())
        client.receive_data(server.data_to_send())
        return 1

    return step


def h2_headers() -> Callable[[], int]:
    """The nearest h2 analogue of a small control message: a HEADERS frame on a new stream."""
    client, server, _ = h2_pair(16384)
    headers = [
        (":method", "GET"),
        (":path", "/nic/update"),
        (":scheme", "https"),
        (":authority", "nas1.dyn.example.net"),
    ]

    def step() -> int:
        stream_id = client.get_next_available_stream_id()
        client.send_headers(stream_id, headers, end_stream=True)
        server.receive_data(client.data_to_send())
        server.reset_stream(stream_id)  # keep its stream table small
        client.receive_data(server.data_to_send())
        return 1

    return step


# -- the floor --------------------------------------------------------------------------------


def copy_floor(size: int, batch: int) -> Callable[[], int]:
    """Two copies per payload (join on send, slice on receive): what any bytes API costs."""
    payload = os.urandom(size)
    header = b"\x00" * 10

    def step() -> int:
        wire = b"".join([header, payload] * batch)
        pos = 0
        for _ in range(batch):
            wire[pos + 10 : pos + 10 + size]
            pos += 10 + size
        return size * batch

    return step


#: glibc gives freed memory back to the kernel whenever the heap top exceeds a threshold that it
#: tunes from past frees, so the same loop can run 4x slower depending on what ran before it.
#: Fixed thresholds make runs comparable; both libraries run under the same ones.
MALLOC_ENV = {"MALLOC_TRIM_THRESHOLD_": "67108864", "MALLOC_MMAP_THRESHOLD_": "67108864"}


def main() -> None:
    if any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_ENV})
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = parser.parse_args()
    print(
        f"python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} cores; best of 5, {args.seconds:g} s per figure; "
        f"glibc malloc thresholds fixed at 64 MiB"
    )
    print()
    print(
        f"{'DATA path':<28}{'nascloud':>12}{'h2':>12}{'copy floor':>12}{'vs h2':>8}{'of floor':>10}"
    )
    for size in (16 * 1024, 64 * 1024):
        for batch in (1, 16):
            ours = best_rate(nascloud_data(size, batch), args.seconds)
            theirs = best_rate(h2_data(size, batch), args.seconds)
            floor = best_rate(copy_floor(size, batch), args.seconds)
            label = f"{size // 1024} KiB x{batch}/call"
            print(
                f"{label:<28}{ours / 1e9:>9.2f} GB{theirs / 1e9:>9.2f} GB"
                f"{floor / 1e9:>9.2f} GB{ours / theirs:>7.1f}x{ours / floor:>9.0%}"
            )
    print()
    print(f"{'control messages':<28}{'nascloud':>12}{'h2':>12}{'':>12}{'vs h2':>8}")
    for label, ours_step, theirs_step in (
        (
            "PING round trip",
            ping_round_trip(*nascloud_pair(16384)[:2]),
            ping_round_trip(*h2_pair(16384)[:2]),
        ),
        ("DdnsUpdate vs h2 HEADERS", nascloud_message(), h2_headers()),
    ):
        ours = best_rate(ours_step, args.seconds)
        theirs = best_rate(theirs_step, args.seconds)
        print(
            f"{label:<28}{ours / 1e3:>10.0f} k{theirs / 1e3:>10.0f} k{'':>12}{ours / theirs:>7.1f}x"
        )
    print()
    print("GB = 10^9 bytes of payload per second, encode and decode together; k = 10^3 per s.")


if __name__ == "__main__":
    main()
