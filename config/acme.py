"""The ACME CA a daemon gets its certificates from: what the agent's `[acme]` and relayd's
`[acme]` share (each adds what its names need)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ._checks import between, dns_name, option, readable_file
from ._load import HostPort

__all__ = ["AcmeCA"]


def _https_url(value: str) -> str | None:
    if not value.startswith("https://") or len(value) < 12:
        return f"must be the https:// URL of an ACME directory, got {value!r}"
    return None


def _contacts(values: tuple[str, ...]) -> str | None:
    for value in values:
        if not value.startswith("mailto:") or "@" not in value:
            return f"{value!r} is not a mailto: URI"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class AcmeCA:
    """An ACME (RFC 8555) CA, its account and the DNS-01 checks before it is asked to look."""

    directory_url: str = option(required=True, check=_https_url)
    ca_file: Path | None = option(None, check=readable_file)  # to trust a private CA's API
    contact: tuple[str, ...] = option((), check=_contacts)  # none by default
    eab_kid: str | None = None  # external account binding, for CAs that ask for it
    eab_hmac_key_file: Path | None = option(None, check=readable_file)
    # DNS servers that must answer the challenge before the CA is asked to look (ddnsd and
    # its secondaries); empty: the zone's nameservers, found through the system resolver.
    check_servers: tuple[HostPort, ...] = ()
    propagation_timeout_s: float = option(120.0, check=between(1, 3600, "s"))
    renew_fraction: float = option(2 / 3, check=between(0.3, 0.9))  # of the lifetime
    retry_initial_s: float = option(60.0, check=between(0.01, 86400, "s"))
    retry_max_s: float = option(6 * 3600.0, check=between(0.1, 7 * 86400, "s"))
    # A CAA record for the names allowing only this account (RFC 8657), naming the CA as
    # `caa_identity` or, if unset, as the CA's directory does.
    publish_caa: bool = True
    caa_identity: str | None = option(None, check=dns_name)

    def __post_init__(self) -> None:
        if (self.eab_kid is None) != (self.eab_hmac_key_file is None):
            raise ValueError("[acme] eab_kid and eab_hmac_key_file go together")
