"""Command line entry point of `nascloud-agent`."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from config import AgentConfig, daemon_main

DESCRIPTION = (
    "The NAS side of nascloud: one outbound tunnel to the relay, local services exposed through it."
)


def serve(config: AgentConfig, path: Path) -> int:
    from ._agent import main_async

    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stdout
    )
    return trio.run(main_async, config, path)


def main(argv: Sequence[str] | None = None) -> int:
    return daemon_main(
        "nascloud-agent", AgentConfig, Path("/etc/nascloud-agent.toml"), DESCRIPTION, argv, serve
    )


if __name__ == "__main__":
    sys.exit(main())
