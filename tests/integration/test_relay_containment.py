"""relayd's boundaries: a connection whose handler fails unexpectedly is closed, logged once and
counted by unit, and the relay goes on serving every other connection."""

from __future__ import annotations

import logging
import socket
import struct
from pathlib import Path

import pytest
import trio
import trio.testing

from relayd._daemon import Relayd, serve
from relayd._names import LinkZone
from tests.relay_harness import (
    agent,
    browse,
    echo_service,
    listening_service,
    prepare,
    relay_config,
)


class _BrokenFor(LinkZone):
    """The link zone's names, but looking one name up raises, as a bug would."""

    def device_for(self, host: str) -> str | None:
        if host.startswith("boom."):
            raise RuntimeError("injected failure")
        return super().device_for(host)


async def test_a_failing_browser_connection_is_dropped_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await prepare(tmp_path)
    service = await listening_service()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            relay: Relayd = await nursery.start(serve, relay_config(tmp_path))
            relay.https.names = _BrokenFor("link.test")
            nas = agent(
                tmp_path, relay.listening["tunnel"][0], f"127.0.0.1:{service.getsockname()[1]}"
            )
            nursery.start_soon(nas.run)
            nursery.start_soon(echo_service, service)
            await nas.connected.wait()
            with caplog.at_level(logging.ERROR, logger="nascloud.boundary"):
                assert (
                    await browse(relay.listening["https"][0], b"x", name="boom.nas1.link.test")
                    == b""
                )
                # The handler closes the connection on its way out, before the boundary
                # above it counts: let it get there.
                await trio.testing.wait_all_tasks_blocked(cushion=0.1)
            assert relay.boundary.errors == {"https_connection": 1}
            failures = [r for r in caplog.records if r.name == "nascloud.boundary"]
            assert len(failures) == 1 and failures[0].exc_info is not None
            # The relay goes on: the next browser reaches the NAS.
            echoed = await browse(relay.listening["https"][0], b"still here")
            assert echoed.endswith(b"still here")
            metrics = "\n".join(m.name for m in relay.metrics())
            assert "nascloud_handler_errors_total" in metrics
            nursery.cancel_scope.cancel()
    service.close()


async def test_connections_reset_before_they_are_served_are_no_failures(tmp_path: Path) -> None:
    await prepare(tmp_path)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            relay: Relayd = await nursery.start(serve, relay_config(tmp_path))
            for kind in ("https", "tunnel"):
                host, port = relay.listening[kind][0].rsplit(":", 1)
                for _ in range(20):
                    sock = socket.socket()
                    # SO_LINGER 0: close sends a reset, before the relay's handler runs.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.connect((host, int(port)))
                    sock.close()
            await trio.testing.wait_all_tasks_blocked(cushion=0.2)
            assert relay.boundary.errors == {}
            nursery.cancel_scope.cancel()
