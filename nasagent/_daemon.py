"""nascloud-agent as a process: device mode, or install mode until setup gives it a name."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import trio

from config import AgentConfig
from service import config_reloader, until_stopped

from ._agent import Agent, RelayClient
from ._install import InstallAgent
from ._pairing import PairingAgent, paired_identity

__all__ = ["main_async"]

log = logging.getLogger("nascloud-agent")


def _as_device(config: AgentConfig, name: str) -> AgentConfig:
    return dataclasses.replace(config, agent=dataclasses.replace(config.agent, device_name=name))


async def main_async(config: AgentConfig, config_path: Path | None = None) -> int:
    """Keep the tunnel up until SIGTERM or SIGINT; reload on SIGHUP. A NAS with no device
    name (in its config, or from an earlier pairing) pairs, with `pairing`, or runs in
    install mode until a reload gives it one or turns `pairing` on (then it pairs)."""
    name = config.agent.device_name or paired_identity(config.agent.state_dir)
    client: RelayClient
    if name is not None:
        config = _as_device(config, name)
        client = Agent(config)
    elif config.agent.pairing:
        client = PairingAgent(config)
    else:
        client = InstallAgent(config)
    async with trio.open_nursery() as nursery:

        async def pair_then_serve(pairing: PairingAgent) -> None:
            """Ask for a code until an owner takes it, then serve as the device named."""
            nonlocal client, config
            client = pairing
            await pairing.run()
            if pairing.device is not None:
                config = _as_device(config, pairing.device)
                client = Agent(config)
                await client.run()

        async def run() -> None:
            if isinstance(client, PairingAgent):
                await pair_then_serve(client)
            else:
                await client.run()

        nursery.start_soon(run)

        async def apply(new: AgentConfig) -> None:
            nonlocal client, config
            if isinstance(client, InstallAgent) and new.agent.device_name is not None:
                # Setup is done: stop reporting at once, then serve as the device.
                await client.stop()
                log.info("device identity received: install mode ends, %s", new.agent.device_name)
                client = Agent(new)
                nursery.start_soon(client.run)
                return
            if isinstance(client, InstallAgent) and new.agent.pairing:
                # Setup is done and the NAS is to be paired (the setup wizard's last step):
                # stop reporting at once, then ask for a code as a NAS with no identity does.
                await client.stop()
                log.info("setup is done: install mode ends, this NAS asks to be paired")
                config = new
                nursery.start_soon(pair_then_serve, PairingAgent(new))
                return
            if isinstance(client, Agent) and new.agent.device_name is None:
                new = _as_device(new, client.device)  # the name pairing gave it
            if isinstance(client, Agent) and new.agent.device_name != client.device:
                log.warning("the device name changes only with a restart")
            client.config = new  # services and relay addresses apply from the next stream
            log.info("configuration reloaded")

        name = await until_stopped(config_reloader(AgentConfig, config_path, apply, log))
        log.info("stopping on %s", name)
        if client.tunnel is not None:
            await client.tunnel.aclose()
        nursery.cancel_scope.cancel()
    return 0
