"""The one operational log path of every daemon: standard output (journald-friendly), with a
filter that masks every IP address and removes every e-mail address, whatever the message
(privacy rule 2), by the registry's rule (`registry.masked_network`): IPv4 keeps its /24
(`203.0.113.0`), IPv6 its /48 (`2001:db8:1::`), IPv4-mapped IPv6 the IPv4 rule; bracketed and
URL forms included.

Only an argument wrapped in `own(...)` is written as it is: the daemon's own listen addresses,
which are no one's personal data and which an operator must read exactly. Under systemd
(`$JOURNAL_STREAM` names standard output) each line starts with its syslog priority, `<3>` for
an error (sd-daemon(3)), so `journalctl -p warning` finds warnings.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import sys

from registry import masked_network

__all__ = ["MaskingFilter", "mask_text", "own", "setup"]

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


class Own:
    """A log argument that is the daemon's own (a listen address): not masked."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __str__(self) -> str:
        return str(self.value)


def own(value: object) -> Own:
    """Mark a log argument as the daemon's own: `log.info("on %s", own(address))`."""
    return Own(value)


def _placeholder(index: int) -> str:
    return f"\x00own{index}\x00"  # nothing the masks change: no digit run, dot or colon


class MaskingFilter(logging.Filter):
    """Rewrites each record's final message, and any exception text, before a handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        kept: list[str] = []
        if isinstance(record.args, tuple) and any(isinstance(a, Own) for a in record.args):
            args: list[object] = []
            for arg in record.args:
                if isinstance(arg, Own):
                    args.append(_placeholder(len(kept)))
                    kept.append(str(arg))
                else:
                    args.append(arg)
            record.args = tuple(args)
        text = mask_text(record.getMessage())
        for index, value in enumerate(kept):
            text = text.replace(_placeholder(index), value)
        record.msg = text
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        return True


_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6}


class JournalFormatter(logging.Formatter):
    """Every line of a record (a traceback's too) starts with the record's syslog priority."""

    def format(self, record: logging.LogRecord) -> str:
        priority = next((p for level, p in _PRIORITY.items() if record.levelno >= level), 7)
        return "\n".join(f"<{priority}>{line}" for line in super().format(record).split("\n"))


def _stdout_is_the_journal() -> bool:
    """sd-daemon(3): systemd sets $JOURNAL_STREAM to the device and inode of the stream."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        stat = os.fstat(sys.stdout.fileno())
        return (stat.st_dev, stat.st_ino) == (int(device), int(inode))
    except (ValueError, OSError):
        return False


def setup(level: int = logging.INFO) -> None:
    """Send every logger's records to standard output through the masking filter."""
    handler = logging.StreamHandler(sys.stdout)
    style = JournalFormatter if _stdout_is_the_journal() else logging.Formatter
    handler.setFormatter(style("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(MaskingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
