"""Start a real ddnsd process on loopback for tests, with a registry holding test devices."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from registry import Registry, TokenKind

BIN = Path(sys.executable).parent
ZONE = "dyn.test"
LINK_ZONE = "link.test"
RELAY_ADDRESSES = ("127.0.0.1", "::1")


@dataclass
class Ddnsd:
    process: subprocess.Popen[bytes]
    state_dir: Path
    config_path: Path
    dns_port: int
    dyndns2: str  # host:port
    metrics: str  # host:port
    tokens: dict[str, str]  # device -> DynDNS2 secret
    tsig: dict[str, str]  # device -> "hmac-sha256:name:base64"
    transfer_key: str  # base64
    log_path: Path

    @property
    def registry_path(self) -> Path:
        return self.state_dir / "registry.sqlite3"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def make_registry(
    location: Path | str, devices: tuple[str, ...]
) -> tuple[dict[str, str], dict[str, str]]:
    async def fill() -> tuple[dict[str, str], dict[str, str]]:
        registry = Registry.open(location)
        owner = await registry.create_account("owner@example.org", "Owner")
        tokens: dict[str, str] = {}
        tsig: dict[str, str] = {}
        for device in devices:
            await registry.enrol_device(owner.account_id, device, os.urandom(32))
            _, tokens[device] = await registry.create_token(TokenKind.DYNDNS2, device_name=device)
            key = await registry.create_tsig_key(device, f"{device}.{ZONE}")
            tsig[device] = f"hmac-sha256:{key.key_name}:{base64.b64encode(key.secret).decode()}"
        await registry.aclose()
        return tokens, tsig

    return trio.run(fill)


@dataclass(frozen=True)
class DdnsdOptions:
    """What a test may change in the ddnsd it starts."""

    devices: tuple[str, ...] = ("nas1", "nas2")
    extra: str = ""  # more keys for the [transfer] table, or further tables
    rrl_rate: int = 0
    max_tcp_clients: int = 1000
    workers: int = 1
    access_log: bool = False
    registry_url: str | None = None  # a PostgreSQL registry instead of state/registry.sqlite3


def write_config(directory: Path, options: DdnsdOptions) -> Path:
    transfer_key = directory / "transfer.key"
    if not transfer_key.exists():
        transfer_key.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    config = directory / "ddnsd.toml"
    config.write_text(
        f"""
[ddnsd]
state_dir = "state"
registry = "state/registry.sqlite3"
{f'registry_url = "{options.registry_url}"' if options.registry_url else ""}
workers = {options.workers}
metrics_listen = "127.0.0.1:0"
{'access_log_key_file = "state/access-log.keys"' if options.access_log else ""}

[zone]
name = "{ZONE}"
primary_ns = "ns1.{ZONE}"
hostmaster = "hostmaster.{ZONE}"
nameservers = ["ns1.{ZONE}", "ns2.{ZONE}"]
link_zone = "{LINK_ZONE}"
relay_addresses = {json.dumps(list(RELAY_ADDRESSES))}

[dns]
listen = ["127.0.0.1:0"]
tcp_idle_timeout_s = 2
max_tcp_clients = {options.max_tcp_clients}

[rrl]
responses_per_second = {options.rrl_rate}

[dyndns2]
listen = "127.0.0.1:0"
updates_per_host_per_minute = 1000

[transfer]
allow = ["127.0.0.1/32"]
tsig_key_name = "transfer.{ZONE}"
tsig_secret_file = "transfer.key"
{options.extra}
"""
    )
    return config


def start(directory: Path, timeout_s: float = 15.0, env: dict[str, str] | None = None) -> Ddnsd:
    """Start ddnsd on the config `prepare` wrote; `env` is added to the process's environment."""
    config = directory / "ddnsd.toml"
    state = directory / "state"
    listening = state / "listening.json"
    listening.unlink(missing_ok=True)
    log_path = directory / "ddnsd.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(BIN / "ddnsd"), "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=directory,
            env=None if env is None else {**os.environ, **env},
        )
    deadline = time.monotonic() + timeout_s
    while not listening.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"ddnsd did not start:\n{log_path.read_text()}")
        time.sleep(0.05)
    bound = json.loads(listening.read_text())
    secrets = json.loads((directory / "secrets.json").read_text())
    return Ddnsd(
        process,
        state,
        config,
        int(bound["dns"][0].rsplit(":", 1)[1]),
        bound["dyndns2"][0],
        bound["metrics"][0],
        secrets["tokens"],
        secrets["tsig"],
        (directory / "transfer.key").read_text().strip(),
        log_path,
    )


def stop(daemon: Ddnsd, sig: int = signal.SIGTERM) -> None:
    if daemon.process.poll() is None:
        daemon.process.send_signal(sig)
        try:
            daemon.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.process.kill()
            daemon.process.wait()


def prepare(directory: Path, options: DdnsdOptions = DdnsdOptions()) -> None:
    (directory / "state").mkdir(parents=True, exist_ok=True)
    location = options.registry_url or directory / "state" / "registry.sqlite3"
    tokens, tsig = make_registry(location, options.devices)
    (directory / "secrets.json").write_text(json.dumps({"tokens": tokens, "tsig": tsig}))
    write_config(directory, options)


def prepare_another_node(directory: Path, first: Path, options: DdnsdOptions) -> None:
    """A second ddnsd on the registry (PostgreSQL) `prepare` filled for the one in `first`."""
    assert options.registry_url is not None
    (directory / "state").mkdir(parents=True, exist_ok=True)
    (directory / "secrets.json").write_text((first / "secrets.json").read_text())
    (directory / "transfer.key").write_text((first / "transfer.key").read_text())
    write_config(directory, options)


@contextmanager
def running_ddnsd(directory: Path, options: DdnsdOptions = DdnsdOptions()) -> Iterator[Ddnsd]:
    prepare(directory, options)
    daemon = start(directory)
    try:
        yield daemon
    finally:
        stop(daemon)
