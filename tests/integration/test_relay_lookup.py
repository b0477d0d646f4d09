"""The lookup API: who may see a device's connection data, and what they see."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

import protocol
from registry import AccessMode, Registry, TokenKind
from relayd._daemon import Relayd, serve
from tests.postgres import PostgresServer
from tests.relay_harness import device_tunnel, relay_config
from tunnel import load_or_create_key


async def response(address: str, path: str, token: str | None) -> bytes:
    """The raw HTTP response to a GET of `path`, as it came back."""
    host, port = address.rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    await stream.send_all(
        f"GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n".encode()
    )
    data = b""
    while chunk := await stream.receive_some():
        data += chunk
    await stream.aclose()
    return data


async def get(address: str, path: str, token: str | None) -> tuple[int, dict[str, Any]]:
    head, _, body = (await response(address, path, token)).partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


async def not_found(address: str, path: str, token: str) -> bytes:
    """A 404 as the caller sees it, all of it but the Date header (which tells nothing)."""
    raw = await response(address, path, token)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0].split()[1] == b"404", raw
    kept = [line for line in lines if not line.lower().startswith(b"date:")]
    return b"\r\n".join(kept) + b"\r\n\r\n" + body


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
async def test_access_modes_decide_who_sees_a_device(
    tmp_path: Path, engine: str, request: pytest.FixtureRequest
) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cert = ca.issue_cert("relay.test")
    cert.private_key_pem.write_to_path(str(tmp_path / "relay.key"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "relay.crt"))
    key = load_or_create_key(tmp_path / "device.key")
    url = None
    if engine == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database()
    registry = Registry.open(url or tmp_path / "registry.sqlite3")
    owner = await registry.create_account("o@example.org", "Owner")
    friend = await registry.create_account("f@example.org", "Friend")
    stranger = await registry.create_account("s@example.org", "Stranger")
    await registry.enrol_device(owner.account_id, "nas1", protocol.public_key_bytes(key))
    tokens = {
        who.account_id: (await registry.create_token(TokenKind.API, account_id=who.account_id))[1]
        for who in (owner, friend, stranger)
    }
    config = relay_config(tmp_path, ingress='[api]\nlisten = "127.0.0.1:0"')
    config = dataclasses.replace(config, relay=dataclasses.replace(config.relay, registry_url=url))
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            relay: Relayd = await nursery.start(serve, config)
            api = relay.listening["api"][0]
            https_port = relay.listening["https"][0].rsplit(":", 1)[1]

            async def status(who: str, name: str = "nas1") -> int:
                return (await get(api, f"/v1/devices/{name}", tokens[who]))[0]

            # Private (the default): the owner only; others get what a missing device gets.
            assert await status(owner.account_id) == 200
            assert await status(friend.account_id) == 404
            assert await status(owner.account_id, "nosuch") == 404
            # Not even the bytes of the 404 tell a hidden device from a missing one.
            hidden = await not_found(api, "/v1/devices/nas1", tokens[friend.account_id])
            missing = await not_found(api, "/v1/devices/nosuch", tokens[friend.account_id])
            assert hidden == missing
            assert missing == await not_found(api, "/v1/devices/nosuch", tokens[owner.account_id])
            await registry.set_access("nas1", AccessMode.CUSTOM, (friend.account_id,))
            assert await status(friend.account_id) == 200
            assert await status(stranger.account_id) == 404
            await registry.set_access("nas1", AccessMode.PUBLIC)
            assert await status(stranger.account_id) == 200
            assert (await get(api, "/v1/devices/nas1", None))[0] == 401
            assert (await get(api, "/v1/devices/nas1", "not-a-token-at-all"))[0] == 401

            code, body = await get(api, "/v1/devices/nas1", tokens[owner.account_id])
            assert code == 200
            assert body == {
                "name": "nas1",
                "relay_url": f"https://nas1.link.test:{https_port}/",
                "online": False,
                "lan_addresses": [],
                "wan_address": None,
            }
            # Once the device's agent is connected and has registered, its addresses show.
            tunnel = relay.listening["tunnel"][0]
            async with device_tunnel(tmp_path, tunnel, "nas1", key) as agent:
                await agent.send_message(protocol.Register(lan_addresses=("192.168.1.20",)))
                await agent.ping()  # the message has been handled once the ping comes back
                _, body = await get(api, "/v1/devices/nas1", tokens[owner.account_id])
                assert body["online"] is True
                assert body["lan_addresses"] == ["192.168.1.20"]
                assert body["wan_address"] == "127.0.0.1"
                # Hidden again while it is online: still the 404 of a device that is not there.
                await registry.set_access("nas1", AccessMode.PRIVATE)
                stranger_token = tokens[stranger.account_id]
                assert await not_found(api, "/v1/devices/nas1", stranger_token) == missing
                assert await not_found(api, "/v1/devices/nosuch", stranger_token) == missing
            nursery.cancel_scope.cancel()
    await registry.aclose()
