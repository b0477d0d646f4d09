"""The PROXY protocol v2 header the agent sends to local services."""

from __future__ import annotations

from nasagent._proxy import proxy_v2_header


def test_ipv4_header_matches_the_specification_layout() -> None:
    header = proxy_v2_header("203.0.113.7", 51234, "127.0.0.1", 443)
    assert header == bytes.fromhex(
        "0d0a0d0a000d0a515549540a"  # signature
        "21"  # version 2, PROXY
        "11"  # TCP over IPv4
        "000c"  # 12 bytes of addresses
        "cb007107"
        "7f000001"  # source, destination
        "c822"
        "01bb"  # ports 51234 and 443
    )


def test_ipv6_and_mixed_families() -> None:
    header = proxy_v2_header("2001:db8::7", 443, "::1", 8443)
    assert header[12:16] == bytes([0x21, 0x21, 0x00, 36])
    mixed = proxy_v2_header("203.0.113.7", 1, "::1", 2)
    assert mixed[13] == 0x21  # both carried as IPv6
    assert mixed[16:32] == bytes(10) + b"\xff\xff" + bytes([203, 0, 113, 7])
