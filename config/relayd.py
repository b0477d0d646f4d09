"""relayd's configuration model (see examples/relayd.toml for every key with its meaning)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ._checks import between, dns_name, label, option, postgres_url, readable_file, writable_dir
from ._load import HostPort
from .acme import AcmeCA

__all__ = [
    "ApiSection",
    "DdnsdLink",
    "IngressSection",
    "InstallSiteSection",
    "LimitsSection",
    "RelaySection",
    "RelaydConfig",
    "TunnelSection",
]


def _http_url(value: str) -> str | None:
    if not value.startswith(("https://", "http://")) or len(value) > 200:
        return f"must be an http(s) URL of at most 200 characters, got {value!r}"
    return None


def _some(addresses: tuple[HostPort, ...]) -> str | None:
    return None if addresses else "needs at least one address"


# Every `*listen` key takes one "host:port" or a list of them: "0.0.0.0:443" and "[::]:443"
# together take IPv4 and IPv6 browsers (an IPv6 listener here is IPv6-only). Empty or
# absent: that listener is off.
@dataclass(frozen=True, slots=True)
class RelaySection:
    name: str = option(required=True, check=dns_name)  # signed by agents: must match theirs
    state_dir: Path = option(Path("/var/lib/nascloud/relayd"), check=writable_dir)
    registry: Path = option(Path("/var/lib/nascloud/registry.sqlite3"))
    # A fleet's registry in PostgreSQL (postgresql://...); set, `registry` is not used.
    registry_url: str | None = option(None, check=postgres_url)
    metrics_listen: tuple[HostPort, ...] = ()
    # The access log (connection records with full client addresses), encrypted with the
    # keys in this file; absent: no access log is kept.
    access_log_key_file: Path | None = None
    access_log_retention_days: int = option(180, check=between(1, 3650, "days"))
    log_level: str = option(
        "info",
        check=lambda v: (
            None
            if v in {"debug", "info", "warning", "error"}
            else "must be one of debug, info, warning, error"
        ),
    )


@dataclass(frozen=True, slots=True)
class TunnelSection:
    listen: tuple[HostPort, ...] = option(required=True, check=_some)
    cert_file: Path = option(required=True, check=readable_file)
    key_file: Path = option(required=True, check=readable_file)
    keepalive_interval_s: float = option(15.0, check=between(1, 3600, "s"))
    keepalive_timeout_s: float = option(45.0, check=between(2, 7200, "s"))
    # Where agents open data connections for passed-through HTTPS (spliced in the kernel).
    # Absent: the tunnel's address with a port the system picks. "off" is not a value: set
    # data_connections = false to carry everything in the tunnel.
    data_listen: tuple[HostPort, ...] = ()
    data_connections: bool = True
    # Data connections an agent keeps ready while browsers use its device, so that a new
    # browser connection skips the agent's connect to the relay; 0: none ahead of need.
    data_pool: int = option(4, check=between(0, 16))
    # A device's ready data connections are closed after this long without a new browser
    # connection (idle devices hold none).
    data_pool_idle_s: float = option(60.0, check=between(1, 3600, "s"))


@dataclass(frozen=True, slots=True)
class IngressSection:
    link_zone: str = option(required=True, check=dns_name)
    https_listen: tuple[HostPort, ...] = ()
    http_listen: tuple[HostPort, ...] = ()


@dataclass(frozen=True, slots=True)
class ApiSection:
    listen: tuple[HostPort, ...] = ()


@dataclass(frozen=True, slots=True)
class LimitsSection:
    handshake_timeout_s: float = option(10.0, check=between(0.1, 300, "s"))
    idle_timeout_s: float = option(300.0, check=between(1, 86400, "s"))
    max_streams_per_tunnel: int = option(256, check=between(1, 65536))
    max_tunnels_per_address: int = option(64, check=between(1, 1_000_000))
    max_client_hello_bytes: int = option(16384, check=between(512, 65536, "bytes"))
    max_http_head_bytes: int = option(16384, check=between(1024, 1_048_576, "bytes"))
    drain_timeout_s: float = option(30.0, check=between(0, 3600, "s"))


@dataclass(frozen=True, slots=True)
class DdnsdLink:
    """How relayd reaches ddnsd to forward DDNS changes."""

    address: HostPort = option(required=True)
    server_name: str = option(required=True, check=dns_name)
    key_file: Path = option(required=True, check=readable_file)
    service_name: str = option("relayd", check=label)
    ca_file: Path | None = option(None, check=readable_file)


@dataclass(frozen=True, slots=True)
class InstallSiteSection:
    """The Cloud Install site on install.<link zone>, served with relayd's own certificate."""

    # A certificate for install.<link zone> and *.install.<link zone> (install sessions),
    # given by hand; absent, relayd gets and renews one itself ([acme], through [ddnsd]).
    cert_file: Path | None = option(None, check=readable_file)
    key_file: Path | None = option(None, check=readable_file)
    # An install registration, its sessions and its tunnel end this long after the NAS
    # registered, and are then deleted (privacy rule 4: at most 24 hours).
    lifetime_s: float = option(86400.0, check=between(1, 86400, "s"))
    # Cloud-key lookups per client address and in all, per minute.
    lookups_per_minute: int = option(10, check=between(1, 10_000))
    lookups_per_minute_total: int = option(600, check=between(1, 1_000_000))
    # Every lookup answer takes at least this long, found or not, so time tells nothing.
    lookup_floor_s: float = option(0.25, check=between(0, 10, "s"))
    max_sessions_per_install: int = option(8, check=between(1, 1000))
    # Request bodies forwarded to a NAS's setup UI (firmware uploads are the large ones).
    max_request_body_bytes: int = option(1 << 30, check=between(0, 1 << 40, "bytes"))
    # The owner portal's pairing page, told to a NAS that asks for a pairing code (it shows
    # the code and this address); absent: this relay offers no pairing.
    pairing_url: str | None = option(None, check=_http_url)
    pairing_codes_per_address_per_hour: int = option(30, check=between(1, 100_000))
    # On every page of the site: who runs this cloud, and links to its help and its privacy
    # policy (an owner should know whom they give their cloud key to).
    operator_name: str = "nascloud"
    help_url: str | None = option(None, check=_http_url)
    privacy_url: str | None = option(None, check=_http_url)


@dataclass(frozen=True, slots=True)
class RelaydConfig:
    relay: RelaySection
    tunnel: TunnelSection
    ingress: IngressSection
    api: ApiSection = field(default_factory=ApiSection)
    limits: LimitsSection = field(default_factory=LimitsSection)
    ddnsd: DdnsdLink | None = None
    install: InstallSiteSection | None = None
    # The CA of the certificates relayd gets itself (the install site's, unless given by
    # hand), proved with DNS-01 records it asks ddnsd for.
    acme: AcmeCA | None = None

    def __post_init__(self) -> None:
        site = self.install
        if site is not None and (site.cert_file is None) != (site.key_file is None):
            raise ValueError("[install] cert_file and key_file go together")
        if (
            site is not None
            and site.cert_file is None
            and (self.acme is None or self.ddnsd is None)
        ):
            raise ValueError(
                "[install] needs cert_file and key_file, or [acme] and [ddnsd] so that relayd "
                "gets the site's certificate itself"
            )
        if self.tunnel.keepalive_timeout_s <= self.tunnel.keepalive_interval_s:
            raise ValueError(
                "[tunnel].keepalive_timeout_s must be longer than [tunnel].keepalive_interval_s"
            )
