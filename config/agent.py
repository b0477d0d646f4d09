"""nascloud-agent's configuration model (see examples/nascloud-agent.toml)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from ._checks import between, dns_name, label, option, readable_file, writable_dir
from ._load import HostPort
from .acme import AcmeCA

__all__ = [
    "AcmeSection",
    "AgentConfig",
    "AgentSection",
    "InstallSection",
    "ReconnectSection",
    "RelayLink",
]


def _ip_addresses(values: tuple[str, ...]) -> str | None:
    for value in values:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            return f"{value!r} is not an IP address"
    return None if values else "list at least one address, or leave the key out"


@dataclass(frozen=True, slots=True)
class AgentSection:
    # Absent while the NAS is not initialised: the agent then runs in install mode, or with
    # `pairing`, asks the relay for a pairing code its owner types on the portal (the name
    # the owner chooses is then kept in the state directory, identity.json). A NAS set up
    # through Cloud Install ends the same way: its setup turns `pairing` on and reloads.
    device_name: str | None = option(None, check=label)
    pairing: bool = False
    key_file: Path = option(Path("/var/lib/nascloud-agent/device.key"))
    state_dir: Path = option(Path("/var/lib/nascloud-agent"), check=writable_dir)
    # Send a PROXY protocol v2 header to local services, so they see the browser's address.
    proxy_protocol: bool = False


@dataclass(frozen=True, slots=True)
class RelayLink:
    addresses: tuple[HostPort, ...] = option(required=True)
    server_name: str = option(required=True, check=dns_name)
    ca_file: Path | None = option(None, check=readable_file)
    pinned_sha256: str | None = option(
        None,
        check=lambda v: (
            None
            if len(v) == 64 and all(c in "0123456789abcdef" for c in v)
            else "must be 64 lower-case hex digits (SHA-256 of the relay certificate)"
        ),
    )
    keepalive_interval_s: float = option(15.0, check=between(1, 3600, "s"))
    keepalive_timeout_s: float = option(45.0, check=between(2, 7200, "s"))

    def __post_init__(self) -> None:
        if self.ca_file is None and self.pinned_sha256 is None:
            raise ValueError(
                "[relay] needs ca_file or pinned_sha256: the agent must know which relay to trust"
            )


@dataclass(frozen=True, slots=True)
class ReconnectSection:
    initial_delay_s: float = option(1.0, check=between(0.01, 60, "s"))
    max_delay_s: float = option(60.0, check=between(0.1, 3600, "s"))


@dataclass(frozen=True, slots=True)
class InstallSection:
    """Install mode: while the NAS has no device identity (no [agent].device_name)."""

    # The cloud key printed on the NAS; made on first run if absent (mode 0600).
    cloud_key_file: Path = option(Path("/var/lib/nascloud-agent/cloud.key"))
    # The setup UI on the NAS itself, which relayed setup sessions reach (plain HTTP: the
    # relay ends the browser's TLS and the tunnel is TLS).
    setup_service: HostPort = option(HostPort("127.0.0.1", 8080))
    # How a browser on the NAS's network reaches the setup UI directly.
    setup_scheme: str = option(
        "http", check=lambda v: None if v in ("http", "https") else "must be http or https"
    )
    setup_port: int | None = option(None, check=between(1, 65535))  # absent: setup_service's
    # The NAS's addresses on its network; absent: the address its tunnel leaves from.
    lan_addresses: tuple[str, ...] | None = option(None, check=_ip_addresses)
    # How long the NAS reports itself after it first does (privacy rule 4: 24 hours at most).
    lifetime_s: float = option(86400.0, check=between(1, 86400, "s"))


@dataclass(frozen=True, slots=True, kw_only=True)
class AcmeSection(AcmeCA):
    """The NAS's own certificate for its names, from an ACME CA, with DNS-01 records asked
    for through the tunnel. Absent: the NAS's web server keeps whatever certificate it has."""

    zone: str = option(required=True, check=dns_name)  # the DDNS zone: <device>.<zone>
    # Where the NAS's web server reads them; written atomically, the key mode 0600.
    cert_file: Path = option(required=True)  # the full chain, leaf first
    key_file: Path = option(required=True)
    link_zone: str | None = option(None, check=dns_name)  # and <device>, *.<device> there
    reload_command: tuple[str, ...] = ()  # run after a new certificate is in place


@dataclass(frozen=True, slots=True)
class AgentConfig:
    relay: RelayLink
    agent: AgentSection = field(default_factory=AgentSection)
    # service name -> local "host:port"; a stream for any other name is refused.
    services: dict[str, HostPort] = field(default_factory=dict)
    reconnect: ReconnectSection = field(default_factory=ReconnectSection)
    install: InstallSection = field(default_factory=InstallSection)
    acme: AcmeSection | None = None

    def __post_init__(self) -> None:
        for name in self.services:
            problem = label(name)
            if problem:
                raise ValueError(f"[services].{name}: {problem}")
