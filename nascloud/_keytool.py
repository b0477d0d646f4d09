"""`nascloud key`: the Ed25519 keys of agents and services, without a registry.

`key show FILE` prints the public key of a key file, the form `device enrol` and ddnsd's
`[protocol.services]` take; `key create FILE` makes a new key, readable by its owner only
(0600), and prints the same, with `--service NAME` as the line to put in ddnsd's config.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tunnel import load_key, load_or_create_key, public_key_base64

__all__ = ["add_key_commands", "run_key"]


def add_key_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    key = commands.add_parser(
        "key",
        help="agents' and services' keys: show a public key, create a key",
        description="The Ed25519 keys agents and relayd authenticate with.",
    )
    actions = key.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print the public key of a key file")
    show.add_argument("file", type=Path, help="an agent's device.key or relayd's service key")
    create = actions.add_parser("create", help="create a key file (0600) and print its public key")
    create.add_argument("file", type=Path)
    create.add_argument(
        "--service",
        metavar="NAME",
        help="print the [protocol.services] line that lets this service (e.g. relay) into ddnsd",
    )


def run_key(args: argparse.Namespace) -> int:
    path: Path = args.file
    try:
        if args.action == "show":
            public = public_key_base64(load_key(path))
        else:
            if path.exists():
                print(f"nascloud: {path} exists; a key is never replaced", file=sys.stderr)
                return 1
            path.parent.mkdir(parents=True, exist_ok=True)
            public = public_key_base64(load_or_create_key(path))
    except (OSError, ValueError) as exc:
        print(f"nascloud: {path}: {exc}", file=sys.stderr)
        return 1
    if getattr(args, "service", None):
        print(f'# in ddnsd\'s config, under [protocol.services]:\n{args.service} = "{public}"')
    else:
        print(public)
    return 0
