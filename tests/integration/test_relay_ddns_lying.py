"""A ddnsd that answers an update with something other than ACK or ERROR: relayd answers the
agent with an error, says so once in its log, and carries on."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio
import trustme

import protocol
from config import DdnsdConfig, RelaydConfig, loads
from ddnsd._channel import ServiceChannel
from ddnsd._daemon import Ddnsd
from ddnsd._daemon import serve as serve_ddnsd
from registry import Registry
from relayd._daemon import Relayd
from relayd._daemon import serve as serve_relayd
from tests.relay_harness import device_tunnel
from tunnel import load_or_create_key, public_key_base64


async def _lie(self: ServiceChannel, message: protocol.DdnsUpdate) -> protocol.AppMessage:
    await trio.lowlevel.checkpoint()
    return message  # the update itself, under the relay's own id: taken as the answer


async def test_a_reply_neither_ack_nor_error_is_answered_with_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    for name in ("relay.test", "ddnsd.test"):
        cert = ca.issue_cert(name)
        cert.private_key_pem.write_to_path(str(tmp_path / f"{name}.key"))
        cert.cert_chain_pems[0].write_to_path(str(tmp_path / f"{name}.crt"))
    device_key = load_or_create_key(tmp_path / "device.key")
    relay_key = load_or_create_key(tmp_path / "relay-service.key")
    registry = Registry.open_sqlite(tmp_path / "registry.sqlite3")
    owner = await registry.create_account("o@example.org", "Owner")
    await registry.enrol_device(owner.account_id, "nas1", protocol.public_key_bytes(device_key))
    await registry.aclose()
    ddnsd_config = loads(
        DdnsdConfig,
        f"""
        [ddnsd]
        state_dir = "ddnsd"
        registry = "registry.sqlite3"
        [zone]
        name = "dyn.test"
        primary_ns = "ns1.dyn.test"
        hostmaster = "hostmaster.dyn.test"
        [dns]
        listen = ["127.0.0.1:0"]
        [protocol]
        listen = "127.0.0.1:0"
        server_name = "ddnsd.test"
        cert_file = "ddnsd.test.crt"
        key_file = "ddnsd.test.key"
        [protocol.services]
        relayd = "{public_key_base64(relay_key)}"
        """,
        "ddnsd.toml",
        tmp_path,
    )
    monkeypatch.setattr(ServiceChannel, "_update", _lie)
    caplog.set_level(logging.WARNING, logger="relayd")
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            ddnsd: Ddnsd = await nursery.start(serve_ddnsd, ddnsd_config)
            relay_config = loads(
                RelaydConfig,
                f"""
                [relay]
                name = "relay.test"
                state_dir = "relay"
                registry = "registry.sqlite3"
                [tunnel]
                listen = "127.0.0.1:0"
                cert_file = "relay.test.crt"
                key_file = "relay.test.key"
                [ingress]
                link_zone = "link.test"
                [ddnsd]
                address = "{ddnsd.listening["protocol"][0]}"
                server_name = "ddnsd.test"
                key_file = "relay-service.key"
                ca_file = "ca.pem"
                """,
                "relayd.toml",
                tmp_path,
            )
            relay: Relayd = await nursery.start(serve_relayd, relay_config)
            tunnel = relay.listening["tunnel"][0]
            async with device_tunnel(tmp_path, tunnel, "nas1", device_key) as agent:
                for request_id in (41, 42, 43):
                    await agent.send_message(
                        protocol.DdnsUpdate(request_id, "nas1", "nas1", "A", ("198.51.100.4",))
                    )
                    with trio.fail_after(5):
                        reply = await agent.receive_message()
                    assert reply == protocol.Error(
                        protocol.ErrorCode.SERVICE_UNAVAILABLE,
                        "DNS updates are unavailable",
                        request_id,
                    )
            nursery.cancel_scope.cancel()
    said = [r for r in caplog.records if "DdnsUpdate" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING and said[0].exc_info is None
    assert not [r for r in caplog.records if r.exc_info is not None]
