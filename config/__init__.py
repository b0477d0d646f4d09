"""Typed TOML configuration for every daemon: frozen dataclasses, every problem reported at once.

`load(RelaydConfig, path)` returns the config or raises ConfigError whose lines read
``file: [table].key: problem``.
"""

from ._dump import dumps
from ._load import ConfigError, HostPort, load, loads
from .agent import AgentConfig
from .ddnsd import DdnsdConfig
from .portal import PortalConfig
from .relayd import RelaydConfig

__all__ = [
    "AgentConfig",
    "ConfigError",
    "DdnsdConfig",
    "HostPort",
    "PortalConfig",
    "RelaydConfig",
    "dumps",
    "load",
    "loads",
]
