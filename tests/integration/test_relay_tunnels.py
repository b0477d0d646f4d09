"""relayd's tunnels by device and by address: a device that connects again replaces its old
tunnel, and one address may hold only `[limits].max_tunnels_per_address` tunnels at once."""

from __future__ import annotations

import logging
import ssl
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio
import trio.testing

import protocol
from relayd._daemon import Relayd, serve
from tests.relay_harness import (
    agent,
    browse,
    device_tunnel,
    echo_service,
    listening_service,
    prepare,
    relay_config,
)
from tunnel import Tunnel, load_or_create_key


async def test_a_second_tunnel_from_the_same_device_replaces_the_first(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "relayd")
    await prepare(tmp_path)
    service = await listening_service()
    key = load_or_create_key(tmp_path / "nas1.key")
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            relay: Relayd = await nursery.start(serve, relay_config(tmp_path))
            address = relay.listening["tunnel"][0]
            nursery.start_soon(echo_service, service)
            first_ended = trio.Event()
            first: list[Tunnel] = []

            async def first_tunnel() -> None:
                # The relay ends it: leaving open_tunnel may then say why, as an error.
                try:
                    async with device_tunnel(tmp_path, address, "nas1", key) as tunnel:
                        first.append(tunnel)
                        await tunnel.ping()
                        await tunnel.wait_closed()
                except (protocol.ProtocolError, trio.BrokenResourceError):
                    pass
                first_ended.set()

            nursery.start_soon(first_tunnel)
            await trio.testing.wait_all_tasks_blocked(cushion=0.1)  # the first is up, idle
            old = relay.agents.tunnels["nas1"]
            assert relay.counts["tunnel_replaced"] == 0

            # The same device again (a real agent, as after a reconnect it did not notice).
            nas = agent(tmp_path, address, f"127.0.0.1:{service.getsockname()[1]}")
            nursery.start_soon(nas.run)
            await nas.connected.wait()
            await first_ended.wait()
            assert first[0].closed
            new = relay.agents.tunnels["nas1"]
            assert new is not old
            assert old.closed and not new.closed
            assert relay.agents.tunnel_of("nas1") is new
            assert relay.counts["tunnel_replaced"] == 1
            assert relay.counts["tunnel_up"] == 2
            # The old tunnel's end (handled after the new one was up) leaves the new in place,
            # and browsers reach the device through it.
            await trio.testing.wait_all_tasks_blocked(cushion=0.1)
            assert relay.agents.tunnels.get("nas1") is new
            assert (await browse(relay.listening["https"][0], b"after")).endswith(b"after")
            assert relay.counts["tunnel_replaced"] == 1
            nursery.cancel_scope.cancel()
    service.close()
    # One line when each tunnel goes up and down: device, masked address, why.
    lines = [r.getMessage() for r in caplog.records if "tunnel " in r.getMessage()]
    assert lines.count("tunnel up for nas1 from 127.0.0.0/24") == 2, lines
    assert "tunnel down for nas1 from 127.0.0.0/24: tunnel closed" in lines, lines


async def test_tunnels_per_address_are_capped(tmp_path: Path) -> None:
    devices = ("nas1", "nas2", "nas3")
    await prepare(tmp_path, devices)
    keys = {device: load_or_create_key(tmp_path / f"{device}.key") for device in devices}
    config = relay_config(tmp_path, ingress="[limits]\nmax_tunnels_per_address = 2")
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            relay: Relayd = await nursery.start(serve, config)
            address = relay.listening["tunnel"][0]
            async with AsyncExitStack() as stack:
                held = [
                    await stack.enter_async_context(
                        device_tunnel(tmp_path, address, device, keys[device])
                    )
                    for device in devices[:2]
                ]
                for tunnel in held:
                    await tunnel.ping()
                assert relay.counts["tunnel_refused_limit"] == 0
                # The third from 127.0.0.1 is closed before TLS: no tunnel, whoever it is.
                with pytest.raises(trio.BrokenResourceError) as refused:
                    async with device_tunnel(tmp_path, address, "nas3", keys["nas3"]):
                        pass
                # Closed during the TLS handshake, not timed out.
                assert isinstance(refused.value.__cause__, ssl.SSLEOFError | ConnectionResetError)
                assert relay.counts["tunnel_refused_limit"] == 1
                assert "nas3" not in relay.agents.tunnels
                # Those already up are untouched.
                for tunnel in held:
                    assert await tunnel.ping() >= 0
                assert set(relay.agents.tunnels) == {"nas1", "nas2"}
            # Once they are gone, the address may connect again.
            await trio.testing.wait_all_tasks_blocked(cushion=0.1)
            assert not relay.agents.per_address
            async with device_tunnel(tmp_path, address, "nas3", keys["nas3"]) as tunnel:
                assert await tunnel.ping() >= 0
            assert relay.counts["tunnel_refused_limit"] == 1
            nursery.cancel_scope.cancel()
