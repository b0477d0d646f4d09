"""Kernel-joined sockets (protocol.splice) and the relay's data connections."""

from __future__ import annotations

import os
import socket

import trio

from protocol.splice import splice_sockets


async def _pair() -> tuple[trio.socket.SocketType, trio.socket.SocketType]:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = trio.socket.socket()
    await client.connect(listener.getsockname())
    server, _ = await listener.accept()
    listener.close()
    return client, server


async def test_bytes_flow_both_ways_and_half_close_passes_on() -> None:
    # browser <-> [a  relay  b] <-> nas, the middle joined by splice_sockets
    browser, a = await _pair()
    b, nas = await _pair()
    up = os.urandom(5 * 1024 * 1024)
    down = os.urandom(3 * 1024 * 1024)
    got_up = bytearray()
    got_down = bytearray()

    async def browser_side() -> None:
        view = memoryview(up)
        while view:
            view = view[await browser.send(view) :]
        browser.shutdown(socket.SHUT_WR)
        while data := await browser.recv(1 << 20):
            got_down.extend(data)

    async def nas_side() -> None:
        while data := await nas.recv(1 << 20):
            got_up.extend(data)
        view = memoryview(down)  # answers only after the browser's half-close arrived
        while view:
            view = view[await nas.send(view) :]
        nas.shutdown(socket.SHUT_WR)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(browser_side)
            nursery.start_soon(nas_side)
            moved = await splice_sockets(a, b)
    assert bytes(got_up) == up and bytes(got_down) == down
    assert moved == (len(up), len(down))
    for sock in (browser, nas):
        sock.close()


async def test_a_reset_ends_both_directions() -> None:
    browser, a = await _pair()
    b, nas = await _pair()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(splice_sockets, a, b)
            await browser.send(b"hello")
            assert await nas.recv(10) == b"hello"
            # An abortive close (RST) of the browser's side.
            browser.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            browser.close()
            assert await nas.recv(10) == b""
    nas.close()
