"""The agent's default deny: a stream for a service that is not in its `[services]` is reset
(SERVICE_UNAVAILABLE), and nothing on the NAS is connected for it."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

import protocol
from relayd._daemon import Relayd, serve
from tests.relay_harness import agent, listening_service, prepare, relay_config


def _accepted(service: trio.socket.SocketType) -> int:
    """How many connections wait in `service`'s accept queue (taking them)."""
    count = 0
    while True:
        try:
            conn, _ = service._sock.accept()  # type: ignore[attr-defined]
        except BlockingIOError:
            return count
        conn.close()
        count += 1


@pytest.mark.parametrize("service_name", ["admin", "webx", "we"])
async def test_a_service_not_configured_is_refused_and_nothing_is_connected(
    tmp_path: Path, service_name: str
) -> None:
    await prepare(tmp_path)
    service = await listening_service()  # [services].web; never accepts by itself
    service._sock.setblocking(False)  # type: ignore[attr-defined]
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            config = relay_config(tmp_path, tunnel="data_connections = false")
            relay: Relayd = await nursery.start(serve, config)
            nas = agent(
                tmp_path, relay.listening["tunnel"][0], f"127.0.0.1:{service.getsockname()[1]}"
            )
            nursery.start_soon(nas.run)
            await nas.connected.wait()
            tunnel = relay.agents.tunnels["nas1"]  # the relay's side: it opens the streams

            refused = await tunnel.open_stream(protocol.Open(service_name, "192.0.2.7", 4321))
            with pytest.raises(trio.BrokenResourceError):
                await refused.receive_some()
            assert refused.reset_code == protocol.ErrorCode.SERVICE_UNAVAILABLE
            assert nas.streams_refused == 1 and nas.streams_served == 0
            assert _accepted(service) == 0

            # The same tunnel still serves what is configured: the check above could see a
            # local connection had there been one.
            served = await tunnel.open_stream(protocol.Open("web", "192.0.2.7", 4321))
            while nas.streams_served == 0:
                await trio.testing.wait_all_tasks_blocked()
            assert _accepted(service) == 1
            assert nas.streams_refused == 1
            assert not tunnel.closed
            await served.aclose()
            nursery.cancel_scope.cancel()
    service.close()
