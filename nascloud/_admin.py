"""The operator commands: accounts, devices, access lists and tokens in the registry.

Each command opens the registry named by `--registry` (or `NASCLOUD_REGISTRY`), does one
thing, and prints either a short human line or, with `--json`, the JSON a script wants.
Times are ISO 8601 in UTC in both (`registry.iso_time`, as the account export writes them).
Exit codes: 0 done, 1 refused (not found, invalid, conflict), 2 usage.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import trio

from registry import (
    AccessLogKeys,
    AccessMode,
    AccessRecord,
    Account,
    Device,
    Registry,
    RegistryError,
    Token,
    TokenKind,
    is_postgres_url,
    iso_time,
)

__all__ = ["add_commands", "run_admin"]


def registry_location(text: str) -> Path | str:
    """A `postgresql://` URI (a fleet's registry) as it is, or a SQLite file's path."""
    return text if is_postgres_url(text) else Path(text)


DEFAULT_REGISTRY = registry_location(
    os.environ.get("NASCLOUD_REGISTRY", "/var/lib/nascloud/registry.sqlite3")
)


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def command(name: str, help_text: str) -> argparse._SubParsersAction[argparse.ArgumentParser]:
        parser = commands.add_parser(name, help=help_text, description=help_text)
        return parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def common(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument(
            "--registry",
            type=registry_location,
            default=DEFAULT_REGISTRY,
            help=f"a SQLite file or a postgresql:// URI; default: {DEFAULT_REGISTRY}",
        )
        parser.add_argument("--json", action="store_true", help="print JSON")
        return parser

    account = command("account", "accounts: the people who own devices")
    common(account.add_parser("create", help="create an account")).add_argument("email")
    account.choices["create"].add_argument("--name", required=True, help="display name")
    common(account.add_parser("list", help="list accounts"))
    common(account.add_parser("show", help="show one account")).add_argument("account_id")
    delete_account = common(
        account.add_parser("delete", help="delete an account and all its devices")
    )
    delete_account.add_argument("account_id")
    _confirmation(delete_account)
    export = common(account.add_parser("export", help="everything held about an account, as JSON"))
    export.add_argument("account_id")
    export.add_argument(
        "--key-file",
        type=Path,
        action="append",
        default=[],
        help="access-log keys of relayd or ddnsd (repeatable): include decrypted records",
    )
    correct = common(account.add_parser("correct", help="correct an account's e-mail or name"))
    correct.add_argument("account_id")
    correct.add_argument("--email")
    correct.add_argument("--name")

    device = command("device", "devices: NAS names and their keys")
    enrol = common(device.add_parser("enrol", help="enrol a device with its agent's public key"))
    enrol.add_argument("owner_id")
    enrol.add_argument("name")
    enrol.add_argument("public_key", help="base64 of the raw 32-byte Ed25519 public key")
    common(device.add_parser("list", help="list devices")).add_argument("--owner")
    common(device.add_parser("show", help="show one device")).add_argument("name")
    delete_device = common(device.add_parser("delete", help="unregister a device at once"))
    delete_device.add_argument("name")
    _confirmation(delete_device)
    common(
        device.add_parser("tsig-keys", help="list a device's RFC 2136 keys (never their secrets)")
    ).add_argument("name")
    tsig = common(
        device.add_parser(
            "tsig-key",
            help="create an RFC 2136 (nsupdate) key; shown once (to rotate: create a new one, "
            "move the client to it, then tsig-key-revoke the old one)",
        )
    )
    tsig.add_argument("name")
    tsig.add_argument("--key-name", help="the key's DNS name (default: the device name)")
    tsig.add_argument("--algorithm", choices=["hmac-sha256", "hmac-sha512"], default="hmac-sha256")
    revoke_tsig = common(
        device.add_parser(
            "tsig-key-revoke",
            help="revoke one of a device's RFC 2136 keys (ddnsd refuses it from then on)",
        )
    )
    revoke_tsig.add_argument("name")
    revoke_tsig.add_argument("key_name", help="the key's DNS name, as tsig-keys lists it")
    access = common(device.add_parser("access", help="who may look a device up and reach it"))
    access.add_argument("name")
    access.add_argument("mode", choices=[m.value for m in AccessMode])
    access.add_argument("accounts", nargs="*", help="account ids, for the custom mode")

    logs = commands.add_parser(
        "logs",
        help="read the encrypted access log",
        description="Decrypt and print the access log, one JSON record per line.",
    )
    common(logs)
    logs.add_argument(
        "--key-file",
        type=Path,
        action="append",
        required=True,
        help="access-log keys of relayd or ddnsd (repeatable)",
    )
    logs.add_argument("--device", action="append", help="only these devices (repeatable)")
    logs.set_defaults(action="read")

    stored = command("registry", "the registry itself: moving it to another engine")
    copy = common(
        stored.add_parser(
            "copy",
            help="copy every row of --registry into an empty registry (SQLite to PostgreSQL)",
        )
    )
    copy.add_argument("--to", required=True, type=registry_location, help="the new registry")

    token = command("token", "tokens: API bearer tokens and DynDNS2 passwords")
    create = common(token.add_parser("create", help="create a token; its secret is shown once"))
    create.add_argument("kind", choices=[k.value for k in TokenKind])
    create.add_argument("owner", help="an account id (api) or a device name (dyndns2)")
    create.add_argument("--name", default="", help="what the token is for (64 characters)")
    common(token.add_parser("revoke", help="revoke a token")).add_argument("token_id")
    listed = common(token.add_parser("list", help="list tokens (never their secrets)"))
    owner = listed.add_mutually_exclusive_group(required=True)
    owner.add_argument("--account", help="an account's API tokens")
    owner.add_argument("--device", help="a device's DynDNS2 passwords")


def _confirmation(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--yes", action="store_true", help="do not ask: the deletion cannot be undone"
    )


def _confirmed(args: argparse.Namespace, what: str, word: str) -> bool:
    """--yes, or the operator typed `word` at the prompt; never without a terminal to ask."""
    if args.yes:
        return True
    if not sys.stdin.isatty():
        print(f"nascloud: {what} cannot be undone; add --yes to confirm", file=sys.stderr)
        return False
    answer = input(f"{what} cannot be undone. Type {word!r} to confirm: ")
    return answer.strip() == word


def _account(account: Account) -> dict[str, Any]:
    return {**asdict(account), "created_at": iso_time(account.created_at)}


def _account_line(account: Account) -> str:
    return f"{account.account_id}  {account.email}  {account.display_name}  " + (
        f"created {iso_time(account.created_at)}"
    )


def _device(device: Device) -> dict[str, Any]:
    data = asdict(device)
    data["public_key"] = base64.b64encode(device.public_key).decode()
    data["access_mode"] = device.access_mode.value
    data["access_list"] = list(device.access_list)
    data["created_at"] = iso_time(device.created_at)
    data["last_seen_at"] = iso_time(device.last_seen_at)
    return data


def _token(token: Token) -> dict[str, Any]:
    data = asdict(token)
    data["kind"] = token.kind.value
    data["created_at"] = iso_time(token.created_at)
    data["last_used_at"] = iso_time(token.last_used_at)
    return data


def _record(record: AccessRecord) -> dict[str, Any]:
    data = asdict(record)
    data["started_at"] = iso_time(record.started_at)
    data["ended_at"] = iso_time(record.ended_at)
    return data


def _keyrings(paths: list[Path]) -> list[AccessLogKeys]:
    for path in paths:
        if not path.exists():
            raise RegistryError(f"no key file at {path}")
    return [AccessLogKeys(path) for path in paths]


ERASURE_WAIT_S = 30.0


async def _copy(args: argparse.Namespace) -> tuple[Any, str]:
    """`registry copy`: the source must exist; the target is made (migrated) if need be."""
    source = Registry.open(args.registry, create=False)
    try:
        target = Registry.open(args.to)
        try:
            copied = await source.copy_to(target)
        finally:
            await target.aclose()
    finally:
        await source.aclose()
    total = sum(copied.values())
    return copied, f"copied {total} rows in {len([n for n in copied.values() if n])} tables"


async def _run(args: argparse.Namespace) -> tuple[Any, str]:
    """(what --json prints, what a person reads)."""
    if args.command == "registry":
        return await _copy(args)
    registry = Registry.open(args.registry)
    try:
        what, action = args.command, args.action
        if what == "account":
            if action == "create":
                account = await registry.create_account(args.email, args.name)
                return _account(account), f"created account {account.account_id}"
            if action == "list":
                accounts = await registry.list_accounts()
                lines = "\n".join(_account_line(a) for a in accounts)
                return [_account(a) for a in accounts], lines or "no accounts"
            if action == "show":
                account = await registry.get_account(args.account_id)
                return _account(account), _account_line(account)
            if action == "delete":
                account = await registry.get_account(args.account_id)
                devices = await registry.list_devices(account.account_id)
                what = f"Deleting account {account.account_id} and its {len(devices)} device(s)"
                if not _confirmed(args, what, account.account_id):
                    raise _NotConfirmed
                gone = await registry.delete_account(args.account_id)
                return {"deleted_devices": gone}, (
                    f"deleted account {args.account_id} and {len(gone)} device(s)"
                )
            if action == "export":
                data = await registry.export_account(args.account_id, _keyrings(args.key_file))
                return data, json.dumps(data, indent=2)
            if action == "correct":
                account = await registry.correct_account(
                    args.account_id, email=args.email, display_name=args.name
                )
                return _account(account), f"corrected account {account.account_id}"
        if what == "device":
            if action == "enrol":
                try:
                    key = base64.b64decode(args.public_key, validate=True)
                except binascii.Error:
                    key = b""
                device = await registry.enrol_device(args.owner_id, args.name, key)
                return _device(device), f"enrolled {device.name}"
            if action == "list":
                devices = await registry.list_devices(args.owner)
                lines = "\n".join(
                    f"{d.name}  {d.owner_id}  {d.access_mode.value}  last seen "
                    f"{iso_time(d.last_seen_at) or 'never'}"
                    for d in devices
                )
                return [_device(d) for d in devices], lines or "no devices"
            if action == "show":
                found = await registry.get_device(args.name)
                if found is None:
                    raise RegistryError(f"no device {args.name!r}")
                return _device(found), json.dumps(_device(found), indent=2)
            if action == "delete":
                if await registry.get_device(args.name) is None:
                    raise RegistryError(f"no device {args.name!r}")
                if not _confirmed(args, f"Unregistering {args.name}", args.name):
                    raise _NotConfirmed
                if not await registry.delete_device(args.name):
                    raise RegistryError(f"no device {args.name!r}")
                return {"deleted": args.name}, (
                    f"unregistered {args.name}: its records, tokens, keys and access list are gone"
                )
            if action == "tsig-key":
                tsig_key = await registry.create_tsig_key(
                    args.name, args.key_name or args.name, args.algorithm
                )
                secret = base64.b64encode(tsig_key.secret).decode()
                return {
                    "key_name": tsig_key.key_name,
                    "device_name": tsig_key.device_name,
                    "algorithm": tsig_key.algorithm,
                    "secret": secret,
                }, (
                    f"created TSIG key {tsig_key.key_name} for {tsig_key.device_name}; "
                    "for nsupdate -y, shown only now:\n"
                    f"{tsig_key.algorithm}:{tsig_key.key_name}:{secret}"
                )
            if action == "tsig-keys":
                if await registry.get_device(args.name) is None:
                    raise RegistryError(f"no device {args.name!r}")
                keys = [
                    {"key_name": k.key_name, "device_name": k.device_name, "algorithm": k.algorithm}
                    for k in await registry.list_tsig_keys(args.name)
                ]
                lines = "\n".join(f"{k['key_name']}  {k['algorithm']}" for k in keys)
                return keys, lines or f"no TSIG keys for {args.name}"
            if action == "tsig-key-revoke":
                if not await registry.revoke_tsig_key(args.name, args.key_name):
                    raise RegistryError(f"{args.name} has no TSIG key {args.key_name!r}")
                return {"revoked": args.key_name, "device_name": args.name}, (
                    f"revoked TSIG key {args.key_name} of {args.name}: updates signed with it "
                    "are refused from now on"
                )
            if action == "access":
                device = await registry.set_access(
                    args.name, AccessMode(args.mode), tuple(args.accounts)
                )
                return _device(device), f"{device.name} is now {device.access_mode.value}"
        if what == "logs":
            records = await registry.read_access(_keyrings(args.key_file), args.device)
            readable = [_record(r) for r in records if isinstance(r, AccessRecord)]
            unreadable = len(records) - len(readable)
            shown = [json.dumps(r) for r in readable]
            if unreadable:
                shown.append(f"({unreadable} record(s) unreadable: expired keys or tampering)")
            return {"records": readable, "unreadable": unreadable}, "\n".join(shown) or "no records"
        if what == "token":
            if action == "create":
                kind = TokenKind(args.kind)
                if kind is TokenKind.API:
                    token, secret = await registry.create_token(
                        kind, account_id=args.owner, name=args.name
                    )
                else:
                    token, secret = await registry.create_token(
                        kind, device_name=args.owner, name=args.name
                    )
                return {**_token(token), "secret": secret}, (
                    f"created {token.token_id}; the secret, shown only now:\n{secret}"
                )
            if action == "list":
                tokens = await registry.list_tokens(
                    account_id=args.account, device_name=args.device
                )
                lines = "\n".join(
                    f"{t.token_id}  {t.kind.value}  created {iso_time(t.created_at)}  "
                    f"last used {iso_time(t.last_used_at) or 'never'}"
                    + (f"  {t.name}" if t.name else "")
                    for t in tokens
                )
                return [_token(t) for t in tokens], lines or "no tokens"
            if action == "revoke":
                if not await registry.revoke_token(args.token_id):
                    raise RegistryError(f"no token {args.token_id!r}")
                return {"revoked": args.token_id}, f"revoked {args.token_id}"
        raise AssertionError(f"unhandled command {what} {action}")
    finally:
        # An erasure is done when it is gone from every file, not when the rows are: wait
        # for daemons that read the registry to let go of their snapshots (privacy rule 5).
        if registry.erasure_pending() and not await registry.finish_erasure(ERASURE_WAIT_S):
            print(
                "nascloud: the erased data is still in the registry's write-ahead log, held "
                "by a process reading it; it goes when that process next writes",
                file=sys.stderr,
            )
        await registry.aclose()


class _NotConfirmed(Exception):
    """The operator did not confirm a deletion: nothing was done."""


def run_admin(args: argparse.Namespace) -> int:
    try:
        data, text = trio.run(_run, args)
    except RegistryError as exc:
        print(f"nascloud: {exc}", file=sys.stderr)
        return 1
    except _NotConfirmed:
        print("nascloud: not confirmed; nothing was deleted", file=sys.stderr)
        return 1
    print(json.dumps(data, indent=2) if args.json else text)
    return 0
