"""An agent that pins the relay's certificate connects to that relay and to no other."""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path

import trio

from relayd._daemon import Relayd, serve
from tests.relay_harness import agent, listening_service, prepare, relay_config


def _relay_pin(tmp_path: Path) -> str:
    pem = (tmp_path / "relay.crt").read_text()
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


async def test_the_pinned_certificate_is_accepted_and_another_is_not(tmp_path: Path) -> None:
    await prepare(tmp_path)
    service = await listening_service()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            relay: Relayd = await nursery.start(serve, relay_config(tmp_path))
            tunnel = relay.listening["tunnel"][0]
            web = f"127.0.0.1:{service.getsockname()[1]}"
            right = agent(tmp_path, tunnel, web, extra=f'pinned_sha256 = "{_relay_pin(tmp_path)}"')
            nursery.start_soon(right.run)
            await right.connected.wait()
            assert "nas1" in relay.agents.tunnels
            await right.tunnel.aclose()  # type: ignore[union-attr]
            wrong = agent(tmp_path, tunnel, web, extra=f'pinned_sha256 = "{"0" * 64}"')
            nursery.start_soon(wrong.run)
            with trio.move_on_after(1):
                await wrong.connected.wait()
            assert not wrong.connected.is_set()
            assert wrong.attempts >= 2
            nursery.cancel_scope.cancel()
    service.close()
