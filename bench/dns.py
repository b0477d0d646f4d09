"""DNS benchmarks, side by side in one run on loopback, printing ratios.

Queries: dnsperf (pinned to core 0) against NSD, Knot, dnslib's own DNSServer and ddnsd, each
pinned to core 1 in turn and serving the same zone of N names.
Updates: wrk with 50 connections sending DynDNS2 updates for 1,000 devices to ddnsd, while a
prober measures the time from each acknowledgement to the first answer with the new address.

Run: .venv/bin/python bench/dns.py [--seconds 10] [--names 10000]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _servers as servers

SERVER_CORE = 1
LOAD_CORE = 0


def dnsperf(port: int, queries: Path, seconds: float) -> tuple[float, float]:
    """(queries per second, share lost)."""
    out = subprocess.run(
        [
            "taskset",
            "-c",
            str(LOAD_CORE),
            "dnsperf",
            "-s",
            "127.0.0.1",
            "-p",
            str(port),
            "-d",
            str(queries),
            "-l",
            str(seconds),
            "-c",
            "8",
            "-q",
            "200",
            "-t",
            "2",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lost = re.search(r"Queries lost:\s+\d+ \(([\d.]+)%\)", out)
    return qps, float(lost.group(1)) / 100 if lost else 0.0


def query_bench(workdir: Path, count: int, seconds: float) -> dict[str, tuple[float, float]]:
    queries = workdir / "queries.txt"
    queries.write_text("".join(f"{name}.{servers.ZONE} A\n" for name in servers.names(count)))
    results: dict[str, tuple[float, float]] = {}
    contestants: list[tuple[str, Callable[[], AbstractContextManager[int]]]] = [
        ("NSD", lambda: servers.nsd(workdir, count, SERVER_CORE)),
        ("Knot", lambda: servers.knot(workdir, count, SERVER_CORE)),
        ("dnslib DNSServer", lambda: servers.dnslib_server(workdir, count, SERVER_CORE)),
    ]
    for name, start in contestants:
        with start() as port:
            dnsperf(port, queries, 1)  # warm up
            results[name] = dnsperf(port, queries, seconds)
    with servers.ddnsd(workdir, count, SERVER_CORE) as (port, _, _):
        dnsperf(port, queries, 1)
        results["ddnsd"] = dnsperf(port, queries, seconds)
    # Scaling: two worker processes over both cores, one of which dnsperf also needs.
    with servers.ddnsd(workdir, count, f"{LOAD_CORE},{SERVER_CORE}", workers=2) as (port, _, _):
        dnsperf(port, queries, 1)
        results["ddnsd, 2 workers*"] = dnsperf(port, queries, seconds)
    return results


WRK_SCRIPT = """
-- Each wrk thread runs this file in a Lua state of its own: counters are per thread and
-- done() (in the main state) sums them.
local devices = {}
for line in io.lines("%(tokens)s") do
  local name, auth = line:match("(%%S+) (%%S+)")
  devices[#devices + 1] = {name, auth}
end
local counter = 0
good, other = 0, 0
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function request()
  counter = counter + 1
  local d = devices[(counter %% #devices) + 1]
  -- RFC 2544's benchmarking range: public addresses, which ddnsd publishes (it refuses
  -- private, loopback and link-local ones by default).
  local ip = string.format("198.%%d.%%d.%%d",
                           math.random(18, 19), math.random(0, 255), math.random(1, 254))
  return wrk.format("GET", "/nic/update?hostname=" .. d[1] .. ".dyn.test&myip=" .. ip,
                    {["Authorization"] = "Basic " .. d[2]})
end

function response(status, headers, body)
  if body:sub(1, 5) == "good " or body:sub(1, 6) == "nochg " then
    good = good + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local g, o = 0, 0
  for _, thread in ipairs(threads) do
    g = g + thread:get("good")
    o = o + thread:get("other")
  end
  io.write(string.format("acknowledged %%d other %%d\\n", g, o))
end
"""


def probe_latency(
    dyndns2: str, dns_port: int, device: str, token: str, stop: threading.Event, out: list[float]
) -> None:
    """Update one device again and again; time from each acknowledgement to the first answer
    that carries the new address."""
    host, port = dyndns2.rsplit(":", 1)
    auth = base64.b64encode(f"{device}.{servers.ZONE}:{token}".encode()).decode()
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(1)
    labels = b"".join(bytes([len(p)]) + p.encode() for p in f"{device}.{servers.ZONE}".split("."))
    step = 0
    while not stop.is_set():
        step += 1
        address = f"192.0.{step // 250 % 250}.{step % 250 + 1}"
        conn.request(
            "GET",
            f"/nic/update?hostname={device}.{servers.ZONE}&myip={address}",
            headers={"Authorization": f"Basic {auth}"},
        )
        body = conn.getresponse().read()
        acked = time.perf_counter()
        if not body.startswith(b"good"):
            continue
        wanted = socket.inet_aton(address)
        while True:
            query = (
                step.to_bytes(2, "big")
                + b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"
                + labels
                + b"\x00\x00\x01\x00\x01"
            )
            sock.sendto(query, ("127.0.0.1", dns_port))
            try:
                answer = sock.recv(4096)
            except OSError:
                continue
            if answer.endswith(wanted):
                out.append(time.perf_counter() - acked)
                break
        time.sleep(0.02)


def update_bench(
    workdir: Path, seconds: float, registry_url: str | None = None
) -> tuple[float, int, int, list[float]]:
    devices = 1000
    with servers.ddnsd(workdir, devices, SERVER_CORE, dyndns2=True, registry_url=registry_url) as (
        dns_port,
        dyndns2,
        tokens,
    ):
        names = list(tokens)
        probe_device = names.pop()
        token_file = workdir / "tokens.txt"
        token_file.write_text(
            "".join(
                f"{n} {base64.b64encode(f'{n}.{servers.ZONE}:{tokens[n]}'.encode()).decode()}\n"
                for n in names
            )
        )
        script = workdir / "update.lua"
        script.write_text(WRK_SCRIPT % {"tokens": token_file})
        latencies: list[float] = []
        stop = threading.Event()
        prober = threading.Thread(
            target=probe_latency,
            args=(dyndns2, dns_port, probe_device, tokens[probe_device], stop, latencies),
        )
        prober.start()
        try:
            out = subprocess.run(
                [
                    "taskset",
                    "-c",
                    str(LOAD_CORE),
                    "wrk",
                    "-t",
                    "1",
                    "-c",
                    "50",
                    "-d",
                    f"{max(1, round(seconds))}s",
                    "-s",
                    str(script),
                    f"http://{dyndns2}/",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        finally:
            stop.set()
            prober.join()
        good, other = map(int, re.search(r"acknowledged (\d+) other (\d+)", out).groups())  # type: ignore[union-attr]
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        return rate * good / max(1, good + other), good, other, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--names", type=int, default=10_000)
    args = parser.parse_args()
    missing = servers.have("dnsperf", "nsd", "knotd", "wrk", "taskset")
    if missing:
        sys.exit(f"missing {missing}: `make test` installs them")
    with tempfile.TemporaryDirectory(prefix="nascloud-bench-") as tmp:
        workdir = Path(tmp)
        print(
            f"queries: {args.names} names, dnsperf on core {LOAD_CORE}, server on core "
            f"{SERVER_CORE}, {args.seconds:g} s each"
        )
        (workdir / "q").mkdir()
        results = query_bench(workdir / "q", args.names, args.seconds)
        ours = results["ddnsd"][0]
        for name, (qps, lost) in results.items():
            print(
                f"  {name:<20}{qps:>10.0f} q/s  lost {lost:>5.1%}   ddnsd/this {ours / qps:>6.2f}"
            )
        print(
            "  * main process and one worker, both free to use cores 0 and 1, while dnsperf "
            "runs on core 0"
        )
        (workdir / "u").mkdir()
        rate, good, other, latencies = update_bench(workdir / "u", args.seconds)
        print(
            textwrap.dedent(f"""
            updates: wrk, 50 connections, 1,000 devices, {args.seconds:g} s
              acknowledged durable updates/s: {rate:.0f} ({good} acknowledged, {other} other)""")
        )
        if latencies:
            latencies.sort()
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            print(
                f"  acknowledgement to answer: p50 {statistics.median(latencies) * 1e3:.2f} ms, "
                f"p99 {p99 * 1e3:.2f} ms over {len(latencies)} probes"
            )


if __name__ == "__main__":
    main()
