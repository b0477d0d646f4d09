"""The Trio binding: conformance with trio's stream suite, isolation of streams, keepalive."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

import protocol
from protocol.tunnel import Tunnel, TunnelStream

from .pairs import tunnel_pair


async def _stream_pair(client: Tunnel, server: Tunnel) -> tuple[TunnelStream, TunnelStream]:
    mine = await client.open_stream("web")
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
