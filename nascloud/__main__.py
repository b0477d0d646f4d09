"""Command line entry point of `nascloud`, the operator CLI."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from config import package_version
from registry import SQLiteBackend

DESCRIPTION = "Operate a nascloud installation: accounts, devices, tokens, access logs."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nascloud", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="prepare and start the local development stack",
        description="Prepare the state directory of a local stack and start what this build has.",
    )
    run.add_argument("--state-dir", type=Path, default=Path("var"), help="default: ./var")
    return parser


def run(state_dir: Path) -> int:
    state_dir.mkdir(parents=True, exist_ok=True)
    registry_path = state_dir / "registry.sqlite3"
    backend = SQLiteBackend(registry_path)
    version = backend.schema_version()
    backend.close()
    print(f"registry: {registry_path.resolve()} (schema version {version})")
    print("No daemon in this build serves the network yet; nothing more to start.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args.state_dir)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
