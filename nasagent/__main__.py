"""Command line entry point of `nascloud-agent`."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from config import AgentConfig
from service import daemon_main

from ._daemon import main_async

DESCRIPTION = (
    "The NAS side of nascloud: one outbound tunnel to the relay, local services exposed through it."
)


def main(argv: Sequence[str] | None = None) -> int:
    return daemon_main(
        "nascloud-agent",
        AgentConfig,
        Path("/etc/nascloud-agent/agent.toml"),
        DESCRIPTION,
        argv,
        main_async,
    )


if __name__ == "__main__":
    sys.exit(main())
