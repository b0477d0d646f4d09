"""New connections through the relay when the NAS is far from it, side by side in one run.

On the real Internet the NAS's link to the relay has a round trip of tens of milliseconds,
and every step of a new browser connection that crosses it counts. This machine's kernel has
no netem, so the link is a proxy (bench/_delay.py) that delays each byte by `--delay-ms` each
way; the browser and relayd share loopback, the agent and the NAS stand-in share loopback,
and only agent <-> relay traffic (and, for the baseline, the direct connection) crosses the
link. The proxy accepts connects at once, so a design that connects on the critical path is
favoured by one round trip here.

Rows: a direct connection over the link (the floor: TCP, TLS 1.3 and one round trip); `ssh
-R` with its ssh client across the link; relayd + agent without ready data connections (the
agent connects back for each browser connection); relayd + agent with them (the default).

Run: .venv/bin/python bench/relay_wan.py [--delay-ms 10] [--connections 100]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from bench._servers import free_port, process, write_certificate
from bench.relay import ECHO, relay_and_agent, round_trips, sshd_reverse

LINK = "127.0.0.2"  # the far end of the link, as the agent and ssh see the relay


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=100)
    args = parser.parse_args()
    if shutil.which("ssh") is None or not (shutil.which("sshd") or Path("/usr/sbin/sshd").exists()):
        sys.exit("missing ssh or sshd: `make test` installs them")
    with tempfile.TemporaryDirectory(prefix="nascloud-relay-wan-") as tmp:
        work = Path(tmp)
        ca = write_certificate(work, "nas", "nas1.link.test", "nas2.link.test")
        ca_path = work / "ca.pem"
        echo = free_port()
        sshd = free_port()
        relays = {pool: (free_port(), free_port()) for pool in (0, 4)}
        linked = [echo, sshd, *(port for pair in relays.values() for port in pair)]
        delay = [
            sys.executable,
            str(Path(__file__).with_name("_delay.py")),
            "--listen",
            LINK,
            "--delay-ms",
            str(args.delay_ms),
            *map(str, linked),
        ]
        echo_server = [sys.executable, "-c", ECHO, str(echo), str(work / "nas.crt")]
        echo_server.append(str(work / "nas.key"))
        latency: dict[str, list[float]] = {}
        count = args.connections
        with (
            process(echo_server, None, work / "echo.log", ready="ready"),
            process(delay, None, work / "delay.log", ready="ready"),
        ):
            # TLS names nas2 throughout: the stand-in's certificate carries it.
            latency["direct over the link"] = round_trips(
                echo, "nas2.link.test", ca_path, count, host=LINK
            )[0]
            with sshd_reverse(work, echo, None, echo, link=(LINK, sshd)) as (_, forwarded):
                latency["ssh -R, ssh across the link"] = round_trips(
                    forwarded, "nas2.link.test", ca_path, count
                )[0]
            for pool, (tunnel, data) in relays.items():
                with relay_and_agent(
                    work, ca, echo, echo, data_pool=pool, link=(LINK, tunnel, data)
                ) as https:
                    label = f"relayd + agent, data_pool = {pool}"
                    latency[label] = round_trips(https, "nas2.link.test", ca_path, count)[0]
    floor = latency["direct over the link"]

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(len(values) * q))] * 1e3

    print(
        f"new connection + TLS + 64-byte round trip, {count} each, NAS link delayed "
        f"{args.delay_ms:g} ms each way: p50 / p99 ms, and p50 added to the direct one\n"
    )
    for label, values in latency.items():
        added = pct(values, 0.5) - pct(floor, 0.5)
        print(f"  {label:<36}{pct(values, 0.5):>8.2f} / {pct(values, 0.99):>7.2f}   {added:+8.2f}")


if __name__ == "__main__":
    main()
