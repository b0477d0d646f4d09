"""The relay's names: which device a host name under the link zone belongs to, the name in a
Host header, and how a URL on the HTTPS ingress spells its port. Pure: no I/O, no state."""

from __future__ import annotations

from registry import RESERVED_DEVICE_NAMES

__all__ = ["LinkZone", "host_of", "port_suffix"]


class LinkZone:
    """`<device>.<zone>` and every name below it belong to `<device>`; the relay's own names
    (the install site) belong to no device."""

    def __init__(self, zone: str) -> None:
        self.zone = zone.lower().rstrip(".")

    def device_for(self, host: str) -> str | None:
        host = host.lower().rstrip(".")
        if not host.endswith("." + self.zone):
            return None
        labels = host[: -len(self.zone) - 1].split(".")
        if labels[-1] in RESERVED_DEVICE_NAMES:
            return None
        return labels[-1] or None


def host_of(header: str) -> str:
    """The name in a Host header, without its port, lower-case (an IPv6 literal keeps its
    brackets)."""
    host = header.strip().lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0].rstrip(".")


def port_suffix(https_port: int | None) -> str:
    """What follows the host in a URL on the HTTPS ingress: nothing for 443."""
    return f":{https_port}" if https_port not in (None, 443) else ""
