"""nascloud-portal's configuration model (see examples/nascloud-portal.toml)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ._checks import between, dns_name, option, postgres_url, readable_file, writable_dir
from ._load import HostPort

__all__ = ["PortalConfig", "PortalSection"]


def _some(addresses: tuple[HostPort, ...]) -> str | None:
    return None if addresses else "needs at least one address"


def _public_url(url: str | None) -> str | None:
    """Where browsers open the portal: passkeys are bound to its host (their relying party)
    and checked against its origin. https, or http on localhost (browsers count it secure)."""
    if url is None:
        return None
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises on a port that is not one
    except ValueError:
        return "a port of 1 to 65535"
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return "an origin only: scheme, host and port, no path"
    if parts.scheme == "http" and parts.hostname == "localhost":
        return None
    if parts.scheme != "https" or not parts.hostname or dns_name(parts.hostname) is not None:
        return "https://<a DNS name>[:port], or http://localhost:<port>"
    return None


def _operator(name: str) -> str | None:
    if not 1 <= len(name) <= 80 or any(ord(c) < 32 for c in name):
        return "1 to 80 characters, no control characters"
    return None


@dataclass(frozen=True, slots=True)
class PortalSection:
    listen: tuple[HostPort, ...] = option(required=True, check=_some)
    # Shown on every page: who runs this cloud (the policy: say who holds the data).
    operator_name: str = option(required=True, check=_operator)
    zone: str = option(required=True, check=dns_name)  # devices are <name>.<zone>
    link_zone: str = option(required=True, check=dns_name)  # and https://<name>.<link zone>/
    state_dir: Path = option(Path("/var/lib/nascloud/portal"), check=writable_dir)
    registry: Path = option(Path("/var/lib/nascloud/registry.sqlite3"))
    # A fleet's registry in PostgreSQL (postgresql://...); set, `registry` is not used.
    registry_url: str | None = option(None, check=postgres_url)
    # TLS on the portal's own listener; absent: plain HTTP, for a TLS proxy in front or
    # loopback. Cookies are `Secure` either way (browsers take them from localhost).
    cert_file: Path | None = option(None, check=readable_file)
    key_file: Path | None = option(None, check=readable_file)
    metrics_listen: tuple[HostPort, ...] = ()
    session_lifetime_s: float = option(12 * 3600.0, check=between(300, 30 * 86400, "s"))
    # Sign-in attempts per account name and per client address, per 15 minutes.
    sign_in_attempts_per_account: int = option(10, check=between(1, 1000))
    sign_in_attempts_per_address: int = option(30, check=between(1, 100_000))
    sign_ups_per_address_per_hour: int = option(5, check=between(1, 100_000))
    # relayd's and ddnsd's access-log key files, read only: the owners' connection history
    # (visitors' addresses masked); absent, the portal shows no history.
    access_log_key_files: tuple[Path, ...] = ()
    # Where browsers open the portal (`https://portal.example.net`); passkeys are offered
    # only when it is set, for they are bound to it.
    public_url: str | None = option(None, check=_public_url)
    # Links on every page; absent: none shown.
    help_url: str | None = None
    privacy_url: str | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("[portal] cert_file and key_file go together")


@dataclass(frozen=True, slots=True)
class PortalConfig:
    portal: PortalSection
