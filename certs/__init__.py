"""Certificates by ACME (RFC 8555) for the daemons that end TLS themselves: `Certificates`
keeps one certificate for the names `Wanted` lists in place, proving them with DNS-01
records its owner asks ddnsd for. Used by the agent (the NAS's names) and relayd (its
install site); knows neither."""

from ._acme import Certificates, Installed, SetChallenge, Wanted

__all__ = ["Certificates", "Installed", "SetChallenge", "Wanted"]
