"""Kernel-joined sockets (protocol.splice) and the relay's data connections."""

from __future__ import annotations

import os
import select
import socket

import trio

from tunnel import Splicer, splice_sockets


async def connected_pair() -> tuple[trio.socket.SocketType, trio.socket.SocketType]:
    """Two ends of one TCP connection on loopback."""
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
    browser, a = await connected_pair()
    b, nas = await connected_pair()
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
    browser, a = await connected_pair()
    b, nas = await connected_pair()
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


async def _echo_through(a: trio.socket.SocketType, payload: bytes) -> bytes:
    """Send `payload` on `a` and read back as many bytes (the far side echoes)."""
    await a.send(payload)
    got = b""
    while len(got) < len(payload):
        chunk = await a.recv(65536)
        assert chunk, "the joined connection ended early"
        got += chunk
    return got


async def _echo(sock: trio.socket.SocketType) -> None:
    with sock:
        while data := await sock.recv(65536):
            await sock.send(data)


async def test_cancelling_one_join_closes_its_sockets_and_no_other() -> None:
    browser1, a1 = await connected_pair()
    b1, nas1 = await connected_pair()
    browser2, a2 = await connected_pair()
    b2, nas2 = await connected_pair()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_echo, nas1)
            nursery.start_soon(_echo, nas2)
            nursery.start_soon(splice_sockets, a2, b2)
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as inner:
                    inner.start_soon(splice_sockets, a1, b1)
                    assert await _echo_through(browser1, b"one") == b"one"
                    scope.cancel()
            assert a1.fileno() == -1 and b1.fileno() == -1
            assert await browser1.recv(10) == b""  # the relay's side is gone
            # The other join goes on as if nothing happened.
            for n in range(20):
                assert (
                    await _echo_through(browser2, b"x" * n * 1000 + b"!") == b"x" * n * 1000 + b"!"
                )
            browser2.shutdown(socket.SHUT_WR)
            assert await browser2.recv(10) == b""
    for sock in (browser1, browser2):
        sock.close()


async def test_a_sink_that_stops_reading_holds_the_source_back() -> None:
    """Backpressure, not buffering: what a peer that never reads can make this process hold
    is bounded by the pipe, and a second join meanwhile is not slowed."""
    browser, a = await connected_pair()
    b, stuck = await connected_pair()  # `stuck` never reads
    browser2, a2 = await connected_pair()
    b2, nas2 = await connected_pair()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(splice_sockets, a, b)
            nursery.start_soon(splice_sockets, a2, b2)
            nursery.start_soon(_echo, nas2)
            accepted = 0
            chunk = b"\0" * 65536
            stalled_at = trio.current_time() + 2
            while trio.current_time() < stalled_at:
                with trio.move_on_after(0.2) as waited:
                    accepted += await browser.send(chunk)
                if waited.cancelled_caught:
                    break  # the browser cannot send more: held back
            else:
                raise AssertionError("a sink that never reads took everything")
            # Socket buffers on three sockets plus the 1 MiB pipe, far from unbounded.
            assert accepted < 64 * 1024 * 1024
            for _ in range(10):
                assert await _echo_through(browser2, b"y" * 5000) == b"y" * 5000
            nursery.cancel_scope.cancel()
    for sock in (browser, stuck, browser2):
        sock.close()


async def test_many_joins_at_once_keep_their_bytes_apart() -> None:
    count = 40
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            browsers = []
            for _ in range(count):
                browser, a = await connected_pair()
                b, nas = await connected_pair()
                nursery.start_soon(splice_sockets, a, b)
                nursery.start_soon(_echo, nas)
                browsers.append(browser)

            async def talk(index: int, browser: trio.socket.SocketType) -> None:
                payload = os.urandom(1000 + index * 997)
                for _ in range(5):
                    assert await _echo_through(browser, payload) == payload
                browser.shutdown(socket.SHUT_WR)
                assert await browser.recv(10) == b""
                browser.close()

            async with trio.open_nursery() as talks:
                for index, browser in enumerate(browsers):
                    talks.start_soon(talk, index, browser)


async def test_a_socket_closed_by_someone_else_ends_its_join_and_no_other() -> None:
    """The splicing thread outlives a join whose socket is gone before it gets there (a
    registration that fails once stopped every join in the process)."""
    browser, a = await connected_pair()
    b, nas = await connected_pair()
    a.close()
    with trio.fail_after(10):
        assert await splice_sockets(a, b) == (0, 0)
        assert await nas.recv(10) == b""  # the other side is closed, not left hanging
        browser2, a2 = await connected_pair()
        b2, nas2 = await connected_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(splice_sockets, a2, b2)
            nursery.start_soon(_echo, nas2)
            assert await _echo_through(browser2, b"still joining") == b"still joining"
            browser2.shutdown(socket.SHUT_WR)
            assert await browser2.recv(10) == b""
    for sock in (browser, nas, browser2):
        sock.close()


async def test_bytes_waiting_before_the_join_move_at_once_and_ends_already_seen_finish_it() -> None:
    # A ready data connection holds the browser's first bytes before its join starts.
    browser, a = await connected_pair()
    b, nas = await connected_pair()
    await browser.send(b"waiting")
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            moved: list[tuple[int, int]] = []

            async def join() -> None:
                moved.append(await splice_sockets(a, b))

            nursery.start_soon(join)
            assert await nas.recv(100) == b"waiting"
            await nas.send(b"answer")
            assert await browser.recv(100) == b"answer"
            browser.shutdown(socket.SHUT_WR)
            nas.shutdown(socket.SHUT_WR)
    assert moved == [(7, 6)]
    # Both ends already shut before the join: it ends at once, the bytes delivered.
    browser2, c = await connected_pair()
    d, nas2 = await connected_pair()
    await browser2.send(b"last words")
    browser2.shutdown(socket.SHUT_WR)
    nas2.shutdown(socket.SHUT_WR)
    with trio.fail_after(5):
        assert await splice_sockets(c, d) == (10, 0)
    assert await nas2.recv(100) == b"last words"
    assert await nas2.recv(100) == b""
    assert await browser2.recv(100) == b""
    # Nothing but both ends: over before the splicing thread hears of it, each end passed on.
    browser3, e = await connected_pair()
    f, nas3 = await connected_pair()
    browser3.shutdown(socket.SHUT_WR)
    nas3.shutdown(socket.SHUT_WR)
    with trio.fail_after(5):
        assert await splice_sockets(e, f) == (0, 0)
    assert await nas3.recv(100) == b""
    assert await browser3.recv(100) == b""
    for sock in (browser, nas, browser2, nas2, browser3, nas3):
        sock.close()


async def test_a_failed_splicing_thread_ends_its_joins_and_the_next_join_gets_a_new_one() -> None:
    splicer = Splicer()
    browser, a = await connected_pair()
    b, nas = await connected_pair()

    class _Broken:
        """The thread's epoll, whose next wait fails as nothing in the thread should."""

        def __init__(self, real: select.epoll) -> None:
            self.real = real

        def poll(self) -> list[tuple[int, int]]:
            raise RuntimeError("broken on purpose")

        def __getattr__(self, name: str) -> object:
            return getattr(self.real, name)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            moved: list[tuple[int, int]] = []

            async def join() -> None:
                moved.append(await splicer.join(a, b))

            nursery.start_soon(join)
            await browser.send(b"before")
            assert await nas.recv(100) == b"before"
            assert splicer._epoll is not None
            splicer._epoll = _Broken(splicer._epoll)  # type: ignore[assignment]
            os.eventfd_write(splicer._wake, 1)  # wake the thread into its next wait
    assert moved == [(6, 0)]  # ended, not left waiting
    # The next join starts a new thread, which works.
    browser2, c = await connected_pair()
    d, nas2 = await connected_pair()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(splicer.join, c, d)
            await browser2.send(b"after")
            assert await nas2.recv(100) == b"after"
            browser2.shutdown(socket.SHUT_WR)
            nas2.shutdown(socket.SHUT_WR)
    for sock in (browser, a, b, nas, browser2, c, d, nas2):
        sock.close()
