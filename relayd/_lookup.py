"""The lookup API: `GET /v1/devices/<name>` with an account's bearer token returns how to
reach the device, if its owner lets that account see it (privacy rule 7).

A device the caller may not see and a device that does not exist get the same 404, and
lookups are rate-limited per client address, so names cannot be enumerated.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from httpapi import HttpRequest, HttpResponse
from protocol import validate_label
from registry import Registry, TokenKind
from service import SlidingWindow

__all__ = ["LookupApi", "Presence"]

JSON = "application/json"


class Presence:
    """What the relay knows of a connected device: its LAN and WAN addresses."""

    def __init__(self) -> None:
        # device -> (WAN address, LAN addresses): a tuple, not a dict, per connected device.
        self.devices: dict[str, tuple[str, tuple[str, ...]]] = {}

    def connected(self, device: str, wan_address: str) -> None:
        self.devices[device] = (wan_address, ())

    def registered(self, device: str, lan_addresses: tuple[str, ...]) -> None:
        if device in self.devices:
            self.devices[device] = (self.devices[device][0], tuple(lan_addresses))

    def disconnected(self, device: str) -> None:
        self.devices.pop(device, None)


class LookupApi:
    def __init__(
        self,
        registry: Registry,
        presence: Presence,
        link_zone: str,
        https_port: int | None,
        *,
        lookups_per_minute: int = 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.presence = presence
        self.link_zone = link_zone
        self.port = f":{https_port}" if https_port not in (None, 443) else ""
        self.limits = SlidingWindow(lookups_per_minute, 60.0, clock=clock)

    async def handle(self, request: HttpRequest) -> HttpResponse:
        if not self.limits.allow(request.client):
            return _json(429, {"error": "too many requests"}, [("Retry-After", "60")])
        path = request.target.split("?", 1)[0]
        if not path.startswith("/v1/devices/"):
            return _json(404, {"error": "not found"})
        if request.method != "GET":
            return _json(405, {"error": "method not allowed"}, [("Allow", "GET")])
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        found = (
            await self.registry.verify_token(TokenKind.API, token.strip())
            if scheme.lower() == "bearer"
            else None
        )
        if found is None or found.account_id is None:
            return _json(
                401,
                {"error": "a valid bearer token is needed"},
                [("WWW-Authenticate", 'Bearer realm="nascloud"')],
            )
        name = path[len("/v1/devices/") :]
        try:
            validate_label(name)
        except ValueError:
            return _json(404, {"error": "not found"})
        device = await self.registry.get_device(name)
        if device is None or not device.may_be_used_by(found.account_id):
            return _json(404, {"error": "not found"})
        presence = self.presence.devices.get(name)
        return _json(
            200,
            {
                "name": name,
                "relay_url": f"https://{name}.{self.link_zone}{self.port}/",
                "online": presence is not None,
                "lan_addresses": list(presence[1]) if presence else [],
                "wan_address": presence[0] if presence else None,
            },
        )


def _json(
    status: int, body: dict[str, Any], headers: list[tuple[str, str]] | None = None
) -> HttpResponse:
    return HttpResponse(status, json.dumps(body).encode() + b"\n", JSON, headers or [])
