"""Config models back to TOML: what `load` reads, `dumps` writes, so a program that writes a
daemon's config (`nascloud run`) builds the model and cannot write a key the loader refuses.
Only values that differ from their defaults are written; comments are the examples' job.
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from pathlib import Path
from typing import Any

import tomli_w

from ._load import HostPort

__all__ = ["dumps"]


def dumps(config: object, header: str = "") -> str:
    """The TOML text of a config model; `header` (comment lines) goes first."""
    return header + tomli_w.dumps(_table(config))


def _table(section: object) -> dict[str, Any]:
    assert dataclasses.is_dataclass(section) and not isinstance(section, type)
    table: dict[str, Any] = {}
    for field in dataclasses.fields(section):
        value = getattr(section, field.name)
        if value is None or value == _default(field):
            continue
        table[field.name] = _value(value)
    return table


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING  # required: always written


def _value(value: Any) -> Any:
    if isinstance(value, Path | HostPort):
        return str(value)
    if dataclasses.is_dataclass(value):
        return _table(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_value(item) for item in value]
    if isinstance(value, dict):
        return {key: _value(item) for key, item in value.items()}
    return value
