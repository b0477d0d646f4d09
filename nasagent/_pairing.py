"""Pairing: a NAS with no device identity becomes a device of the owner who types its code
on the portal (the shape of OAuth's device authorization grant, RFC 8628).

It opens an install-kind tunnel with its own device key (the key the device will use) and
asks for a code; it prints the code and the portal's address in its log and writes them to
`pairing.json` in its state directory for the NAS's own UI to show. When the relay says
Paired, the name the owner chose is kept in `identity.json` there, and the agent serves as
that device. A code lives ten minutes; the agent asks again after.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Final

import trio

import protocol
from config import AgentConfig, HostPort
from tunnel import load_or_create_key

from ._agent import RelayClient

__all__ = ["PairingAgent", "paired_identity"]

log = logging.getLogger("nascloud-agent")

IDENTITY_FILE: Final = "identity.json"
PAIRING_FILE: Final = "pairing.json"
PAIRING_NAME: Final = "pairing"  # the install-kind name this tunnel authenticates under


def paired_identity(state_dir: Path) -> str | None:
    """The device name pairing gave this NAS, if it has been paired."""
    try:
        name = json.loads((state_dir / IDENTITY_FILE).read_text())["device_name"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        return protocol.validate_label(name)
    except ValueError:
        return None


def _write(path: Path, content: dict[str, object]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(content, indent=2) + "\n")
    os.replace(temporary, path)


class PairingAgent(RelayClient):
    def __init__(self, config: AgentConfig) -> None:
        super().__init__(config)
        self.key = load_or_create_key(config.agent.key_file)
        self.code: str | None = None
        self.device: str | None = None

    async def _session(self, address: HostPort) -> bool:
        tls = await self._connect(address)
        conn = protocol.Connection(
            protocol.Role.CLIENT,
            server_name=self.config.relay.server_name,
            credentials=protocol.Credentials(protocol.AuthKind.INSTALL, PAIRING_NAME, self.key),
        )
        state = self.config.agent.state_dir
        async with self._open(tls, conn) as tunnel:
            self.tunnel = tunnel
            await tunnel.send_message(protocol.PairRequest(1))
            while True:
                try:
                    message = await tunnel.receive_message()
                except trio.BrokenResourceError:
                    break
                if isinstance(message, protocol.PairCode):
                    self.code = message.code
                    self.connected.set()
                    expires = time.time() + message.expires_in_s
                    _write(
                        state / PAIRING_FILE,
                        {"code": message.code, "url": message.url, "expires_at": expires},
                    )
                    log.info(
                        "to add this NAS to your account, open %s and type the code %s "
                        "(valid %d minutes)",
                        message.url,
                        message.code,
                        message.expires_in_s // 60,
                    )
                elif isinstance(message, protocol.Paired):
                    self.device = message.device
                    _write(state / IDENTITY_FILE, {"device_name": message.device})
                    (state / PAIRING_FILE).unlink(missing_ok=True)
                    log.info("paired: this NAS is now the device %s", message.device)
                    await tunnel.aclose()
                    self.tunnel = None
                    return True
                elif isinstance(message, protocol.Error):
                    log.error("the relay refused to pair this NAS: %s", message.message)
                    break
        self.tunnel = None
        self.connected = trio.Event()
        self.code = None
        (state / PAIRING_FILE).unlink(missing_ok=True)
        return False
