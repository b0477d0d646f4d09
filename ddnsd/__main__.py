"""Command line entry point of `ddnsd`."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from config import DdnsdConfig, daemon_main

DESCRIPTION = (
    "The nascloud DNS server: authoritative for the device zone, "
    "updated by DynDNS2, RFC 2136 and the relay."
)


def serve(config: DdnsdConfig, path: Path) -> int:
    from ._daemon import main_async

    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stdout
    )
    return trio.run(main_async, config, path)


def main(argv: Sequence[str] | None = None) -> int:
    return daemon_main(
        "ddnsd", DdnsdConfig, Path("/etc/nascloud/ddnsd.toml"), DESCRIPTION, argv, serve
    )


if __name__ == "__main__":
    sys.exit(main())
