"""Command line entry point of `nascloud`, the operator CLI."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from config import package_version

DESCRIPTION = "Operate a nascloud installation: accounts, devices, tokens, access logs."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nascloud", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    build_parser().parse_args(argv)
    print("nascloud: no commands in this build yet; see --help", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
