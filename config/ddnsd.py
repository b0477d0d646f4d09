"""ddnsd's configuration model (see examples/ddnsd.toml for every key with its meaning)."""

from __future__ import annotations

import base64
import binascii
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from protocol import parse_caa

from ._checks import between, dns_name, label, option, postgres_url, readable_file, writable_dir
from ._load import HostPort

__all__ = [
    "DdnsdConfig",
    "DdnsdSection",
    "DnsSection",
    "DynDns2Section",
    "ProtocolSection",
    "RrlSection",
    "TransferSection",
    "ZoneSection",
]


def _addresses(values: tuple[str, ...]) -> str | None:
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            return f"{value!r} is not an IP address or network"
    return None


def _one_per_family(values: tuple[str, ...]) -> str | None:
    families: set[int] = set()
    for value in values:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            return f"{value!r} is not an IP address"
        if address.version in families:
            return "at most one IPv4 and one IPv6 address"
        families.add(address.version)
    return None


def _nsid(value: str) -> str | None:
    if not value.isascii() or not value.isprintable() or len(value) > 128:
        return "must be at most 128 printable ASCII characters"
    return None


@dataclass(frozen=True, slots=True)
class DdnsdSection:
    state_dir: Path = option(Path("/var/lib/nascloud/ddnsd"), check=writable_dir)
    registry: Path = option(Path("/var/lib/nascloud/registry.sqlite3"))
    # A fleet's registry in PostgreSQL (postgresql://...); set, `registry` is not used.
    registry_url: str | None = option(None, check=postgres_url)
    metrics_listen: tuple[HostPort, ...] = ()
    workers: int = option(1, check=between(1, 256))
    # DynDNS2 and RFC 2136 updates (device, full client address, result), encrypted with the
    # keys in this file; absent: no access log is kept. Not the relay's key file: each daemon
    # rotates its own keys.
    access_log_key_file: Path | None = None
    access_log_retention_days: int = option(180, check=between(1, 3650, "days"))


def _caa_records(values: tuple[str, ...]) -> str | None:
    for value in values:
        try:
            parse_caa(value)
        except ValueError as exc:
            return f"{exc}, e.g. '0 issue \"letsencrypt.org\"'"
    return None


def _within(name: str, origin: str | None) -> bool:
    return origin is not None and name.endswith("." + origin.rstrip("."))


@dataclass(frozen=True, slots=True)
class ZoneSection:
    name: str = option(required=True, check=dns_name)
    primary_ns: str = option(required=True, check=dns_name)
    hostmaster: str = option(required=True, check=dns_name)
    nameservers: tuple[str, ...] = ()
    link_zone: str | None = option(None, check=dns_name)
    relay_addresses: tuple[str, ...] = option((), check=_addresses)
    default_ttl_s: int = option(60, check=between(0, 86400, "s"))
    refresh_s: int = option(3600, check=between(60, 2419200, "s"))
    retry_s: int = option(600, check=between(60, 2419200, "s"))
    expire_s: int = option(1209600, check=between(3600, 31536000, "s"))
    negative_ttl_s: int = option(60, check=between(0, 86400, "s"))
    # nameserver name -> its addresses, for the nameservers inside the zones (glue)
    nameserver_addresses: dict[str, tuple[str, ...]] = option({})
    # CAA records at the apex of both zones, e.g. ['0 issue "letsencrypt.org"']: the CAs any
    # name may have certificates from, where a device has published no record of its own.
    caa: tuple[str, ...] = option((), check=_caa_records)

    def __post_init__(self) -> None:
        served = self.nameservers or (self.primary_ns,)
        for name, addresses in self.nameserver_addresses.items():
            where = f"nameserver_addresses[{name!r}]"
            if name not in served:
                raise ValueError(f"{where}: not one of [zone].nameservers ({', '.join(served)})")
            if not (_within(name, self.name) or _within(name, self.link_zone)):
                raise ValueError(
                    f"{where}: not inside {self.name} or the link zone; a nameserver outside "
                    "them takes its addresses from its own zone"
                )
            if not addresses:
                raise ValueError(f"{where}: give at least one address")
            for value in addresses:
                try:
                    address = ipaddress.ip_address(value)
                except ValueError:
                    raise ValueError(f"{where}: {value!r} is not an IP address") from None
                if str(address) != value:
                    raise ValueError(f"{where}: write {value!r} as {str(address)!r}")


@dataclass(frozen=True, slots=True)
class DnsSection:
    listen: tuple[HostPort, ...] = option(required=True)
    edns_buffer_bytes: int = option(1232, check=between(512, 4096, "bytes"))
    tcp_idle_timeout_s: float = option(10.0, check=between(0.5, 300, "s"))
    max_tcp_clients: int = option(1000, check=between(1, 1_000_000))
    # RFC 5001: this server's identifier, sent to queries that ask for it ("" sends none)
    nsid: str = option("", check=_nsid)
    # RFC 7873: DNS cookies (a server cookie for each client cookie; a valid one lifts RRL)
    cookies: bool = True


@dataclass(frozen=True, slots=True)
class RrlSection:
    responses_per_second: int = option(200, check=between(0, 1_000_000))
    slip: int = option(2, check=between(0, 10))
    ipv4_prefix: int = option(24, check=between(8, 32))
    ipv6_prefix: int = option(56, check=between(16, 128))


@dataclass(frozen=True, slots=True)
class DynDns2Section:
    listen: tuple[HostPort, ...] = ()
    updates_per_host_per_minute: int = option(10, check=between(1, 10000))
    # Whether a device may publish a LAN address (10/8, 172.16/12, 192.168/16, fc00::/7).
    allow_private_addresses: bool = False
    # Reverse proxies in front (TLS ends there): from these addresses only, the client is the
    # last address of X-Forwarded-For (what the proxy saw), for `myip` left out and the log.
    trusted_proxies: tuple[str, ...] = option((), check=_addresses)


@dataclass(frozen=True, slots=True)
class ProtocolSection:
    """Updates from relayd over the nascloud protocol."""

    listen: tuple[HostPort, ...] = ()
    server_name: str = option("ddnsd.invalid", check=dns_name)
    cert_file: Path | None = option(None, check=readable_file)
    key_file: Path | None = option(None, check=readable_file)
    # service name -> base64 of its raw Ed25519 public key
    services: dict[str, str] = option({})

    def __post_init__(self) -> None:
        if self.listen and (self.cert_file is None or self.key_file is None):
            raise ValueError("[protocol].listen needs [protocol].cert_file and key_file")
        for name, key in self.services.items():
            problem = label(name)
            if problem:
                raise ValueError(f"[protocol.services].{name}: {problem}")
            try:
                raw = base64.b64decode(key, validate=True)
            except binascii.Error:
                raw = b""
            if len(raw) != 32:
                raise ValueError(
                    f"[protocol.services].{name}: expected the base64 of a raw 32-byte "
                    "Ed25519 public key"
                )


@dataclass(frozen=True, slots=True)
class TransferSection:
    allow: tuple[str, ...] = option((), check=_addresses)
    notify: tuple[HostPort, ...] = ()
    # The addresses NOTIFY leaves from, at most one per family; by default the DNS listen
    # address of the target's family (unless a wildcard).
    notify_source: tuple[str, ...] = option((), check=_one_per_family)
    tsig_key_name: str | None = option(None, check=dns_name)
    tsig_secret_file: Path | None = option(None, check=readable_file)


@dataclass(frozen=True, slots=True)
class DdnsdConfig:
    zone: ZoneSection
    dns: DnsSection
    ddnsd: DdnsdSection = field(default_factory=DdnsdSection)
    rrl: RrlSection = field(default_factory=RrlSection)
    dyndns2: DynDns2Section = field(default_factory=DynDns2Section)
    protocol: ProtocolSection = field(default_factory=ProtocolSection)
    transfer: TransferSection = field(default_factory=TransferSection)
