"""Syntax of the names the protocol carries: device and service names are DNS labels.

One definition serves the wire codec, the registry and the daemons' configs.
"""

from __future__ import annotations

import re

__all__ = ["validate_label"]

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


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
