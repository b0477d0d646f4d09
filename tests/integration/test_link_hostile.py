"""relayd under hostile peers: each gets a clean close of its own connection, and the real
device keeps being served."""

from __future__ import annotations

import socket
import time

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import protocol
from tests.relay_harness import device_tunnel

from .test_link import LINK_ZONE, Link, link

__all__ = ["link"]


def still_served(link: Link) -> bool:
    return link.curl(f"https://nas1.{LINK_ZONE}:{link.https_port}/").returncode == 0


def closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


def test_garbage_and_plain_text_on_the_tunnel_port(link: Link) -> None:
    for junk in (b"hello\r\n", b"\x16\x03\x01\x00\x05hello", bytes(range(256)) * 8):
        with socket.create_connection(("127.0.0.1", link.tunnel_port), timeout=5) as sock:
            sock.sendall(junk)
            assert closed_within(sock, 5)
    assert still_served(link)


async def _claim(link: Link, name: str, key: Ed25519PrivateKey) -> protocol.RemoteProtocolError:
    tunnel = f"127.0.0.1:{link.tunnel_port}"
    with pytest.raises(protocol.RemoteProtocolError) as info:
        async with device_tunnel(link.directory, tunnel, name, key):
            pass  # pragma: no cover
    return info.value


async def test_a_wrong_key_or_an_unknown_name_cannot_take_a_device_over(link: Link) -> None:
    assert link.other_key is not None
    attempts = [
        ("nas1", Ed25519PrivateKey.generate()),  # a wrong key
        ("nas1", link.other_key),  # a valid key, of another device
        ("nosuchdevice", Ed25519PrivateKey.generate()),
    ]
    for name, key in attempts:
        error = await _claim(link, name, key)
        assert error.error_code == protocol.ErrorCode.AUTHENTICATION_FAILED
    # The real agent's tunnel was not replaced by any of them.
    assert await trio.to_thread.run_sync(still_served, link)


def test_a_client_hello_that_never_finishes_is_cut_off(link: Link) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", link.https_port), timeout=5) as sock:
        sock.sendall(b"\x16\x03\x01\x02\x00\x01")  # a record header and one byte of hello
        assert still_served(link)  # others are served while it waits
        assert closed_within(sock, 10)
    assert time.monotonic() - started < 8  # handshake_timeout_s is 2 in this config


def test_slow_oversized_and_malformed_http(link: Link) -> None:
    with socket.create_connection(("127.0.0.1", link.http_port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: nas1.link.test\r\n")  # never finished
        reply = sock.recv(4096)
        assert reply.startswith(b"HTTP/1.1 408"), reply
    with socket.create_connection(("127.0.0.1", link.http_port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: nas1.link.test\r\nX-Big: " + b"a" * 40000)
        reply = sock.recv(4096)
        assert reply.startswith(b"HTTP/1.1 431"), reply
    with socket.create_connection(("127.0.0.1", link.http_port), timeout=10) as sock:
        sock.sendall(b"NOT A REQUEST\r\n\r\n")
        reply = sock.recv(4096)
        assert reply.startswith(b"HTTP/1.1 400"), reply
    assert still_served(link)


def test_data_connections_with_a_wrong_token_are_closed(link: Link) -> None:
    import json
    import os

    listening = json.loads((link.directory / "relay-state" / "listening.json").read_text())
    data_port = int(listening["data"][0].rsplit(":", 1)[1])
    for attempt in (os.urandom(16), b"short", b""):
        with socket.create_connection(("127.0.0.1", data_port), timeout=5) as sock:
            if attempt:
                sock.sendall(attempt)
            else:
                sock.shutdown(socket.SHUT_WR)
            assert closed_within(sock, 5)
    assert still_served(link)
