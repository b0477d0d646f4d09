"""The Trio binding: conformance with trio's stream suite, isolation of streams, keepalive,
and the tasks and replies a tunnel owns."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import protocol
from protocol import Open
from tunnel import Tunnel, TunnelStream

from .pairs import open_pair, tunnel_pair


async def _stream_pair(client: Tunnel, server: Tunnel) -> tuple[TunnelStream, TunnelStream]:
    mine = await client.open_stream(Open("web"))
    theirs = await server.accept_stream()
    return mine, theirs


async def test_check_half_closeable_stream() -> None:
    small = protocol.Settings(stream_window_bytes=64 * 1024)
    async with tunnel_pair(client_settings=small, server_settings=small) as (client, server):

        async def stream_maker() -> tuple[TunnelStream, TunnelStream]:
            return await _stream_pair(client, server)

        async def clogged_stream_maker() -> tuple[TunnelStream, TunnelStream]:
            mine, theirs = await _stream_pair(client, server)
            # Use up both send windows, so send_all blocks until the other side reads (the
            # suite also runs with the pair flipped).
            await mine.send_all(b"x" * 64 * 1024)
            await theirs.send_all(b"x" * 64 * 1024)
            return mine, theirs

        await trio.testing.check_half_closeable_stream(stream_maker, clogged_stream_maker)


async def test_stalled_stream_does_not_stall_another_on_a_lockstep_transport() -> None:
    # lockstep: every send_all on the transport waits for the peer's receive_some, so any
    # head-of-line blocking in the binding would show up as a hang here.
    settings = protocol.Settings(stream_window_bytes=64 * 1024)
    async with tunnel_pair(
        trio.testing.lockstep_stream_pair, client_settings=settings, server_settings=settings
    ) as (client, server):
        stalled_out, _stalled_in = await _stream_pair(client, server)  # never read
        live_out, live_in = await _stream_pair(client, server)
        stalled_sent = 0

        async def flood() -> None:
            nonlocal stalled_sent
            while True:
                await stalled_out.send_all(b"s" * 4096)
                stalled_sent += 4096

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(flood)
                for round_trip in range(200):
                    message = b"ping %d" % round_trip * 100
                    await live_out.send_all(message)
                    got = b""
                    while len(got) < len(message):
                        got += await live_in.receive_some()
                    assert got == message
                nursery.cancel_scope.cancel()
        # The stalled stream filled its window and no more: credit, not buffering, stopped it.
        assert stalled_sent == 64 * 1024


async def test_reader_that_stops_reading_bounds_buffered_bytes() -> None:
    settings = protocol.Settings(stream_window_bytes=32 * 1024)
    async with tunnel_pair(client_settings=settings, server_settings=settings) as (
        client,
        server,
    ):
        out, into = await _stream_pair(client, server)
        with trio.move_on_after(1) as scope:
            while True:
                await out.send_all(b"z" * 1000)
        assert scope.cancelled_caught
        await trio.testing.wait_all_tasks_blocked()
        assert into.bytes_buffered <= 32 * 1024
        # Reading gives the credit back and the sender resumes.
        await into.receive_some(32 * 1024)
        with trio.fail_after(1):
            await out.send_all(b"more")


async def test_messages_both_ways_and_ping() -> None:
    async with tunnel_pair() as (client, server):
        await client.send_message(protocol.Register(lan_addresses=("192.168.1.20",)))
        assert await server.receive_message() == protocol.Register(lan_addresses=("192.168.1.20",))
        await server.send_message(protocol.Ack(request_id=7))
        assert await client.receive_message() == protocol.Ack(request_id=7)
        assert await client.ping() >= 0
        assert await server.ping() >= 0


async def test_wrong_key_fails_on_both_sides() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tunnel import open_tunnel

    from .pairs import client as make_client
    from .pairs import server as make_server

    a, b = trio.testing.memory_stream_pair()
    conn_c, _key = make_client()
    conn_s = make_server()
    other = protocol.public_key_bytes(Ed25519PrivateKey.generate())

    async def authenticate(request: protocol.AuthenticationRequested) -> bytes:
        return other

    errors: dict[str, protocol.RemoteProtocolError] = {}

    async def side(name: str, transport: trio.abc.Stream, conn: protocol.Connection) -> None:
        auth = authenticate if name == "server" else None
        with pytest.raises(protocol.RemoteProtocolError) as info:
            async with open_tunnel(transport, conn, authenticate=auth):
                pass  # pragma: no cover - the handshake must fail
        errors[name] = info.value

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(side, "client", a, conn_c)
            nursery.start_soon(side, "server", b, conn_s)
    assert errors["client"].error_code == protocol.ErrorCode.AUTHENTICATION_FAILED
    assert errors["server"].error_code == protocol.ErrorCode.AUTHENTICATION_FAILED


async def _silent_server(conn: protocol.Connection, key: Any, stream: trio.abc.Stream) -> None:
    """Completes the handshake, then never answers again: a half-open connection."""
    while conn.state is not protocol.ConnectionState.OPEN:
        for event in conn.receive_data(await stream.receive_some()):
            if isinstance(event, protocol.AuthenticationRequested):
                conn.accept_authentication(protocol.public_key_bytes(key))
        await stream.send_all(conn.data_to_send())
    await trio.sleep_forever()


async def test_keepalive_declares_a_silent_peer_dead(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from tunnel import open_tunnel

    from .pairs import client as make_client
    from .pairs import server as make_server

    a, b = trio.testing.memory_stream_pair()
    conn_c, key = make_client()
    conn_s = make_server()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_silent_server, conn_s, key, b)
        started = trio.current_time()
        async with open_tunnel(
            a, conn_c, keepalive_interval_s=15, keepalive_timeout_s=45
        ) as tunnel:
            await tunnel.wait_closed()
        assert isinstance(tunnel.error, TimeoutError)
        assert 45 <= trio.current_time() - started <= 61
        nursery.cancel_scope.cancel()


async def test_tunnels_set_up_together_do_not_keep_alive_together(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Sixteen tunnels up at the same moment to peers that all fall silent: each checks on
    its own rhythm, so they are declared dead seconds apart, not in one burst (the same
    spread keeps their PINGs apart while they live)."""
    from tunnel import open_tunnel

    from .pairs import client as make_client
    from .pairs import server as make_server

    deaths: list[float] = []
    started = trio.current_time()

    async def one() -> None:
        a, b = trio.testing.memory_stream_pair()
        conn_c, key = make_client()
        conn_s = make_server()

        async with trio.open_nursery() as inner:
            inner.start_soon(_silent_server, conn_s, key, b)
            async with open_tunnel(
                a, conn_c, keepalive_interval_s=15, keepalive_timeout_s=45
            ) as tunnel:
                await tunnel.wait_closed()
            assert isinstance(tunnel.error, TimeoutError)
            deaths.append(trio.current_time() - started)
            inner.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        for _ in range(16):
            nursery.start_soon(one)
    assert len(deaths) == 16
    assert all(45 <= t <= 61 for t in deaths), deaths
    assert max(deaths) - min(deaths) >= 3, deaths


async def test_keepalive_keeps_a_quiet_but_live_tunnel(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with tunnel_pair(keepalive_s=(15, 45)) as (client, server):
        # Ten minutes without a byte of application traffic: PINGs keep both ends alive.
        await trio.sleep(600)
        assert not client.closed and not server.closed
        assert client.bytes_received > 0 and server.bytes_received > 0


async def test_drain_lets_open_streams_finish_and_refuses_new_ones() -> None:
    async with tunnel_pair() as (client, server):
        out, into = await server.open_stream(Open("web")), None
        into = await client.accept_stream()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.drain, 5)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BrokenResourceError):
                await server.open_stream(Open("web"))
            # The stream that was open still works in both directions until it ends.
            await out.send_all(b"last words")
            assert await into.receive_some() == b"last words"
            await into.send_all(b"reply")
            assert await out.receive_some() == b"reply"
            await out.send_eof()
            await into.send_eof()
            assert await into.receive_some() == b""
            assert await out.receive_some() == b""
        assert server.closed


async def test_peer_that_sends_garbage_loses_its_tunnel_only() -> None:
    async with tunnel_pair() as (client, server):
        stream = await client.open_stream(Open("web"))
        accepted = await server.accept_stream()
        # Bypass the client's connection: write a frame with an unknown type onto the wire.
        await client.transport.send_all(b"\xee" + b"\x00" * 9)
        with trio.fail_after(5):
            await server.wait_closed()
        assert isinstance(server.error, protocol.RemoteProtocolError)
        with pytest.raises(trio.BrokenResourceError):
            await accepted.receive_some()
        with trio.fail_after(5):
            await client.wait_closed()
        with pytest.raises(trio.BrokenResourceError):
            await stream.send_all(b"x")


async def test_streams_go_to_on_stream_in_order_until_goaway() -> None:
    async with tunnel_pair() as (client, server):
        taken: list[TunnelStream] = []
        three = trio.Event()

        def take(stream: TunnelStream) -> None:
            taken.append(stream)
            if len(taken) == 3:
                three.set()

        client.on_stream = take
        opened = [
            await server.open_stream(Open(service)) for service in ("web", "web-http", "setup")
        ]
        await opened[1].send_all(b"first bytes")
        with trio.fail_after(5):
            await three.wait()
        # Taken from the reader, in the order they were opened, each working.
        assert [s.request.service for s in taken] == ["web", "web-http", "setup"]
        assert await taken[1].receive_some() == b"first bytes"
        async with trio.open_nursery() as nursery:
            done = trio.Event()

            async def wait() -> None:
                await client.wait_no_more_streams()
                done.set()

            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            assert not done.is_set()  # streams may still come
            nursery.start_soon(server.drain, 5)
            with trio.fail_after(5):
                await done.wait()  # GOAWAY: no stream can come any more
            for stream in opened + taken:
                await stream.aclose()


# -- tasks and replies owned by the tunnel -------------------------------------------------------


async def test_a_tunnels_tasks_are_cancelled_when_it_ends() -> None:
    started = trio.Event()
    cancelled = trio.Event()

    async def task(label: str) -> None:
        assert label == "reply"
        started.set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.set()
            raise

    async with tunnel_pair() as (client, server):
        assert server.start_soon(task, "reply")
        await started.wait()
        assert server.tasks_running == 1
        await client.aclose()
        with trio.fail_after(5):
            await cancelled.wait()
            await server.wait_closed()
        await trio.testing.wait_all_tasks_blocked()
        assert server.tasks_running == 0
        assert not server.start_soon(task, "reply")  # over: refused


async def test_tasks_beyond_the_cap_are_refused_until_one_ends() -> None:
    release = trio.Event()

    async def task() -> None:
        await release.wait()

    async with tunnel_pair(max_tasks=2) as (_, server):
        assert server.start_soon(task)
        assert server.start_soon(task)
        assert not server.start_soon(task)
        assert server.tasks_running == 2
        release.set()
        await trio.testing.wait_all_tasks_blocked()
        assert server.tasks_running == 0
        assert server.start_soon(task)


async def test_a_task_that_fails_ends_its_tunnel_and_is_raised() -> None:
    async def task() -> None:
        raise KeyError("a bug")

    with pytest.raises(ExceptionGroup) as info:
        async with tunnel_pair() as (_, server):
            assert server.start_soon(task)
            with trio.fail_after(5):
                await server.wait_closed()
    assert info.group_contains(KeyError)


async def test_send_message_soon_queues_a_reply_without_waiting() -> None:
    async with tunnel_pair() as (client, server):
        assert server.send_message_soon(protocol.Ack(7))
        with trio.fail_after(5):
            assert await client.receive_message() == protocol.Ack(7)


async def test_send_message_soon_refuses_beyond_the_cap_until_the_writer_runs() -> None:
    async with tunnel_pair(max_unsent_messages=3) as (client, server):
        # No checkpoint in between: the writer has not taken any of them yet.
        assert [server.send_message_soon(protocol.Ack(n)) for n in range(1, 5)] == [
            True,
            True,
            True,
            False,
        ]
        with trio.fail_after(5):
            assert [await client.receive_message() for _ in range(3)] == [
                protocol.Ack(1),
                protocol.Ack(2),
                protocol.Ack(3),
            ]
        assert server.send_message_soon(protocol.Ack(5))  # taken by the writer: room again
        with trio.fail_after(5):
            assert await client.receive_message() == protocol.Ack(5)


async def test_send_message_soon_refuses_once_the_tunnel_is_closed() -> None:
    async with tunnel_pair() as (_, server):
        await server.aclose()
        assert not server.send_message_soon(protocol.Ack(1))


def test_a_tunnel_keeps_few_enough_attributes_to_share_its_dict_keys() -> None:
    # CPython 3.11 shares an instance dict's keys among instances up to 29 of them; a 30th
    # costs each of a relay's thousands of idle tunnels about 1.3 KiB (bench/tunnels.py).
    conn, _ = open_pair()
    tunnel = Tunnel(trio.testing.memory_stream_pair()[0], conn)
    assert len(vars(tunnel)) <= 29


class _Stallable(trio.abc.Stream):
    """A transport whose sends can be held up, as a peer that stops reading holds them."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.go = trio.Event()
        self.go.set()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.go.wait()
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return bytes(await self.inner.receive_some(max_bytes))

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_protocol_error_breaks_the_streams_at_once() -> None:
    # The reader stops on a peer's protocol error and gives the writer a second to send the
    # GOAWAY; a stream used in that second must see a broken stream (which join_streams and
    # every caller handle), not the connection's LocalProtocolError, which ended the agent.
    from protocol._frames import FrameType
    from protocol._messages import MAX_WINDOW, WindowUpdate

    held: list[_Stallable] = []

    def transports() -> tuple[trio.abc.Stream, trio.abc.Stream]:
        a, b = trio.testing.memory_stream_pair()
        held.append(_Stallable(a))
        return held[0], b

    async with tunnel_pair(transports) as (client, server):
        mine, _ = await _stream_pair(client, server)
        held[0].go = trio.Event()  # the client's GOAWAY will wait in its writer
        server.conn._queue(FrameType.WINDOW, 0, 0, WindowUpdate(MAX_WINDOW))  # overflows
        server._wake_writer()
        await trio.testing.wait_all_tasks_blocked()
        assert client.conn.state is protocol.ConnectionState.CLOSED  # the GOAWAY is queued
        with pytest.raises(trio.BrokenResourceError):
            await mine.send_all(b"after the error")
        with pytest.raises(trio.BrokenResourceError):
            await mine.send_eof()
        held[0].go.set()
        with trio.fail_after(5):
            await server.wait_closed()  # the GOAWAY still went out, with the reason
        assert server.goaway is not None
        assert server.goaway.error_code == protocol.ErrorCode.FLOW_CONTROL_ERROR
