"""Command line entry point of `nascloud-portal`."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from config import PortalConfig
from service import daemon_main

from ._daemon import main_async

DESCRIPTION = "The nascloud owner portal: accounts, sign-in and the owner's devices."


def main(argv: Sequence[str] | None = None) -> int:
    return daemon_main(
        "nascloud-portal",
        PortalConfig,
        Path("/etc/nascloud/portal.toml"),
        DESCRIPTION,
        argv,
        main_async,
    )


if __name__ == "__main__":
    sys.exit(main())
