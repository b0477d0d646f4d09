"""Value checks used in the config models' field metadata: each returns a problem or None."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import field
from pathlib import Path
from typing import Any

from protocol import validate_label

__all__ = [
    "between",
    "dns_name",
    "label",
    "option",
    "postgres_url",
    "readable_file",
    "writable_dir",
]

Check = Callable[[Any], str | None]

_DNS_NAME = re.compile(
    r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
)


def option(default: Any = None, *, check: Check | None = None, required: bool = False) -> Any:
    """A dataclass field with an optional check; without a default it is required."""
    metadata = {"check": check} if check else {}
    if required:
        return field(metadata=metadata)
    if isinstance(default, dict | list):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def between(low: float, high: float, unit: str = "") -> Check:
    suffix = f" {unit}" if unit else ""

    def check(value: float) -> str | None:
        if not low <= value <= high:
            return f"must be between {low:g} and {high:g}{suffix}, got {value:g}"
        return None

    return check


def label(value: str) -> str | None:
    try:
        validate_label(value, "the name")
    except ValueError as exc:
        return str(exc)
    return None


def dns_name(value: str) -> str | None:
    if value != value.lower():
        return f"must be lower-case (try {value.lower()!r})"
    if not _DNS_NAME.fullmatch(value.rstrip(".")):
        return f"{value!r} is not a valid DNS name (e.g. 'dyn.example.net')"
    return None


def postgres_url(value: str | None) -> str | None:
    """A fleet's registry: a libpq connection URI, its password (if any) in a passfile."""
    if value is None:
        return None
    if not value.startswith(("postgresql://", "postgres://")):
        return (
            f"{value!r} is not a PostgreSQL URI (e.g. 'postgresql://nascloud@db.internal/nascloud')"
        )
    if re.search(r"://[^/@]*:[^/@]*@", value):
        return "put the password in a passfile (~/.pgpass or PGPASSFILE), not in the URI"
    return None


def readable_file(path: Path) -> str | None:
    if not path.exists():
        return f"file {path} does not exist"
    if not path.is_file():
        return f"{path} is not a file"
    if not os.access(path, os.R_OK):
        return f"file {path} is not readable by this user"
    return None


def writable_dir(path: Path) -> str | None:
    """A state directory: it may be created later, but its parent must exist."""
    if path.exists():
        if not path.is_dir():
            return f"{path} exists and is not a directory"
        if not os.access(path, os.W_OK | os.X_OK):
            return f"directory {path} is not writable by this user"
        return None
    if not path.parent.is_dir():
        return f"neither {path} nor its parent directory exists"
    return None
