"""Load TOML into frozen dataclasses, checking every key against the dataclass's type hints.

Every problem is collected, then raised at once as ConfigError, each line in the form
``file: [table].key: problem``. Knows nothing of any particular daemon.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["ConfigError", "HostPort", "load", "loads"]

_T = TypeVar("_T")


class ConfigError(Exception):
    """The configuration is unusable; `problems` lists every reason, one per line."""

    def __init__(self, problems: list[str]) -> None:
        # A problem quotes what the file says (keys, values, paths), which TOML lets hold
        # any character: escape the unprintable ones, so that one problem stays one line.
        problems = [p if p.isprintable() else "".join(map(_printable, p)) for p in problems]
        super().__init__("\n".join(problems))
        self.problems = problems


def _printable(char: str) -> str:
    return char if char.isprintable() else repr(char)[1:-1]


@dataclass(frozen=True, slots=True)
class HostPort:
    """An address to listen on or connect to, written ``"host:port"`` (``"[::1]:53"`` for IPv6)."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> HostPort:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host or not port_text.isdigit():
            raise ValueError(f'expected "host:port", got {text!r} (e.g. "127.0.0.1:7443")')
        port = int(port_text)
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} is out of range 0-65535")
        if host.startswith("["):
            if not host.endswith("]"):
                raise ValueError(f"unbalanced brackets in {text!r}")
            host = host[1:-1]
            ipaddress.IPv6Address(host)
        elif ":" in host:
            raise ValueError(f'write IPv6 addresses in brackets, e.g. "[{host}]:{port}"')
        return cls(host, port)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _describe(value: Any) -> str:
    kind = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)
    shown = repr(value)
    if isinstance(value, dict):
        return kind
    return f"{kind} {shown if len(shown) <= 40 else shown[:37] + '...'}"


class _Loader:
    def __init__(self, source: str, base_dir: Path) -> None:
        self.source = source
        self.base_dir = base_dir
        self.problems: list[str] = []

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{self.source}: {where}: {message}")

    def build(self, cls: type[_T], data: dict[str, Any], table: str) -> _T | None:
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        values: dict[str, Any] = {}
        for key in data:
            if key not in fields:
                close = difflib.get_close_matches(key, fields, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.problem(self._where(table, key), f"unknown key{hint}")
        for name, field in fields.items():
            where = self._where(table, name)
            if name not in data:
                if (
                    field.default is dataclasses.MISSING
                    and field.default_factory is dataclasses.MISSING
                ):
                    if dataclasses.is_dataclass(hints[name]):
                        # A table whose keys all have defaults may be left out.
                        nested = self.build(hints[name], {}, self._child(table, name))
                        if nested is not None:
                            values[name] = nested
                        continue
                    self.problem(where, "missing (required)")
                continue
            value = self.convert(hints[name], data[name], where, self._child(table, name))
            if value is _INVALID:
                continue
            check = field.metadata.get("check")
            if check is not None:
                message = check(value)
                if message:
                    self.problem(where, message)
                    continue
            values[name] = value
        try:
            return cls(**values)
        except TypeError:
            return None  # required values were missing; already reported
        except ValueError as exc:
            self.problem(f"[{table}]" if table else "(top level)", str(exc))
            return None

    @staticmethod
    def _child(table: str, name: str) -> str:
        return f"{table}.{name}" if table else name

    @staticmethod
    def _where(table: str, key: str) -> str:
        return f"[{table}].{key}" if table else key

    def convert(self, hint: Any, value: Any, where: str, table: str) -> Any:
        origin = typing.get_origin(hint)
        if origin in (types.UnionType, typing.Union):
            options = [a for a in typing.get_args(hint) if a is not type(None)]
            return self.convert(options[0], value, where, table)
        if origin is typing.Literal:
            allowed = typing.get_args(hint)
            if value not in allowed:
                choices = ", ".join(repr(a) for a in allowed)
                return self.fail(where, f"expected one of {choices}, got {_describe(value)}")
            return value
        if origin is tuple:
            (item,) = typing.get_args(hint)[:1]
            if item is HostPort and isinstance(value, str):
                # One address, or a list of them (IPv4 and IPv6 at once).
                one = self.convert(HostPort, value, where, table)
                return _INVALID if one is _INVALID else (one,)
            if not isinstance(value, list):
                return self.fail(where, f"expected an array, got {_describe(value)}")
            items = [self.convert(item, v, f"{where}[{i}]", table) for i, v in enumerate(value)]
            return _INVALID if _INVALID in items else tuple(items)
        if origin is dict:
            _key_type, item = typing.get_args(hint)
            if not isinstance(value, dict):
                return self.fail(where, f"expected a table, got {_describe(value)}")
            converted = {
                k: self.convert(item, v, self._where(table, k), table) for k, v in value.items()
            }
            return _INVALID if _INVALID in converted.values() else converted
        if hint is HostPort:
            if not isinstance(value, str):
                return self.fail(where, f'expected "host:port", got {_describe(value)}')
            try:
                return HostPort.parse(value)
            except ValueError as exc:
                return self.fail(where, str(exc))
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                return self.fail(where, f"expected a table, got {_describe(value)}")
            built = self.build(typing.cast(type[Any], hint), value, table)
            return _INVALID if built is None else built
        if hint is bool:
            if not isinstance(value, bool):
                return self.fail(where, f"expected true or false, got {_describe(value)}")
            return value
        if hint is int:
            if not isinstance(value, int) or isinstance(value, bool):
                return self.fail(where, f"expected an integer, got {_describe(value)}")
            return value
        if hint is float:
            if not isinstance(value, int | float) or isinstance(value, bool):
                return self.fail(where, f"expected a number, got {_describe(value)}")
            return float(value)
        if hint is str:
            if not isinstance(value, str):
                return self.fail(where, f"expected a string, got {_describe(value)}")
            return value
        if hint is Path:
            if not isinstance(value, str) or not value:
                return self.fail(where, f"expected a path, got {_describe(value)}")
            path = Path(os.path.expanduser(value))
            return path if path.is_absolute() else (self.base_dir / path).resolve()
        raise TypeError(f"config field type {hint!r} is not supported")  # a bug in a model

    def fail(self, where: str, message: str) -> Any:
        self.problem(where, message)
        return _INVALID


_INVALID: Any = object()


def loads(cls: type[_T], text: str, source: str = "<string>", base_dir: Path | None = None) -> _T:
    """Parse TOML `text` into `cls`; relative paths are taken from `base_dir`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{source}: not valid TOML: {exc}"]) from None
    loader = _Loader(source, base_dir or Path.cwd())
    result = loader.build(cls, data, "")
    if loader.problems or result is None:
        raise ConfigError(loader.problems or [f"{source}: invalid configuration"])
    return result


def load(cls: type[_T], path: Path) -> _T:
    """Read and validate the TOML file at `path`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
    return loads(cls, text, str(path), path.parent.resolve())
