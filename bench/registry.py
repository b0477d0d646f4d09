"""The registry on SQLite beside PostgreSQL, in one run: operations per second through the
async `Registry` the daemons use, and durable DynDNS2 updates per second through a real
ddnsd (wrk, 50 connections, group commit) on each engine.

PostgreSQL is a server this bench starts from Debian's package (as the tests do: a
temporary cluster on a Unix socket, fsync and synchronous_commit on, as shipped).
Bounded: every loop stops after its count or its seconds, whichever comes first.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _servers as servers
from bench.dns import update_bench
from registry import DnsRRset, Registry, TokenKind
from tests.postgres import PostgresServer

DEVICES = 1000


async def rate(operation: Callable[[int], Awaitable[object]], count: int, seconds: float) -> float:
    """Operations per second, one after another, for `count` of them or `seconds`."""
    started = time.perf_counter()
    done = 0
    while done < count and time.perf_counter() - started < seconds:
        await operation(done)
        done += 1
    return done / (time.perf_counter() - started)


async def operations(location: Path | str, seconds: float) -> dict[str, float]:
    registry = Registry.open(location)
    try:
        owner = await registry.create_account("bench@example.org", "Bench")
        secrets: list[str] = []
        for n in range(DEVICES):
            await registry.enrol_device(owner.account_id, f"dev{n:05d}", os.urandom(32))
        for n in range(100):
            _, secret = await registry.create_token(TokenKind.DYNDNS2, device_name=f"dev{n:05d}")
            secrets.append(secret)

        async def verify(n: int) -> object:
            return await registry.verify_token(TokenKind.DYNDNS2, secrets[n % len(secrets)])

        async def get(n: int) -> object:
            return await registry.get_device(f"dev{n % DEVICES:05d}")

        async def commit(n: int) -> None:
            address = f"192.0.{n // 250 % 250}.{n % 250 + 1}"
            rrset = DnsRRset(f"dev{n % DEVICES:05d}", "A", f"dev{n % DEVICES:05d}", 60, (address,))
            await registry.commit_dns([rrset], {"dyn.test": n + 1})

        async def commit_50(n: int) -> None:
            rrsets = [
                DnsRRset(f"dev{i:05d}", "A", f"dev{i:05d}", 60, (f"198.51.100.{n % 250 + 1}",))
                for i in range(n * 50 % DEVICES, n * 50 % DEVICES + 50)
            ]
            await registry.commit_dns(rrsets, {"dyn.test": n + 1})

        async def enrol_and_delete(n: int) -> None:
            await registry.enrol_device(owner.account_id, f"gone{n}", os.urandom(32))
            await registry.delete_device(f"gone{n}")  # an erasure: WAL truncation / VACUUM FULL

        async def parallel_verify(n: int) -> None:
            async with trio.open_nursery() as nursery:
                for i in range(8):
                    nursery.start_soon(verify, n * 8 + i)

        return {
            "verify a token (read)": await rate(verify, 20_000, seconds),
            "get a device (two reads)": await rate(get, 20_000, seconds),
            "8 token checks at once (per batch)": await rate(parallel_verify, 5_000, seconds),
            "commit one RRset (durable write)": await rate(commit, 5_000, seconds),
            "commit 50 RRsets (one transaction)": await rate(commit_50, 2_000, seconds),
            "enrol and delete a device (erasure)": await rate(enrol_and_delete, 500, seconds),
        }
    finally:
        await registry.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    args = parser.parse_args()
    missing = servers.have("wrk", "taskset")
    if missing:
        sys.exit(f"missing {missing}: `make deps` installs them")
    postgres = PostgresServer()
    try:
        with tempfile.TemporaryDirectory(prefix="nascloud-bench-") as tmp:
            workdir = Path(tmp)
            print(f"registry operations, {args.seconds:g} s (or the count) each, {DEVICES} devices")
            sqlite = trio.run(operations, workdir / "ops.sqlite3", args.seconds)
            pg = trio.run(operations, postgres.create_database(), args.seconds)
            print(f"  {'operation':<40}{'SQLite /s':>12}{'PostgreSQL /s':>15}{'PG/SQLite':>11}")
            for name, value in sqlite.items():
                print(f"  {name:<40}{value:>12.0f}{pg[name]:>15.0f}{pg[name] / value:>11.2f}")
            print(f"durable DynDNS2 updates: wrk, 50 connections, {DEVICES} devices, ddnsd")
            results = {}
            for engine, url in (("SQLite", None), ("PostgreSQL", postgres.create_database())):
                (workdir / engine).mkdir()
                results[engine] = update_bench(workdir / engine, args.seconds * 2, url)
            for engine, (updates, good, other, latencies) in results.items():
                latencies.sort()
                p99 = latencies[int(len(latencies) * 0.99)] * 1e3 if latencies else float("nan")
                print(
                    f"  {engine:<12}{updates:>8.0f} acknowledged/s ({good} acknowledged, "
                    f"{other} other); acknowledgement to answer p99 {p99:.1f} ms"
                )
            print(f"  PostgreSQL/SQLite: {results['PostgreSQL'][0] / results['SQLite'][0]:.2f}")
    finally:
        postgres.stop()


if __name__ == "__main__":
    main()
