"""Start the DNS servers the benchmarks compare, each pinned to one core, on loopback.

Shared by bench/dns.py; every server gets the same zone of N names.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import trustme

ZONE = "dyn.test"
BIN = Path(sys.executable).parent


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now."""
    while True:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        port = udp.getsockname()[1]
        tcp = socket.socket()
        try:
            tcp.bind(("127.0.0.1", port))
            return int(port)
        except OSError:
            continue
        finally:
            udp.close()
            tcp.close()


def write_certificate(
    directory: Path, stem: str, *names: str, ca: trustme.CA | None = None
) -> trustme.CA:
    """Into `directory`: the CA (`ca.pem`, a new one unless given) and a certificate it issues
    for `names` (`<stem>.crt`, `<stem>.key`). Returns the CA."""
    ca = ca or trustme.CA()
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    cert = ca.issue_cert(*names)
    cert.private_key_pem.write_to_path(str(directory / f"{stem}.key"))
    cert.cert_chain_pems[0].write_to_path(str(directory / f"{stem}.crt"))
    return ca


def address_of(index: int) -> str:
    return f"10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256}"


def names(count: int) -> list[str]:
    return [f"dev{i:05d}" for i in range(count)]


def write_zone_file(path: Path, count: int) -> None:
    lines = [
        f"$ORIGIN {ZONE}.",
        "$TTL 60",
        f"@ IN SOA ns1.{ZONE}. hostmaster.{ZONE}. 1 3600 600 1209600 60",
        f"@ IN NS ns1.{ZONE}.",
    ]
    lines += [f"{name} IN A {address_of(i)}" for i, name in enumerate(names(count))]
    path.write_text("\n".join(lines) + "\n")


def wait_for_dns(port: int, timeout_s: float = 30.0) -> None:
    query = bytes.fromhex("abcd01000001000000000000") + b"\x03dyn\x04test\x00\x00\x06\x00\x01"
    deadline = time.monotonic() + timeout_s
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        while time.monotonic() < deadline:
            sock.sendto(query, ("127.0.0.1", port))
            try:
                if sock.recv(4096)[:2] == b"\xab\xcd":
                    return
            except OSError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"no DNS server answered on port {port}")


@contextmanager
def process(
    command: list[str],
    core: int | str | None,
    log: Path,
    *,
    ready: str | None = None,
    **kwargs: object,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` (pinned to `core` unless None) with its output in `log`; with `ready`,
    wait until its first line of output contains it. Stopped with SIGTERM on the way out."""
    pin = ["taskset", "-c", str(core)] if core is not None else []
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*pin, *command],
            stdout=subprocess.PIPE if ready else out,
            stderr=out if ready else subprocess.STDOUT,
            **kwargs,  # type: ignore[call-overload]
        )
    try:
        if ready is not None:
            assert proc.stdout is not None
            assert ready in proc.stdout.readline().decode()
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_port(port: int, timeout_s: float = 20) -> None:
    """Until something accepts TCP connections on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@contextmanager
def nsd(workdir: Path, count: int, core: int) -> Iterator[int]:
    port = free_port()
    directory = workdir / "nsd"
    directory.mkdir()
    write_zone_file(directory / "zone", count)
    (directory / "nsd.conf").write_text(
        textwrap.dedent(f"""
        server:
            ip-address: 127.0.0.1
            port: {port}
            server-count: 1
            username: ""
            chroot: ""
            zonesdir: "{directory}"
            pidfile: "{directory}/nsd.pid"
            xfrdfile: "{directory}/xfrd.state"
            zonelistfile: "{directory}/zone.list"
            database: ""
            verbosity: 0
        remote-control:
            control-enable: no
        zone:
            name: "{ZONE}"
            zonefile: "zone"
    """)
    )
    with process(["nsd", "-d", "-c", str(directory / "nsd.conf")], core, directory / "log"):
        wait_for_dns(port)
        yield port


@contextmanager
def knot(workdir: Path, count: int, core: int) -> Iterator[int]:
    port = free_port()
    directory = workdir / "knot"
    directory.mkdir()
    write_zone_file(directory / "dyn.test.zone", count)
    (directory / "knot.conf").write_text(
        textwrap.dedent(f"""
        server:
            listen: 127.0.0.1@{port}
            rundir: "{directory}"
            udp-workers: 1
            tcp-workers: 1
            background-workers: 1
        database:
            storage: "{directory}"
        template:
          - id: default
            storage: "{directory}"
        zone:
          - domain: {ZONE}
            file: "dyn.test.zone"
    """)
    )
    with process(["knotd", "-c", str(directory / "knot.conf")], core, directory / "log"):
        wait_for_dns(port)
        yield port


DNSLIB_SERVER = """
import sys, time
from dnslib import RR, QTYPE, A, RCODE
from dnslib.server import DNSServer, BaseResolver
port, count = int(sys.argv[1]), int(sys.argv[2])
records = {}
for i in range(count):
    records[f"dev{i:05d}.dyn.test."] = f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"
class Resolver(BaseResolver):
    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname).lower()
        if name == "dyn.test.":
            soa = "dyn.test. 60 IN SOA ns1.dyn.test. h.dyn.test. 1 2 3 4 5"
            reply.add_answer(*RR.fromZone(soa))
        elif name in records and request.q.qtype == QTYPE.A:
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(records[name]), ttl=60))
        elif name not in records:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply
server = DNSServer(Resolver(), port=port, address="127.0.0.1")
server.start_thread()
while True:
    time.sleep(3600)
"""


@contextmanager
def dnslib_server(workdir: Path, count: int, core: int) -> Iterator[int]:
    port = free_port()
    directory = workdir / "dnslib"
    directory.mkdir()
    with process(
        [sys.executable, "-c", DNSLIB_SERVER, str(port), str(count)], core, directory / "log"
    ):
        wait_for_dns(port)
        yield port


def ddnsd_registry(path: Path, count: int) -> dict[str, str]:
    """A registry with `count` devices, each with an A record and a DynDNS2 token; returns
    device -> token secret. Written in one transaction: setup speed is not what is measured."""
    from registry import SQLiteBackend, hash_secret

    SQLiteBackend(path).close()  # creates and migrates
    tokens = {name: f"bench-token-{name}-{os.urandom(8).hex()}" for name in names(count)}
    db = sqlite3.connect(path)
    with db:
        db.execute("INSERT INTO accounts VALUES ('acc_bench', 'bench@example.org', 'Bench', 0)")
        db.executemany(
            "INSERT INTO devices VALUES (?, 'acc_bench', ?, 'private', 0, NULL)",
            [(name, os.urandom(32)) for name in tokens],
        )
        db.executemany(
            "INSERT INTO tokens (token_id, kind, secret_hash, account_id, device_name, "
            "created_at) VALUES (?, 'dyndns2', ?, NULL, ?, 0)",
            [(f"tok_{name}", hash_secret(secret), name) for name, secret in tokens.items()],
        )
        db.executemany(
            "INSERT INTO dns_rrsets VALUES (?, 'A', ?, 60, ?)",
            [(name, name, json.dumps([address_of(i)])) for i, name in enumerate(tokens)],
        )
    db.close()
    return tokens


@contextmanager
def ddnsd(
    workdir: Path,
    count: int,
    core: int | str,
    dyndns2: bool = False,
    workers: int = 1,
    registry_url: str | None = None,
) -> Iterator[tuple[int, str, dict[str, str]]]:
    """(DNS port, DynDNS2 host:port or "", tokens); on the PostgreSQL registry at
    `registry_url` (an empty database: the SQLite one made is copied into it) if given."""
    directory = workdir / f"ddnsd-{workers}-{'postgresql' if registry_url else 'sqlite'}"
    directory.mkdir()
    tokens = ddnsd_registry(directory / "registry.sqlite3", count)
    if registry_url is not None:
        from registry import PostgresBackend, SQLiteBackend, copy_registry

        source, target = (
            SQLiteBackend(directory / "registry.sqlite3"),
            PostgresBackend(registry_url),
        )
        copy_registry(source, target)
        source.close()
        target.close()
    port = free_port()
    http = (
        '[dyndns2]\nlisten = "127.0.0.1:0"\nupdates_per_host_per_minute = 10000\n'
        if dyndns2
        else ""
    )
    (directory / "ddnsd.toml").write_text(
        textwrap.dedent(f"""
        [ddnsd]
        workers = {workers}
        state_dir = "{directory}"
        registry = "{directory}/registry.sqlite3"
        {f'registry_url = "{registry_url}"' if registry_url else ""}
        [zone]
        name = "{ZONE}"
        primary_ns = "ns1.{ZONE}"
        hostmaster = "hostmaster.{ZONE}"
        [dns]
        listen = ["127.0.0.1:{port}"]
        [rrl]
        responses_per_second = 0
    """)
        + http
    )
    with process(
        [str(BIN / "ddnsd"), "--config", str(directory / "ddnsd.toml")], core, directory / "log"
    ):
        wait_for_dns(port)
        deadline = time.monotonic() + 30
        while not (directory / "listening.json").exists():  # written once workers are up
            if time.monotonic() > deadline:
                raise RuntimeError("ddnsd did not finish starting")
            time.sleep(0.05)
        listening = json.loads((directory / "listening.json").read_text())
        yield port, (listening.get("dyndns2") or [""])[0], tokens


def have(*programs: str) -> list[str]:
    return [p for p in programs if shutil.which(p) is None]
