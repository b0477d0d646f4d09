"""Command line entry point of `ddnsd`."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from config import DdnsdConfig
from service import daemon_main

from ._daemon import main_async

DESCRIPTION = (
    "The nascloud DNS server: authoritative for the device zone, "
    "updated by DynDNS2, RFC 2136 and the relay."
)


def main(argv: Sequence[str] | None = None) -> int:
    return daemon_main(
        "ddnsd", DdnsdConfig, Path("/etc/nascloud/ddnsd.toml"), DESCRIPTION, argv, main_async
    )


if __name__ == "__main__":
    sys.exit(main())
