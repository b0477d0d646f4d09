"""Command line entry point of `relayd`."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from config import RelaydConfig, daemon_main

DESCRIPTION = (
    "The nascloud relay: NAS tunnels in, browsers through to them, HTTPS passed through by SNI."
)


def serve(config: RelaydConfig, path: Path) -> int:
    from ._daemon import main_async

    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stdout
    )
    return trio.run(main_async, config, path)


def main(argv: Sequence[str] | None = None) -> int:
    return daemon_main(
        "relayd", RelaydConfig, Path("/etc/nascloud/relayd.toml"), DESCRIPTION, argv, serve
    )


if __name__ == "__main__":
    sys.exit(main())
