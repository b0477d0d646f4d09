"""The one operational log path of every daemon: standard output (journald-friendly), with a
filter that masks every IP address and removes every e-mail address, whatever the message
(privacy rule 2), by the registry's rule (`registry.masked_network`): IPv4 keeps its /24
(`203.0.113.0`), IPv6 its /48 (`2001:db8:1::`), IPv4-mapped IPv6 the IPv4 rule; bracketed and
URL forms included.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import sys

from registry import masked_network

__all__ = ["MaskingFilter", "mask_text", "setup"]

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
# A run of four or more dotted numbers: every four in a row that make an IPv4 address may be
# one (`a1.10.0.0.1`, tcpdump's `192.0.2.5.443`), so each such window loses its last octet.
_DOTTED = re.compile(r"\d+(?:\.\d+){3,}")
# Anything that might be an IPv6 address: a run of hex digits, colons and dots with at least
# two colons (and a zone after %); checked with ipaddress before it is replaced, so times like
# 10:20:30 are left alone.
_IPV6 = re.compile(r"(?<![0-9A-Fa-f:.])[0-9A-Fa-f.]*:[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*(?:%\w+)?")


def _octet(text: str) -> bool:
    return len(text) <= 3 and int(text) <= 255


def _mask_v4(match: re.Match[str]) -> str:
    parts = match.group(0).split(".")
    masked = list(parts)
    for start in range(len(parts) - 3):
        window = parts[start : start + 4]
        if all(_octet(part) for part in window):
            # Built from the numbers, so a form with leading zeros (010.001.002.003) is
            # masked by the same rule.
            address = ipaddress.IPv4Address(".".join(str(int(part)) for part in window))
            network = str(masked_network(address).network_address).split(".")
            for index, (part, kept) in enumerate(zip(window, network, strict=True)):
                if int(part) != int(kept):  # masked away: it stays masked for every window
                    masked[start + index] = kept
    return ".".join(masked)


def _ipv6_suffix(candidate: str) -> tuple[str, ipaddress.IPv6Address] | None:
    """The longest valid IPv6 address that ends the candidate, and what comes before it (a word
    glued to an address, such as `from2001:db8::1`, must not shield it)."""
    for start in range(candidate.index(":") + 1):
        try:
            return candidate[:start], ipaddress.IPv6Address(candidate[start:])
        except ValueError:
            continue
    return None


def _mask_v6(match: re.Match[str]) -> str:
    text = match.group(0)
    candidate, _, _zone = text.partition("%")
    tail = ""
    while candidate.endswith((".", ":")) and not candidate.endswith("::"):
        candidate, tail = candidate[:-1], candidate[-1] + tail  # sentence punctuation
    found = _ipv6_suffix(candidate)
    if found is None:
        return text
    prefix, address = found
    masked = str(masked_network(address).network_address)
    if address.ipv4_mapped is not None:
        masked = "::ffff:" + masked  # keeps its form, masked by the IPv4 rule
    return f"{prefix}{masked}{tail}"


def mask_text(text: str) -> str:
    """The text with e-mail addresses removed and IP addresses masked."""
    text = _EMAIL.sub("<e-mail>", text)
    text = _IPV6.sub(_mask_v6, text)
    return _DOTTED.sub(_mask_v4, text)


class MaskingFilter(logging.Filter):
    """Rewrites each record's final message, and any exception text, before a handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask_text(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        return True


def setup(level: int = logging.INFO) -> None:
    """Send every logger's records to standard output through the masking filter."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(MaskingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
