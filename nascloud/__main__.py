"""Command line entry point of `nascloud`, the operator CLI."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from service import package_version

from ._admin import add_commands, run_admin
from ._keytool import add_key_commands, run_key

DESCRIPTION = (
    "Operate a nascloud installation: accounts, devices, access, tokens, keys, the registry;"
    " run a local stack."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nascloud", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="run the local stack in the foreground, on loopback",
        description=(
            "Start the local stack on loopback with a demo device, print what to try, "
            "and write the endpoints to <state dir>/endpoints.json. Ctrl-C stops."
        ),
    )
    run.add_argument("--state-dir", type=Path, default=Path("var"), help="default: ./var")
    run.add_argument(
        "--base-port",
        type=int,
        default=5300,
        help="every port is derived from it: N to N+13 (default: 5300)",
    )
    add_commands(commands)
    add_key_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        from ._run import run_stack

        return run_stack(args.state_dir, args.base_port)
    if args.command in ("account", "device", "token", "logs", "registry"):
        return run_admin(args)
    if args.command == "key":
        return run_key(args)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
