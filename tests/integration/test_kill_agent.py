"""kill -9 of an agent: relayd lets go of everything it held for it (its tunnel, its
presence, its ready data connections), within the keepalive bound at most. A stopped agent
(no FIN, no reset: a hung NAS or a cut cable) is let go of by the keepalive."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from relayd._daemon import Relayd, serve
from tests.relay_harness import (
    browse,
    echo_service,
    listening_service,
    prepare,
    relay_config,
)

BIN = Path(sys.executable).parent
# Without a FIN or reset, the keepalive ends the tunnel after 3 s: the bound covers that.
KEEPALIVE = "keepalive_interval_s = 1\nkeepalive_timeout_s = 3"
BOUND_S = 8


def agent_toml(tunnel_address: str, service: str) -> str:
    """relay_harness.agent's config, for `nascloud-agent --config`."""
    return textwrap.dedent(f"""
        [agent]
        device_name = "nas1"
        key_file = "nas1.key"
        state_dir = "agent-nas1"
        [relay]
        addresses = ["{tunnel_address}"]
        server_name = "relay.test"
        ca_file = "ca.pem"
        [services]
        web = "{service}"
        [reconnect]
        initial_delay_s = 0.05
        max_delay_s = 0.2
        """)


async def until(condition: Callable[[], bool], timeout_s: float, why: Callable[[], str]) -> None:
    """Poll state that has no event of its own (it lives in another process, or in relayd
    between its own events)."""
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return
        await trio.sleep(0.02)
    raise AssertionError(why())


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "stopped"])
async def test_a_gone_agent_leaves_nothing_behind_in_relayd(
    tmp_path: Path, how: signal.Signals
) -> None:
    await prepare(tmp_path)
    service = await listening_service()
    log_path = tmp_path / "agent.log"
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            relay: Relayd = await nursery.start(serve, relay_config(tmp_path, tunnel=KEEPALIVE))
            assert relay.data is not None and relay.data.pools is not None
            pools = relay.data.pools
            nursery.start_soon(echo_service, service)
            config = tmp_path / "agent.toml"
            config.write_text(
                agent_toml(relay.listening["tunnel"][0], f"127.0.0.1:{service.getsockname()[1]}")
            )
            with log_path.open("ab") as log:
                nas = await trio.lowlevel.open_process(
                    [str(BIN / "nascloud-agent"), "--config", str(config)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=tmp_path,
                )
            try:

                def agent_log() -> str:
                    return f"agent exit {nas.poll()}: {log_path.read_text()}"

                await until(lambda: relay.agents.tunnel_of("nas1") is not None, 15, agent_log)
                https = relay.listening["https"][0]
                assert (await browse(https, b"first")).endswith(b"first")
                await until(lambda: pools.ready_count() > 0, 5, agent_log)
                assert "nas1" in relay.agents.presence.devices
                nas.send_signal(how)
                if how == signal.SIGKILL:
                    await nas.wait()
                killed_at = trio.current_time()

                def left() -> str:
                    return (
                        f"after {trio.current_time() - killed_at:.1f} s: "
                        f"tunnels {sorted(relay.agents.tunnels)}, "
                        f"presence {sorted(relay.agents.presence.devices)}, "
                        f"pools {len(pools)} holding {pools.ready_count()} ready"
                    )

                await until(
                    lambda: (
                        "nas1" not in relay.agents.tunnels
                        and "nas1" not in relay.agents.presence.devices
                        and pools.ready_count() == 0
                        and len(pools) == 0
                    ),
                    BOUND_S,
                    left,
                )
            finally:
                if nas.poll() is None:
                    nas.kill()  # a stopped process dies of SIGKILL too
                    await nas.wait()
            nursery.cancel_scope.cancel()
    service.close()
