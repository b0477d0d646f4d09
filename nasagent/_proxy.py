"""The PROXY protocol version 2 header (HAProxy's specification, section 2.2), which tells
the NAS's web server who the browser really is: its own auto-block and fail2ban need that.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Final

__all__ = ["proxy_v2_header"]

SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
VERSION_2_PROXY: Final = 0x21
TCP_OVER_IPV4: Final = 0x11
TCP_OVER_IPV6: Final = 0x21


def proxy_v2_header(
    source: str, source_port: int, destination: str, destination_port: int
) -> bytes:
    """The header for a TCP connection from `source` to `destination`."""
    src = ipaddress.ip_address(source)
    dst = ipaddress.ip_address(destination)
    if src.version != dst.version:
        # Mixed families cannot be expressed; map an IPv4 side into IPv6.
        src = src if src.version == 6 else ipaddress.IPv6Address(f"::ffff:{src}")
        dst = dst if dst.version == 6 else ipaddress.IPv6Address(f"::ffff:{dst}")
    family = TCP_OVER_IPV4 if src.version == 4 else TCP_OVER_IPV6
    body = src.packed + dst.packed + struct.pack("!HH", source_port, destination_port)
    return SIGNATURE + struct.pack("!BBH", VERSION_2_PROXY, family, len(body)) + body
