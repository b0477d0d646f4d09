"""Memory of idle tunnels: relayd's resident memory per authenticated, idle agent tunnel,
beside a bare Trio TLS server holding the same number of idle connections, in one run.

Agents are simulated by one client process holding N tunnels (each with its own device key).

Run: .venv/bin/python bench/tunnels.py [--tunnels 10000]
"""

from __future__ import annotations

import argparse
import resource
import sqlite3
import ssl
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import protocol
from bench._servers import free_port, process, wait_port, write_certificate
from registry import SQLiteBackend
from tunnel import open_tunnel

BIN = Path(sys.executable).parent

BARE_SERVER = """
import ssl, sys, trio
port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)
async def handler(stream):
    tls = trio.SSLStream(stream, context, server_side=True)
    try:
        await tls.do_handshake()
        while await tls.receive_some():
            pass
    except trio.BrokenResourceError:
        pass  # the client went away at the end of the run
async def main():
    await trio.serve_tcp(handler, port, host="127.0.0.1", backlog=4096)
trio.run(main)
"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def hold_tunnels(
    port: int,
    ca: Path,
    keys: list[tuple[str, Ed25519PrivateKey]],
    ready: trio.Event,
    stop: trio.Event,
) -> None:
    context = ssl.create_default_context(cafile=str(ca))
    limiter = trio.CapacityLimiter(64)
    up = 0

    async def one(name: str, key: Ed25519PrivateKey) -> None:
        nonlocal up
        async with limiter:
            stream = trio.SSLStream(
                await trio.open_tcp_stream("127.0.0.1", port), context, server_hostname="relay.test"
            )
            conn = protocol.Connection(
                protocol.Role.CLIENT,
                server_name="relay.test",
                credentials=protocol.Credentials(protocol.AuthKind.DEVICE, name, key),
            )
            tunnel_cm = open_tunnel(stream, conn)
            tunnel = await tunnel_cm.__aenter__()
        up += 1
        if up == len(keys):
            ready.set()
        await stop.wait()
        try:
            await tunnel_cm.__aexit__(None, None, None)
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the server went first: nothing to measure in the goodbye
        assert tunnel

    async with trio.open_nursery() as nursery:
        for name, key in keys:
            nursery.start_soon(one, name, key)


async def hold_bare(port: int, ca: Path, count: int, ready: trio.Event, stop: trio.Event) -> None:
    context = ssl.create_default_context(cafile=str(ca))
    limiter = trio.CapacityLimiter(64)
    up = 0

    async def one() -> None:
        nonlocal up
        async with limiter:
            stream = trio.SSLStream(
                await trio.open_tcp_stream("127.0.0.1", port), context, server_hostname="relay.test"
            )
            await stream.do_handshake()
        up += 1
        if up == count:
            ready.set()
        await stop.wait()
        await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)


def measure(pid: int, hold: object, *args: object) -> tuple[int, int, float]:
    """(RSS before, RSS with everything held, seconds to set up)."""
    before = rss_kib(pid)

    async def run() -> tuple[int, float]:
        ready, stop = trio.Event(), trio.Event()
        started = time.monotonic()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hold, *args, ready, stop)  # type: ignore[arg-type]
            await ready.wait()
            elapsed = time.monotonic() - started
            await trio.sleep(2)  # let the server settle
            during = rss_kib(pid)
            stop.set()
        return during, elapsed

    during, elapsed = trio.run(run)
    return before, during, elapsed


def enrol(registry: Path, keys: list[tuple[str, Ed25519PrivateKey]]) -> None:
    """Enrol a device for each of `keys` in the (migrated) registry at `registry`, under
    an account of their own, in one transaction: setup speed is not what is measured."""
    db = sqlite3.connect(registry)
    with db:
        db.execute("INSERT INTO accounts VALUES ('acc_bench', 'b@example.org', 'Bench', 0)")
        db.executemany(
            "INSERT INTO devices VALUES (?, 'acc_bench', ?, 'private', 0, NULL)",
            [(name, protocol.public_key_bytes(key)) for name, key in keys],
        )
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tunnels", type=int, default=10_000)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.tunnels + 1000)), hard)
    )
    with tempfile.TemporaryDirectory(prefix="nascloud-tunnels-") as tmp:
        work = Path(tmp)
        write_certificate(work, "relay", "relay.test")
        keys = [(f"dev{i:05d}", Ed25519PrivateKey.generate()) for i in range(args.tunnels)]
        SQLiteBackend(work / "registry.sqlite3").close()
        enrol(work / "registry.sqlite3", keys)
        port = free_port()
        (work / "relayd.toml").write_text(
            textwrap.dedent(f"""
            [relay]
            name = "relay.test"
            state_dir = "state"
            registry = "registry.sqlite3"
            [tunnel]
            listen = "127.0.0.1:{port}"
            cert_file = "relay.crt"
            key_file = "relay.key"
            keepalive_interval_s = 600
            keepalive_timeout_s = 1800
            [ingress]
            link_zone = "link.test"
            [limits]
            max_tunnels_per_address = {args.tunnels + 10}
        """)
        )
        bare_port = free_port()
        bare_server = [sys.executable, "-c", BARE_SERVER, str(bare_port)]
        bare_server += [str(work / "relay.crt"), str(work / "relay.key")]
        relayd_command = [str(BIN / "relayd"), "--config", str(work / "relayd.toml")]
        with (
            process(relayd_command, None, work / "relayd.log") as relayd,
            process(bare_server, None, work / "bare.log") as bare,
        ):
            wait_port(port)
            wait_port(bare_port)
            before, during, elapsed = measure(relayd.pid, hold_tunnels, port, work / "ca.pem", keys)
            bare_before, bare_during, _ = measure(
                bare.pid, hold_bare, bare_port, work / "ca.pem", args.tunnels
            )
    ours = (during - before) / args.tunnels
    theirs = (bare_during - bare_before) / args.tunnels
    print(
        f"{args.tunnels} idle connections, RSS growth per connection (set up in {elapsed:.0f} s):"
    )
    print(f"  relayd, authenticated tunnels   {ours:7.1f} KiB   (target < 32 KiB)")
    print(f"  bare Trio TLS server            {theirs:7.1f} KiB   relayd/bare {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
