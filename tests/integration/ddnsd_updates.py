"""Helpers shared by the ddnsd integration tests."""

from __future__ import annotations

import base64
import http.client

from tests.ddnsd_harness import Ddnsd


def http_update(daemon: Ddnsd, device: str, address: str) -> str:
    """One DynDNS2 update; the reply's first line."""
    host, port = daemon.dyndns2.rsplit(":", 1)
    auth = base64.b64encode(f"{device}.dyn.test:{daemon.tokens[device]}".encode()).decode()
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(
            "GET",
            f"/nic/update?hostname={device}.dyn.test&myip={address}",
            headers={"Authorization": f"Basic {auth}"},
        )
        return connection.getresponse().read().decode().strip()
    finally:
        connection.close()
