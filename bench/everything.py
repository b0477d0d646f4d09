"""Everything at once (issue #14, section 4): the latency of a new browser connection through
relayd + agent and of a DNS query to ddnsd, first quiet, then while relayd holds thousands of
idle tunnels, every ingress has slowloris clients, bulk transfers pass and DNS load arrives.

Loopback only. Every load generator runs at nice 10 in a process of its own, so that the
prober (this process, nice 0, like the daemons) measures the daemons, not its own competition
for the CPU or the GIL. Counts the machine cannot hold are reduced, and the output says so.

Run: .venv/bin/python bench/everything.py [--tunnels 5000] [--slowloris 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio
import trustme
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench import _servers as servers
from bench.relay import ECHO, ECHO_NAME, SINK, SINK_NAME, relay_and_agent, round_trips, send_plain
from bench.tunnels import enrol, hold_tunnels

NICE = 10
TARGET_RATIO = 3.0
# What each slowloris client of an ingress starts to send and then trickles, one byte at a
# time; none of them is ever complete. HTTPS: a TLS record header that announces 512 bytes of
# handshake. HTTP and DynDNS2: a request head whose last header line never ends. DNS on TCP:
# a length prefix that announces a 256-byte message.
INGRESSES: dict[str, tuple[bytes, bytes]] = {
    "relayd https": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"\x00"),
    "relayd http": (b"GET / HTTP/1.1\r\nHost: nas2.link.test\r\nX-Slow: ", b"a"),
    "ddnsd DynDNS2": (b"GET /nic/update?hostname=dev00001.dyn.test HTTP/1.1\r\nX-Slow: ", b"a"),
    "ddnsd DNS TCP": (b"\x01\x00", b"\x00"),
}
OPEN, OPENED, CLOSED_BY_DAEMON, CONNECT_FAILED = range(4)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


# -- load generators, each in a forked process at nice 10 -----------------------------------


def _wait_in_thread(stop: Event) -> Callable[[], Any]:
    return lambda: trio.to_thread.run_sync(stop.wait, abandon_on_cancel=True)


def _hold_tunnels(
    port: int, ca: Path, keys: list[tuple[str, Ed25519PrivateKey]], stop: Event, nice: int
) -> None:
    """bench/tunnels.py's idle tunnels, until `stop`."""
    os.nice(nice)

    async def run() -> None:
        ready, done = trio.Event(), trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hold_tunnels, port, ca, keys, ready, done)
            await _wait_in_thread(stop)()
            done.set()

    trio.run(run)


def _slowloris(
    ports: list[int], per_ingress: int, trickle_s: float, counts: Any, stop: Event
) -> None:
    """`per_ingress` clients on each of `ports` (in INGRESSES' order), half trickling a byte
    every `trickle_s`, half sending nothing; a client the daemon closes connects again a
    second later, as an attacker's would. `counts[4 * ingress + OPEN...]` say how it goes."""
    os.nice(NICE)
    starts = list(INGRESSES.values())

    async def client(ingress: int, trickle: bool) -> None:
        prefix, filler = starts[ingress]
        base = 4 * ingress
        await trio.sleep(random.uniform(0, 5))  # a ramp, not one burst of SYNs
        while True:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", ports[ingress])
            except OSError:
                counts[base + CONNECT_FAILED] += 1
                await trio.sleep(random.uniform(0.5, 1.5))
                continue
            counts[base + OPEN] += 1
            counts[base + OPENED] += 1
            sent = 0
            try:
                while True:
                    with trio.move_on_after(trickle_s if trickle else 3600):
                        if not await stream.receive_some(4096):
                            break  # the daemon closed it
                        continue  # an error answer (408, ...): the close follows
                    byte = prefix[sent : sent + 1] or filler
                    await stream.send_all(byte)
                    sent += 1
            except (trio.BrokenResourceError, OSError):
                pass
            finally:
                counts[base + OPEN] -= 1
                counts[base + CLOSED_BY_DAEMON] += 1
                await trio.aclose_forcefully(stream)
            await trio.sleep(random.uniform(0.5, 1.5))

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            for ingress in range(len(ports)):
                for i in range(per_ingress):
                    nursery.start_soon(client, ingress, i % 2 == 0)
            await _wait_in_thread(stop)()
            nursery.cancel_scope.cancel()

    trio.run(run)


def _bulk(
    port: int, streams: int, megabytes: int, stop: Event, done: Any, errors: Synchronized[int]
) -> None:
    """`streams` transfers at once through relayd to the sink, each starting again when it
    ends (bench/relay.py's plain ends), until `stop`; `done[0]` counts MiB acknowledged."""
    os.nice(NICE)

    def loop() -> None:
        deadline = time.monotonic() + 3600
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                send_plain(port, SINK_NAME, megabytes)
            except (OSError, AssertionError, ValueError):
                with errors.get_lock():
                    errors.value += 1
                time.sleep(0.5)
                continue
            with done.get_lock():
                done[0] += megabytes
                done[1] += 1

    threads = [threading.Thread(target=loop) for _ in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# -- what the prober measures ---------------------------------------------------------------


def _query(query_id: int, name: str, qtype: int = 1) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    header = query_id.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    return header + labels + b"\x00" + qtype.to_bytes(2, "big") + b"\x00\x01"


def dns_latencies(
    port: int, names: list[str], count: int, rate: float, timeout_s: float = 1.0
) -> tuple[list[float], int]:
    """Seconds for each of `count` UDP queries to ddnsd, one at a time, `rate` per second at
    most; a query not answered within `timeout_s` counts as that long and as lost."""
    times: list[float] = []
    lost = 0
    started = time.perf_counter()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i in range(count):
            query_id = i % 65536
            sent = time.perf_counter()
            sock.sendto(
                _query(query_id, f"{names[i % len(names)]}.{servers.ZONE}"), ("127.0.0.1", port)
            )
            while True:
                left = timeout_s - (time.perf_counter() - sent)
                if left <= 0:
                    lost += 1
                    times.append(timeout_s)
                    break
                sock.settimeout(left)
                try:
                    answer = sock.recv(4096)
                except TimeoutError:
                    continue
                if answer[:2] == query_id.to_bytes(2, "big"):
                    times.append(time.perf_counter() - sent)
                    break  # else a late answer to an earlier query
            pause = started + (i + 1) / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
    return sorted(times), lost


def dns_tcp_answers(port: int, count: int, timeout_s: float = 2.0) -> int:
    """How many of `count` queries on new TCP connections ddnsd answers within `timeout_s`."""
    answered = 0
    for i in range(count):
        query = _query(i, f"dev00000.{servers.ZONE}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
                sock.sendall(len(query).to_bytes(2, "big") + query)
                if len(sock.recv(4096)) > 2:
                    answered += 1
        except OSError:
            pass
        time.sleep(0.05)
    return answered


def held(port: int) -> int:
    """Established connections on the daemon's side of 127.0.0.1:`port` (/proc/net/tcp)."""
    wanted = f":{port:04X}"
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(wanted) and fields[3] == "01":  # 01: ESTABLISHED
            count += 1
    return count


def scrape(port: int) -> dict[str, float]:
    """A metrics page, `name{labels}` -> value; empty if it did not come within 5 s."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    except OSError:
        return {}
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            values[key] = float(value)
    return values


def pids_of(fragment: str) -> list[int]:
    """Processes whose command line names `fragment` (a config file in this run's directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if fragment in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def cpu_s(pid: int) -> float:
    """User and system CPU seconds of every thread of `pid` so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_queue(pids: list[int]) -> dict[str, tuple[int, int]]:
    """Per thread of `pids`: (ns spent runnable but waiting for a core, times run), from
    /proc/<pid>/task/*/schedstat: how long a wake-up waits for the CPU."""
    threads = {}
    for pid in pids:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                _, wait_ns, runs = (task / "schedstat").read_text().split()
            except (OSError, ValueError):
                continue
            threads[task.name] = int(wait_ns), int(runs)
    return threads


def machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the machine, all cores, so far."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = ticks[3] + ticks[4]
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK"), sum(ticks) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Cpu:
    """CPU shares over a window: per watched process, and the machine's."""

    pids: dict[str, list[int]]
    start: dict[str, float] = field(default_factory=dict)
    queued: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)
    machine: tuple[float, float] = (0.0, 0.0)
    wall: float = 0.0

    def begin(self) -> None:
        self.start = {label: sum(map(cpu_s, pids)) for label, pids in self.pids.items()}
        self.queued = {label: run_queue(pids) for label, pids in self.pids.items()}
        self.machine = machine_busy_s()
        self.wall = time.monotonic()

    def end(self) -> Shares:
        """% of one core per label, mean ms waiting for a core per run per label, machine
        busy % of all cores, % of one core used by others."""
        wall = time.monotonic() - self.wall
        shares = {
            label: 100 * (sum(map(cpu_s, pids)) - self.start[label]) / wall
            for label, pids in self.pids.items()
        }
        waits = {}
        for label, pids in self.pids.items():
            # Threads that ended in the window are not counted (the sink's, one per
            # transfer); those that began in it are, from zero.
            waited = runs = 0
            for thread, (wait_ns, count) in run_queue(pids).items():
                wait_before, count_before = self.queued[label].get(thread, (0, 0))
                waited, runs = waited + wait_ns - wait_before, runs + count - count_before
            waits[label] = waited / 1e6 / runs if runs > 0 else 0.0
        busy, total = machine_busy_s()
        busy_share = (busy - self.machine[0]) / (total - self.machine[1])
        cores = os.cpu_count() or 1
        others = 100 * cores * busy_share - sum(shares.values())
        return shares, waits, 100 * busy_share, others


Shares = tuple[dict[str, float], dict[str, float], float, float]


def log_problems(log: Path) -> int:
    """Lines at ERROR or worse, and tracebacks, in a log file."""
    pattern = re.compile(r"\b(ERROR|CRITICAL)\b|^Traceback")
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return sum(1 for line in lines if pattern.search(line))


# -- the run ---------------------------------------------------------------------------------


def fit_to_limits(args: argparse.Namespace, notes: list[str]) -> None:
    """Raise RLIMIT_NOFILE (children inherit it) to what relayd needs, or reduce the counts."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.tunnels + 2 * args.slowloris + 8 * args.bulk + 1000
    if need > hard:
        scale = (hard - 8 * args.bulk - 1000) / (args.tunnels + 2 * args.slowloris)
        tunnels, slowloris = int(args.tunnels * scale), int(args.slowloris * scale)
        notes.append(
            f"REDUCED: RLIMIT_NOFILE hard limit {hard} < {need} descriptors relayd needs: "
            f"{tunnels} tunnels instead of {args.tunnels}, {slowloris} slowloris clients per "
            f"ingress instead of {args.slowloris}"
        )
        args.tunnels, args.slowloris = tunnels, slowloris
        need = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, need)), hard))


def dnsperf(port: int, queries: Path, qps: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *("nice", "-n", str(NICE), "dnsperf", "-s", "127.0.0.1", "-p", str(port)),
            *("-d", str(queries), "-l", "900", "-Q", str(qps), "-c", "4", "-q", "100", "-t", "2"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def dnsperf_result(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    sent = re.search(r"Queries sent:\s+(\d+)", out)
    lost = re.search(r"Queries lost:\s+(\d+) \(([\d.]+)%\)", out)
    qps = re.search(r"Queries per second:\s+([\d.]+)", out)
    if not (sent and lost and qps):
        return f"no summary from dnsperf: {out[-300:]!r}"
    return (
        f"{int(sent.group(1)):,} sent, {lost.group(1)} lost ({lost.group(2)}%), "
        f"{float(qps.group(1)):,.0f} answered/s"
    )


def profile(directory: Path | None, daemons: dict[str, list[int]]) -> list[subprocess.Popen[bytes]]:
    """py-spy sampling each daemon but ddnsd (threads not idle, without pausing the process)
    until interrupted, if asked."""
    if directory is None:
        return []
    directory.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [
                *("py-spy", "record", "--pid", str(pids[0]), "--format", "raw", "--threads"),
                *("--nonblocking", "--rate", "200", "--output"),
                str(directory / f"{label.split()[-1].strip('()')}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for label, pids in daemons.items()
        if label != "ddnsd"
    ]


def pin(pids: list[int], cores: set[int]) -> None:
    """Every thread of `pids` onto `cores`; threads they start later inherit it."""
    for pid in pids:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                os.sched_setaffinity(int(task.name), cores)
            except OSError:
                pass  # ended meanwhile


def wait_for(condition: Callable[[], bool], timeout_s: float, step_s: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(step_s)
    return True


@dataclass
class Started:
    stack: contextlib.ExitStack
    sink: subprocess.Popen[bytes]
    echo: subprocess.Popen[bytes]
    echo_port: int
    dns_port: int
    dyndns2: str
    https: int
    base: Path


def start(work: Path, ca: trustme.CA, args: argparse.Namespace, notes: list[str]) -> Started:
    """The NAS stand-ins, ddnsd, relayd and the agents, each on ports free a moment before;
    again on others (at most three times) when one did not start: the other helpers' tests
    take ports on this machine too."""
    for attempt in range(1, 4):
        base = work / f"attempt-{attempt}"
        (base / "relay").mkdir(parents=True)
        (base / "dns").mkdir()
        stack = contextlib.ExitStack()
        sink, echo = servers.free_port(), servers.free_port()
        nice = ["nice", "-n", str(NICE)]
        sink_command = [*nice, sys.executable, "-c", SINK, str(sink)]
        try:
            sink_proc = stack.enter_context(
                servers.process(sink_command, None, base / "sink.log", ready="ready")
            )
            echo_proc = stack.enter_context(
                servers.process(
                    [sys.executable, "-c", ECHO, str(echo)], None, base / "echo.log", ready="ready"
                )
            )
            ddnsd = stack.enter_context(
                servers.ddnsd(base / "dns", args.names, "0,1", dyndns2=True)
            )
            https = stack.enter_context(
                relay_and_agent(
                    base / "relay",
                    ca,
                    sink,
                    echo,
                    max_tunnels_per_address=args.tunnels + 100,
                    every_listener=True,
                )
            )
        except (RuntimeError, AssertionError) as error:
            stack.close()
            logs = sorted(base.rglob("*.log")) + sorted(base.rglob("log"))
            last = {
                str(log.relative_to(base)): log.read_text(errors="replace")[-200:] for log in logs
            }
            notes.append(f"start-up attempt {attempt} failed ({error!r}); logs' ends: {last}")
            continue
        return Started(stack, sink_proc, echo_proc, echo, ddnsd[0], ddnsd[1], https, base)
    raise RuntimeError(f"nothing started in three attempts: {notes}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tunnels", type=int, default=5000)
    parser.add_argument("--holders", type=int, default=1, help="processes holding the tunnels")
    parser.add_argument(
        "--holder-nice", type=int, default=NICE, help="their nice value (the other loads: 10)"
    )
    parser.add_argument("--slowloris", type=int, default=1000, help="clients per ingress")
    parser.add_argument("--bulk", type=int, default=8, help="bulk transfers at once")
    parser.add_argument("--bulk-megabytes", type=int, default=128, help="MiB per transfer")
    parser.add_argument("--dns-qps", type=int, default=5000, help="dnsperf's fixed rate")
    parser.add_argument("--round-trips", type=int, default=300)
    parser.add_argument("--dns-queries", type=int, default=2000)
    parser.add_argument("--dns-rate", type=float, default=200, help="probe queries per second")
    parser.add_argument("--trickle-s", type=float, default=3.0)
    parser.add_argument("--names", type=int, default=1000)
    parser.add_argument(
        "--load-core",
        type=int,
        help="pin the load generators and the sink to this core, the daemons, the echo "
        "stand-in and the prober to the others (a server with cores of its own)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="with py-spy on PATH: sample relayd and the agents during the loaded measurement "
        "into this directory (collapsed stacks, one file per process)",
    )
    args = parser.parse_args()
    missing = servers.have("dnsperf", "taskset", "nice")
    if missing:
        sys.exit(f"missing {missing}: `make test` installs them")
    notes: list[str] = []
    fit_to_limits(args, notes)
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nascloud-everything-") as tmp:
        work = Path(tmp)
        ca = servers.write_certificate(work, "nas", SINK_NAME, ECHO_NAME)
        up = start(work, ca, args, notes)
        sink_proc, echo_proc, echo, dns_port, dyndns2 = (
            up.sink,
            up.echo,
            up.echo_port,
            up.dns_port,
            up.dyndns2,
        )
        https, base = up.https, up.base
        with up.stack:
            relay_dir = next((base / "relay").glob("relay-*"))
            listening = json.loads((relay_dir / "state" / "listening.json").read_text())

            def port(kind: str) -> int:
                return int(listening[kind][0].rpartition(":")[2])

            tunnel_port, http, metrics = port("tunnel"), port("http"), port("metrics")
            dyndns2_port = int(dyndns2.rpartition(":")[2])
            ddnsd_dir = base / "dns" / "ddnsd-1"
            daemons = {
                "relayd": pids_of(str(relay_dir / "relayd.toml")),
                "agent nas1 (bulk)": pids_of(str(relay_dir / "nas1.toml")),
                "agent nas2 (probed)": pids_of(str(relay_dir / "nas2.toml")),
                "ddnsd": pids_of(str(ddnsd_dir / "ddnsd.toml")),
            }
            assert all(daemons.values()), daemons
            probed = {"echo stand-in (probed)": [echo_proc.pid], "bench prober": [os.getpid()]}
            names = servers.names(args.names)
            server_cores = set(range(os.cpu_count() or 1)) - {args.load_core}
            if args.load_core is not None:
                pin(
                    [pid for pids in (*daemons.values(), *probed.values()) for pid in pids],
                    server_cores,
                )
                pin([sink_proc.pid], {args.load_core})
            probe = prober(https, echo, work / "ca.pem", dns_port, names, args)

            print(f"quiet: {args.round_trips} new connections, {args.dns_queries} DNS queries")
            quiet_cpu = Cpu({**daemons, **probed})
            quiet_cpu.begin()
            quiet = probe()
            quiet_shares = quiet_cpu.end()
            quiet_rss = {label: sum(map(rss_mib, pids)) for label, pids in daemons.items()}

            # -- the load --
            ctx = multiprocessing.get_context("fork")
            stop = ctx.Event()
            keys = [(f"idle{i:05d}", Ed25519PrivateKey.generate()) for i in range(args.tunnels)]
            enrol(relay_dir / "registry.sqlite3", keys)
            counts = ctx.RawArray("q", 4 * len(INGRESSES))
            done = ctx.Array("q", 2)
            errors = ctx.Value("q", 0)
            ingress_ports = [https, http, dyndns2_port, dns_port]
            # The tunnels split over --holders processes (one answers every keepalive of its
            # share in Python: with too many, it may answer late rather than relayd ping late).
            holders = [
                ctx.Process(
                    target=_hold_tunnels,
                    args=(
                        tunnel_port,
                        work / "ca.pem",
                        keys[i :: args.holders],
                        stop,
                        args.holder_nice,
                    ),
                    name="the tunnel holder" + (f" {i}" if args.holders > 1 else ""),
                    daemon=True,
                )
                for i in range(args.holders)
            ]
            slow = ctx.Process(
                target=_slowloris,
                args=(ingress_ports, args.slowloris, args.trickle_s, counts, stop),
                name="the slowloris process",
                daemon=True,
            )
            bulk = ctx.Process(
                target=_bulk,
                args=(https, args.bulk, args.bulk_megabytes, stop, done, errors),
                name="the bulk senders",
                daemon=True,
            )
            queries = work / "queries.txt"
            queries.write_text("".join(f"{name}.{servers.ZONE} A\n" for name in names))

            def tunnels_up() -> int:
                return int(scrape(metrics).get("nascloud_relay_tunnels", 0)) - 2  # the agents

            print(f"load: {args.tunnels} idle tunnels ...", flush=True)
            setup = time.monotonic()
            for holder in holders:
                holder.start()
            if not wait_for(
                lambda: tunnels_up() >= args.tunnels or not all(h.is_alive() for h in holders),
                60 + args.tunnels / 20,
            ):
                notes.append(f"only {tunnels_up()} of {args.tunnels} tunnels up after setup")
            if not all(h.is_alive() for h in holders):
                notes.append(f"a tunnel holder ended early ({tunnels_up()} tunnels up)")
            tunnel_setup_s = time.monotonic() - setup
            slow.start()
            bulk.start()
            dnsperf_proc = dnsperf(dns_port, queries, args.dns_qps)
            wanted = 0.8 * len(INGRESSES) * args.slowloris
            wait_for(lambda: sum(counts[4 * i + OPEN] for i in range(4)) >= wanted, 30)
            time.sleep(5)  # bulk transfers and dnsperf under way
            generators = {
                "tunnel holder": [h.pid or 0 for h in holders],
                "slowloris": [slow.pid or 0],
                "bulk senders": [bulk.pid or 0],
                "dnsperf": [dnsperf_proc.pid],
                "sink stand-in (bulk)": [sink_proc.pid],
            }
            if args.load_core is not None:
                pin([pid for pids in generators.values() for pid in pids], {args.load_core})
            loaded_cpu = Cpu({**daemons, **generators, **probed})
            held_before = [held(p) for p in ingress_ports]
            tunnels_before = tunnels_up()
            print("loaded: measuring", flush=True)
            profilers = profile(args.profile, daemons)
            loaded_cpu.begin()
            mib_before = done[0]
            loaded = probe()
            tcp_answered = dns_tcp_answers(dns_port, 20)
            mib_moved = done[0] - mib_before
            loaded_shares = loaded_cpu.end()
            for profiler in profilers:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(timeout=30)
            window_s = time.monotonic() - loaded_cpu.wall
            held_after = [held(p) for p in ingress_ports]
            tunnels_after = tunnels_up()
            opened = [counts[4 * i + OPENED] for i in range(4)]
            closed = [counts[4 * i + CLOSED_BY_DAEMON] for i in range(4)]
            failed = [counts[4 * i + CONNECT_FAILED] for i in range(4)]
            loaded_rss = {label: sum(map(rss_mib, pids)) for label, pids in daemons.items()}
            relay_metrics = scrape(metrics)
            living = {label: all(map(alive, pids)) for label, pids in daemons.items()}
            for proc in (*holders, slow, bulk):
                if not proc.is_alive():
                    notes.append(f"{proc.name} had ended before the measurement did")
            stop.set()
            dns_load = dnsperf_result(dnsperf_proc)
            for proc in (bulk, slow, *holders):
                proc.join(timeout=60)
                if proc.is_alive():
                    proc.terminate()
                    proc.join(timeout=10)
                    notes.append(f"{proc.name} did not stop within 60 s; terminated")
            # Quiet again, once relayd has let every idle tunnel go: a second baseline (this
            # machine drifts), and whether the daemons are back to their quiet figures.
            if not wait_for(lambda: tunnels_up() <= 0, 60):
                notes.append(f"{tunnels_up()} idle tunnels still up in relayd 60 s after the end")
            print("quiet again: measuring", flush=True)
            after = probe()
            after_rss = {label: sum(map(rss_mib, pids)) for label, pids in daemons.items()}
            logs = {
                "relayd": relay_dir / "relayd.log",
                "agent nas1 (bulk)": relay_dir / "nas1.log",
                "agent nas2 (probed)": relay_dir / "nas2.log",
                "ddnsd": ddnsd_dir / "log",
            }
            problems = {label: log_problems(log) for label, log in logs.items()}
    report(
        args,
        notes,
        quiet,
        loaded,
        after,
        quiet_shares,
        loaded_shares,
        {
            "load_before": load_before,
            "tunnel_setup_s": tunnel_setup_s,
            "tunnels": (tunnels_before, tunnels_after),
            "held": (held_before, held_after),
            "opened": opened,
            "closed": closed,
            "failed": failed,
            "bulk": (mib_moved, window_s, done[1], errors.value),
            "dns_load": dns_load,
            "tcp_answered": tcp_answered,
            "rss": (quiet_rss, loaded_rss, after_rss),
            "metrics": relay_metrics,
            "alive": living,
            "problems": problems,
            "elapsed_s": time.monotonic() - started,
        },
    )


Latencies = dict[str, tuple[list[float], int]]


def prober(
    https: int, echo: int, ca: Path, dns_port: int, names: list[str], args: argparse.Namespace
) -> Callable[[], Latencies]:
    """The two latencies, one after the other: new connections through relayd (each beside a
    direct one to the echo stand-in, bench/relay.py's way), then DNS queries."""

    def probe() -> Latencies:
        relayed, direct = round_trips(
            https, ECHO_NAME, ca, args.round_trips, direct=echo, plain=True, gap_s=0.02
        )
        dns, lost = dns_latencies(dns_port, names, args.dns_queries, args.dns_rate)
        return {"relayd": (relayed, 0), "direct": (direct, 0), "dns": (dns, lost)}

    return probe


def report(
    args: argparse.Namespace,
    notes: list[str],
    quiet: Latencies,
    loaded: Latencies,
    after: Latencies,
    quiet_shares: Shares,
    loaded_shares: Shares,
    facts: dict[str, Any],
) -> None:
    ms = 1e3
    print(
        f"\n== everything at once: {args.tunnels} idle tunnels, {args.slowloris} slowloris "
        f"clients per ingress, {args.bulk} bulk transfers, dnsperf at {args.dns_qps} q/s\n"
    )
    if args.load_core is not None:
        print(f"  load generators and the sink on core {args.load_core}, the rest on the others\n")
    print(
        "  p50 / p99 ms; the ratio is the loaded p99 over the lower of the two quiet p99s"
        " (before the load and after it)\n"
    )
    print(
        f"  {'latency':<44}{'quiet before':>17}{'loaded':>19}{'quiet after':>19}"
        f"{'ratio':>8}  within {TARGET_RATIO:g}x"
    )
    rows = {
        "relayd": f"new browser connection via relayd ({args.round_trips})",
        "direct": "  the same, direct to the stand-in (control)",
        "dns": f"DNS query to ddnsd over UDP ({args.dns_queries})",
    }
    summary: dict[str, Any] = {}
    for key, label in rows.items():
        figures = []
        for phase in (quiet, loaded, after):
            values = phase[key][0]
            figures.append((percentile(values, 0.5) * ms, percentile(values, 0.99) * ms))
        (q50, q99), (l50, l99), (a50, a99) = figures
        ratio = l99 / min(q99, a99)
        verdict = "yes" if ratio <= TARGET_RATIO else f"NO, {ratio / TARGET_RATIO:.1f}x over"
        if key == "direct":
            verdict = "(no target)"
        print(
            f"  {label:<44}{q50:>7.2f} / {q99:>7.2f}{l50:>9.2f} / {l99:>7.2f}"
            f"{a50:>9.2f} / {a99:>7.2f}{ratio:>8.2f}  {verdict}"
        )
        lost = [phase[key][1] for phase in (quiet, loaded, after)]
        summary[key] = {"p50_p99_ms": figures, "ratio": ratio, "lost": lost}
    print(
        f"  DNS probe queries lost (each counted as 1 s): quiet {quiet['dns'][1]}, "
        f"loaded {loaded['dns'][1]}, after {after['dns'][1]}"
    )

    held_before, held_after = facts["held"]
    print(
        f"\n  slowloris ({args.slowloris} per ingress; half trickle a byte every "
        f"{args.trickle_s:g} s, half send nothing; reconnect ~1 s after the daemon closes)\n"
    )
    print(
        f"  {'ingress':<16}{'held by daemon, start / end':>29}{'connections':>13}"
        f"{'closed by daemon':>18}{'connect failed':>16}"
    )
    for i, name in enumerate(INGRESSES):
        print(
            f"  {name:<16}{held_before[i]:>18} / {held_after[i]:<8}{facts['opened'][i]:>13}"
            f"{facts['closed'][i]:>18}{facts['failed'][i]:>16}"
        )
    mib, window_s, transfers, errors = facts["bulk"]
    before, after = facts["tunnels"]
    print(
        f"\n  idle tunnels up: {before} / {after} of {args.tunnels} (start / end of the "
        f"measurement; set up in {facts['tunnel_setup_s']:.0f} s)"
        f"\n  bulk: {mib * 8 * 1024 * 1024 / window_s / 1e9:.2f} Gbit/s through relayd during "
        f"the measurement ({transfers} transfers of {args.bulk_megabytes} MiB in all, "
        f"{errors} failed)"
        f"\n  dnsperf: {facts['dns_load']}"
        f"\n  DNS over TCP during the load: {facts['tcp_answered']} of 20 new connections answered"
    )
    print(
        "\n  CPU during the quiet / loaded measurement: % of one core, and the mean ms a"
        " thread that woke waited for a core (run queue, /proc/<pid>/task/*/schedstat)"
    )
    q_shares, q_waits, q_busy, q_others = quiet_shares
    l_shares, l_waits, l_busy, l_others = loaded_shares
    for label, share in l_shares.items():
        print(
            f"    {label:<24}{q_shares.get(label, 0):>6.0f} / {share:>4.0f} %"
            f"{q_waits.get(label, 0):>10.3f} / {l_waits[label]:.3f} ms"
        )
    print(f"    {'others on the machine':<24}{q_others:>6.0f} / {l_others:>4.0f}")
    print(
        f"    machine busy, all cores {q_busy:>5.0f}% / {l_busy:.0f}%"
        f"  (load average before: {' '.join(facts['load_before'])})"
    )
    quiet_rss, loaded_rss, after_rss = facts["rss"]
    print(
        "\n  daemons: RSS MiB quiet / loaded / after, alive at the end of the load, ERROR"
        " lines in the log"
    )
    for label in quiet_rss:
        rss = f"{quiet_rss[label]:.0f} / {loaded_rss[label]:.0f} / {after_rss[label]:.0f}"
        print(
            f"    {label:<22}{rss:>17}"
            f"{'alive' if facts['alive'][label] else 'DIED':>7}{facts['problems'][label]:>6}"
        )
    errors_metric = {k: v for k, v in facts["metrics"].items() if "handler_errors" in k}
    events = {  # relayd's counters (nascloud_relay_..._total), those that moved
        k.removeprefix("nascloud_relay_"): int(v)
        for k, v in facts["metrics"].items()
        if k.startswith("nascloud_relay_") and "_total" in k and "bytes" not in k and v
    }
    if not facts["metrics"]:
        print("    relayd's metrics did not answer within 5 s")
    print(f"    relayd handler errors: {errors_metric or 'none'}")
    print(f"    relayd counters: {json.dumps(events)}")
    for note in notes:
        print(f"\n  {note}")
    print(f"\n  ({facts['elapsed_s']:.0f} s in all)")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
