"""`nascloud run`: the local stack in the foreground, on loopback, with no setup.

Creates a state directory with a registry holding a demo account and device, writes a config
for each daemon this build has (ddnsd so far), starts them, and prints what to try. The same
endpoints go to `<state dir>/endpoints.json` for scripts and tests. Ctrl-C stops everything.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio

from registry import Registry, TokenKind

__all__ = ["run_stack"]

ZONE = "dyn.localhost"
LINK_ZONE = "link.localhost"
DEMO_DEVICE = "demo"
BIN = Path(sys.executable).parent


async def _prepare_registry(path: Path) -> dict[str, str]:
    """The demo account and device, created once; their secrets are kept in the state dir."""
    secrets_path = path.parent / "demo-secrets.json"
    if secrets_path.exists():
        loaded: dict[str, str] = json.loads(secrets_path.read_text())
        return loaded
    registry = Registry.open_sqlite(path)
    try:
        account = await registry.create_account("demo@example.org", "Demo owner")
        await registry.enrol_device(account.account_id, DEMO_DEVICE, os.urandom(32))
        _, dyndns2 = await registry.create_token(TokenKind.DYNDNS2, device_name=DEMO_DEVICE)
        _, api = await registry.create_token(TokenKind.API, account_id=account.account_id)
        key = await registry.create_tsig_key(DEMO_DEVICE, f"{DEMO_DEVICE}.{ZONE}")
    finally:
        await registry.aclose()
    secrets = {
        "account": account.account_id,
        "dyndns2_password": dyndns2,
        "api_token": api,
        "tsig": f"hmac-sha256:{key.key_name}:{base64.b64encode(key.secret).decode()}",
    }
    secrets_path.write_text(json.dumps(secrets, indent=2) + "\n")
    secrets_path.chmod(0o600)
    return secrets


def _ddnsd_config(state_dir: Path, base_port: int) -> Path:
    path = state_dir / "ddnsd.toml"
    path.write_text(
        f"""# Written by `nascloud run`; edited copies are overwritten on the next run.
[ddnsd]
state_dir = "ddnsd"
registry = "registry.sqlite3"

[zone]
name = "{ZONE}"
primary_ns = "ns1.{ZONE}"
hostmaster = "hostmaster.{ZONE}"
link_zone = "{LINK_ZONE}"
relay_addresses = ["127.0.0.1", "::1"]

[dns]
listen = ["127.0.0.1:{base_port}"]

[rrl]
responses_per_second = 0

[dyndns2]
listen = "127.0.0.1:{base_port + 1}"
"""
    )
    return path


def run_stack(state_dir: Path, base_port: int) -> int:
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "ddnsd").mkdir(exist_ok=True)
    secrets = trio.run(_prepare_registry, state_dir / "registry.sqlite3")
    config = _ddnsd_config(state_dir, base_port)
    listening = state_dir / "ddnsd" / "listening.json"
    listening.unlink(missing_ok=True)
    ddnsd = subprocess.Popen([str(BIN / "ddnsd"), "--config", str(config)])
    try:
        deadline = time.monotonic() + 30
        while not listening.exists():
            if ddnsd.poll() is not None or time.monotonic() > deadline:
                print("nascloud run: ddnsd did not start", file=sys.stderr)
                return 1
            time.sleep(0.05)
        endpoints = _endpoints(state_dir, base_port, secrets)
        (state_dir / "endpoints.json").write_text(json.dumps(endpoints, indent=2) + "\n")
        _print_try(endpoints, secrets)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        ddnsd.wait()
        return ddnsd.returncode or 0
    except (KeyboardInterrupt, SystemExit):
        return 0
    finally:
        if ddnsd.poll() is None:
            ddnsd.terminate()
            try:
                ddnsd.wait(timeout=10)
            except subprocess.TimeoutExpired:
                ddnsd.kill()


def _endpoints(state_dir: Path, base_port: int, secrets: dict[str, str]) -> dict[str, Any]:
    return {
        "zone": ZONE,
        "dns": {"host": "127.0.0.1", "port": base_port},
        "dyndns2": {
            "url": f"http://127.0.0.1:{base_port + 1}/nic/update",
            "username": f"{DEMO_DEVICE}.{ZONE}",
            "password": secrets["dyndns2_password"],
        },
        "rfc2136": {"tsig": secrets["tsig"]},
        "demo_device": {"name": DEMO_DEVICE, "hostname": f"{DEMO_DEVICE}.{ZONE}"},
        "state_dir": str(state_dir),
    }


def _print_try(endpoints: dict[str, Any], secrets: dict[str, str]) -> None:
    dns = endpoints["dns"]
    dyndns2 = endpoints["dyndns2"]
    host = endpoints["demo_device"]["hostname"]
    print(
        f"""
nascloud is running on loopback (state in {endpoints["state_dir"]}). Try:

  # set the demo device's address, as a router or ddclient would
  curl -u '{dyndns2["username"]}:{dyndns2["password"]}' \\
       '{dyndns2["url"]}?hostname={host}&myip=198.51.100.7'

  # ask the authoritative server
  dig @{dns["host"]} -p {dns["port"]} {host} A

  # set an ACME DNS-01 challenge with RFC 2136
  printf 'server {dns["host"]} {dns["port"]}\\nzone {endpoints["zone"]}\\n\\
update add _acme-challenge.{host} 60 TXT "token"\\nsend\\n' \\
    | nsupdate -y '{secrets["tsig"]}'

The same endpoints are in {endpoints["state_dir"]}/endpoints.json. Ctrl-C stops.
""",
        flush=True,
    )
