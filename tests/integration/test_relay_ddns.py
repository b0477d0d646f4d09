"""An agent's DDNS update travels agent -> relayd -> ddnsd and is answered, with the relay
vouching only for the agent's own device."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import dns.message
import trio
import trustme

import protocol
from config import DdnsdConfig, RelaydConfig, loads
from ddnsd._daemon import Ddnsd
from ddnsd._daemon import serve as serve_ddnsd
from registry import Registry
from relayd._daemon import Relayd
from relayd._daemon import serve as serve_relayd
from tests.relay_harness import device_tunnel
from tunnel import Tunnel, load_or_create_key, public_key_base64


@asynccontextmanager
async def ddnsd_and_relay(tmp_path: Path) -> AsyncIterator[tuple[Ddnsd, Relayd, Tunnel]]:
    """`ddnsd_and_relayd`, and a tunnel to relayd as device nas1."""
    async with ddnsd_and_relayd(tmp_path) as (ddnsd, relay):
        tunnel = relay.listening["tunnel"][0]
        device_key = load_or_create_key(tmp_path / "device.key")
        async with device_tunnel(tmp_path, tunnel, "nas1", device_key) as agent:
            yield ddnsd, relay, agent


@asynccontextmanager
async def ddnsd_and_relayd(
    tmp_path: Path, relay_extra: Callable[[Ddnsd], str] | None = None
) -> AsyncIterator[tuple[Ddnsd, Relayd]]:
    """ddnsd (zones dyn.test and link.test) and relayd in this process, relayd forwarding DDNS
    updates to ddnsd over its service tunnel; devices nas1 (key `device.key`) and nas2 are
    enrolled, and `ca.pem` is the CA of both daemons' certificates. `relay_extra`, given the
    running ddnsd, returns TOML added to relayd's configuration."""
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
    for name in ("nas1", "nas2"):
        key = device_key if name == "nas1" else load_or_create_key(tmp_path / "other.key")
        await registry.enrol_device(owner.account_id, name, protocol.public_key_bytes(key))
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
        link_zone = "link.test"
        relay_addresses = ["127.0.0.1"]
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
            https_listen = "127.0.0.1:0"
            [ddnsd]
            address = "{ddnsd.listening["protocol"][0]}"
            server_name = "ddnsd.test"
            key_file = "relay-service.key"
            ca_file = "ca.pem"
            {relay_extra(ddnsd) if relay_extra else ""}
            """,
            "relayd.toml",
            tmp_path,
        )
        relay: Relayd = await nursery.start(serve_relayd, relay_config)
        yield ddnsd, relay
        nursery.cancel_scope.cancel()


async def test_agent_update_is_forwarded_and_answered(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with ddnsd_and_relay(tmp_path) as (ddnsd, relay, agent):
            await agent.send_message(
                protocol.DdnsUpdate(41, "nas1", "nas1", "A", ("198.51.100.41",))
            )
            assert await agent.receive_message() == protocol.Ack(41)
            query = dns.message.make_query("nas1.dyn.test", "A")
            answer = dns.message.from_wire(ddnsd.responder.respond(query.to_wire()) or b"")
            assert answer.answer[0][0].address == "198.51.100.41"
            # Another device's name, through this device's tunnel: refused by the relay.
            await agent.send_message(
                protocol.DdnsUpdate(42, "nas2", "nas2", "A", ("198.51.100.42",))
            )
            reply = await agent.receive_message()
            assert isinstance(reply, protocol.Error) and reply.request_id == 42
            assert reply.error_code == protocol.ErrorCode.NOT_PERMITTED
            assert ddnsd.channel is not None and ddnsd.channel.updates == 1
            # A flood of updates at once: beyond 16 in flight they are refused, each with
            # an answer, and the tunnel and the relay carry on.
            for request_id in range(100, 140):  # fewer than our own inbox holds
                await agent.send_message(
                    protocol.DdnsUpdate(request_id, "nas1", "nas1", "A", ("198.51.100.7",))
                )
            replies = [await agent.receive_message() for _ in range(40)]
            limited = [
                r
                for r in replies
                if isinstance(r, protocol.Error) and r.error_code == protocol.ErrorCode.RATE_LIMITED
            ]
            acked = [r for r in replies if isinstance(r, protocol.Ack)]
            assert limited and len(acked) >= 16 and len(limited) + len(acked) == 40
            assert relay.counts["ddns_rate_limited"] == len(limited)
            assert not relay.agents.ddns_in_flight  # every slot given back
            # Something the relay does not handle gets an answer too.
            await agent.send_message(protocol.Ack(7))
            reply = await agent.receive_message()
            assert isinstance(reply, protocol.Error)
            assert reply.error_code == protocol.ErrorCode.INVALID_REQUEST


async def test_the_reply_to_relayds_request_id_0_is_delivered(tmp_path: Path) -> None:
    # relayd numbers its requests to ddnsd modulo 2**32: after the wrap the id is 0, which is a
    # valid id and must not be mistaken for "no id".
    with trio.fail_after(30):
        async with ddnsd_and_relay(tmp_path) as (_, relay, agent):
            link = relay.agents.ddns
            assert link is not None
            link._ids = itertools.count(2**32)  # the next id is 0
            await agent.send_message(protocol.DdnsUpdate(5, "nas1", "nas1", "A", ("198.51.100.5",)))
            assert await agent.receive_message() == protocol.Ack(5)
            await agent.send_message(protocol.DdnsUpdate(6, "nas1", "nas1", "A", ("198.51.100.6",)))
            assert await agent.receive_message() == protocol.Ack(6)
