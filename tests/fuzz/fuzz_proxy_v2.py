"""Fuzz the PROXY v2 encoder's inputs (`nasagent._proxy.proxy_v2_header`).

The agent passes the browser's address and port (from the OPEN frame) and its own; this
target passes text addresses (either fuzzed text, or addresses built from fuzzed octets, with
or without an IPv6 zone) and ports 0-65535. Contract: text that is not an IP address is a
ValueError; anything else gives a header that HAProxy's rules read back to the same
addresses (an IPv4 side mapped into IPv6 when the families differ) and ports.
"""

from __future__ import annotations

import ipaddress
import struct

from nasagent._proxy import SIGNATURE, proxy_v2_header


def _address(data: bytes) -> tuple[str, bytes]:
    """An address text from the front of `data`, and the rest of `data`."""
    if not data:
        return "", b""
    kind, data = data[0] % 4, data[1:]
    if kind == 0:
        return str(ipaddress.IPv4Address(data[:4].ljust(4, b"\0"))), data[4:]
    if kind == 1:
        return str(ipaddress.IPv6Address(data[:16].ljust(16, b"\0"))), data[16:]
    if kind == 2:  # link-local with a zone, as getpeername() gives it
        return str(ipaddress.IPv6Address(data[:16].ljust(16, b"\0"))) + "%eth0", data[16:]
    text, _, rest = data.partition(b"\n")
    return text.decode("latin-1"), rest


def _parsed(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        address = ipaddress.IPv6Address(text.split("%", 1)[0])
    return address


def one_input(data: bytes) -> None:
    source, data = _address(data)
    destination, data = _address(data)
    ports = data[:4].ljust(4, b"\0")
    source_port, destination_port = struct.unpack("!HH", ports)
    src, dst = _parsed(source), _parsed(destination)
    try:
        header = proxy_v2_header(source, source_port, destination, destination_port)
    except ValueError:
        assert src is None or dst is None, (source, destination)
        return
    assert src is not None and dst is not None, (source, destination)
    assert header[:12] == SIGNATURE and header[12] == 0x21, header
    family, length = header[13], int.from_bytes(header[14:16], "big")
    body = header[16:]
    assert length == len(body), header
    if src.version != dst.version:
        src = src if src.version == 6 else ipaddress.IPv6Address(f"::ffff:{src}")
        dst = dst if dst.version == 6 else ipaddress.IPv6Address(f"::ffff:{dst}")
    size = 4 if src.version == 4 else 16
    assert family == (0x11 if size == 4 else 0x21) and length == 2 * size + 4, header
    assert body[:size] == src.packed and body[size : 2 * size] == dst.packed, header
    assert struct.unpack("!HH", body[2 * size :]) == (source_port, destination_port)


def main() -> None:
    from ._atheris import fuzz

    fuzz(one_input)


if __name__ == "__main__":
    main()
