"""Command line entry point of `relayd`."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from config import RelaydConfig
from service import daemon_main

from ._daemon import main_async

DESCRIPTION = (
    "The nascloud relay: NAS tunnels in, browsers through to them, HTTPS passed through by SNI."
)


def main(argv: Sequence[str] | None = None) -> int:
    return daemon_main(
        "relayd", RelaydConfig, Path("/etc/nascloud/relayd.toml"), DESCRIPTION, argv, main_async
    )


if __name__ == "__main__":
    sys.exit(main())
