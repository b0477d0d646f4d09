"""The command line every daemon shares (--config, --check-config, --version, --help), the
reload of its configuration on SIGHUP, and its deliberate end when the registry is gone."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Final, TypeVar

import trio

from config import ConfigError, load
from registry import Registry, RegistryGone

from ._collector import keep_collector_off_the_path
from ._oplog import setup as setup_logging

__all__ = [
    "EXIT_REGISTRY_GONE",
    "config_reloader",
    "daemon_main",
    "end_when_gone",
    "exit_for_gone",
    "package_version",
]

EXIT_REGISTRY_GONE: Final = 3  # the registry's storage is gone: systemd restarts the daemon
GONE_ANSWER_S: Final = 0.5  # how long the units that found it gone have to answer

_T = TypeVar("_T")


def package_version() -> str:
    try:
        return version("nascloud")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def daemon_main(
    prog: str,
    model: type[_T],
    default_config: Path,
    description: str,
    argv: Sequence[str] | None,
    serve: Callable[[_T, Path], Awaitable[int]] | None,
) -> int:
    """Parse arguments, load and check the config, then run `serve(config, path)` under Trio
    with logging to standard output (journald-friendly).

    Exit codes: 0 success, 1 invalid configuration, 2 usage error or nothing to serve.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--config",
        type=Path,
        default=default_config,
        help=f"configuration file (default: {default_config})",
    )
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="validate the configuration, print every problem, and exit 0 (valid) or 1",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    args = parser.parse_args(argv)
    try:
        config = load(model, args.config)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        print(f"{prog}: {len(exc.problems)} problem(s) in {args.config}", file=sys.stderr)
        return 1
    if args.check_config:
        print(f"{prog}: {args.config} is valid")
        return 0
    if serve is None:
        print(
            f"{prog}: this build can only check its configuration (--check-config)", file=sys.stderr
        )
        return 2
    setup_logging(logging.INFO)  # the one log path: masks addresses, removes e-mails
    return trio.run(_serve_collected, serve, config, args.config)


async def _serve_collected(
    serve: Callable[[_T, Path], Awaitable[int]], config: _T, path: Path
) -> int:
    """`serve`, with the garbage collector kept off its latency path meanwhile (a system
    task: cancelled when `serve` returns, and no nursery to wrap what `serve` raises)."""
    trio.lowlevel.spawn_system_task(keep_collector_off_the_path)
    return await serve(config, path)


def config_reloader(
    model: type[_T],
    path: Path | None,
    apply: Callable[[_T], Awaitable[None] | None],
    log: logging.Logger,
) -> Callable[[], Awaitable[None]]:
    """What SIGHUP does (`until_stopped`'s reload): read `path` again and `apply` the new
    configuration; an invalid file is refused whole, logged on the daemon's `log`, and the
    running one stays."""

    async def reload() -> None:
        if path is None:
            return
        try:
            new = load(model, path)
        except ConfigError as exc:
            log.error("reload refused, the running configuration stays:\n%s", exc)
            return
        applied = apply(new)
        if applied is not None:
            await applied

    return reload


async def end_when_gone(
    registry: Registry, scope: trio.CancelScope, gone: list[RegistryGone]
) -> None:
    """Cancel `scope` (the daemon) once a call found the registry gone for good, after the
    units that found it have answered (911, SERVFAIL, an error); the reason goes in `gone`."""
    gone.append(await registry.wait_gone())
    await trio.sleep(GONE_ANSWER_S)
    scope.cancel()


def exit_for_gone(gone: list[RegistryGone], log: logging.Logger) -> int:
    """The exit code: EXIT_REGISTRY_GONE with one clear line if the registry is gone (serving
    errors forever would hide it, and a restart may find it again), else 0."""
    if not gone:
        return 0
    log.critical("stopping: the registry is gone: %s", gone[0])
    return EXIT_REGISTRY_GONE
