"""Syntax of the names and addresses the protocol carries: device and service names are DNS
labels, addresses are IP addresses in canonical text form.

One definition serves the wire codec, the registry, ddnsd and the daemons' configs. CAA
records (RFC 8659) are text too: `0 issue "letsencrypt.org"`.
"""

from __future__ import annotations

import ipaddress
import re

__all__ = ["account_caa", "canonical_address", "parse_caa", "validate_label"]

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_IPV4_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"(?:{_IPV4_OCTET}\.){{3}}{_IPV4_OCTET}")


def canonical_address(value: object) -> tuple[int, str] | None:
    """(IP version, canonical text) of an IP address, or None if `value` is not one.

    IPv4-mapped IPv6 addresses are given as the IPv4 address they carry. A scoped IPv6 address
    (`fe80::1%eth0`) is not one: its zone index names an interface of one host only. Canonical
    dotted quads, by far the most common input, are recognised without the ipaddress module.
    """
    if type(value) is not str:
        return None
    if _IPV4.fullmatch(value):
        return 4, value
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.version, str(address)


def validate_label(name: object, what: str = "name") -> str:
    """Return `name` if it is a lower-case DNS label (RFC 1035 letters, digits, hyphen).

    Raises ValueError with a message that says what is wrong and how to fix it.
    """
    if type(name) is str and _LABEL.fullmatch(name):
        return name
    if not isinstance(name, str):
        raise ValueError(f"{what} must be a string, got {type(name).__name__}")
    if not name:
        raise ValueError(f"{what} must not be empty")
    if len(name) > 63:
        raise ValueError(f"{what} {name[:70]!r} is {len(name)} characters; at most 63 are allowed")
    if name != name.lower():
        raise ValueError(f"{what} {name!r} must be lower-case (try {name.lower()!r})")
    if name[0] == "-" or name[-1] == "-":
        raise ValueError(f"{what} {name!r} must not start or end with a hyphen")
    if not _LABEL.fullmatch(name):
        raise ValueError(f"{what} {name!r} may contain only a-z, 0-9 and '-'")
    return name


#: Flags, tag and quoted value; no quote or backslash inside (RFC 8659 allows escapes; the
#: records nascloud publishes need none, so none is accepted).
_CAA = re.compile(r'(0|128) (issue|issuewild|iodef) "([\x20\x21\x23-\x5b\x5d-\x7e]{0,512})"')
#: A device's own record: one CA (its issuer domain name), and only the NAS's ACME account.
_ACCOUNT_VALUE = re.compile(
    r"([a-z0-9.-]{1,253}); accounturi=(https://[\x21-\x3a\x3c-\x7e]{1,400})"
)


def parse_caa(text: object) -> tuple[int, str, str]:
    """(flags, tag, value) of a CAA record written `0 issue "ca.example"`; ValueError if it
    is not one."""
    match = _CAA.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a CAA record (flags, tag, quoted value)")
    return int(match.group(1)), match.group(2), match.group(3)


def account_caa(text: object) -> tuple[str, str]:
    """(issuer domain, account URL) of a device's CAA record, `0 issue "<ca>; accounturi=
    <url>"` (RFC 8657): the only CAA record a device may set. ValueError otherwise."""
    flags, tag, value = parse_caa(text)
    match = _ACCOUNT_VALUE.fullmatch(value)
    if flags != 0 or tag != "issue" or match is None:
        raise ValueError(f'{text!r} is not 0 issue "<ca>; accounturi=<https URL>"')
    return match.group(1), match.group(2)
