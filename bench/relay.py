"""Relay throughput, side by side in one run on loopback, printing ratios.

One TLS client (this process) sends to one TLS server (a separate process standing in for
the NAS) through each of: nothing (direct), socat, an OpenSSH reverse tunnel (`ssh -R` to a
private sshd, with its default cipher and with aes128-gcm), and relayd + nascloud-agent with
HTTPS passed through by SNI. The bytes are the same TLS stream every time; only the middle
changes.

Run: .venv/bin/python bench/relay.py [--megabytes 1024]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio
import trustme

from bench._servers import free_port, process, wait_port, write_certificate
from protocol import public_key_bytes
from protocol.keys import load_or_create_key
from registry import Registry

BIN = Path(sys.executable).parent
CHUNK = 256 * 1024

SINK = """
import socket, ssl, sys, threading
port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)
server = socket.create_server(("127.0.0.1", port))
print("ready", flush=True)
def serve(conn):
    with context.wrap_socket(conn, server_side=True) as tls:
        total = 0
        buffer = bytearray(1 << 20)
        while True:
            n = tls.recv_into(buffer)
            if not n:
                break
            total += n
            if buffer[n - 1] == 0x21 and total >= 9:  # the client's end mark: '!'
                break
        tls.sendall(str(total).encode())
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


ECHO = """
import socket, ssl, sys, threading
port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)
server = socket.create_server(("127.0.0.1", port), backlog=512)
print("ready", flush=True)
def serve(conn):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        with context.wrap_socket(conn, server_side=True) as tls:
            while data := tls.recv(65536):
                tls.sendall(data)
    except OSError:
        pass
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


def round_trips(
    port: int,
    server_name: str,
    ca: Path,
    count: int,
    direct: int | None = None,
    host: str = "127.0.0.1",
) -> tuple[list[float], list[float]]:
    """Seconds for each of `count` new connections: TCP, TLS, and one 64-byte round trip;
    with `direct` (the echo server's own port), each one alternates with a direct one, so
    that the two lists saw the same machine (this VM's latency drifts within a run)."""
    context = ssl.create_default_context(cafile=str(ca))

    def one(target: int) -> float:
        started = time.perf_counter()
        raw = socket.create_connection((host if target == port else "127.0.0.1", target))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle on either end
        with raw, context.wrap_socket(raw, server_hostname=server_name) as tls:
            tls.sendall(b"x" * 64)
            got = b""
            while len(got) < 64:
                got += tls.recv(64)
        return time.perf_counter() - started

    times, beside = [], []
    for _ in range(count):
        times.append(one(port))
        if direct is not None:
            beside.append(one(direct))
    return sorted(times), sorted(beside or times)


def parallel(port: int, server_name: str, ca: Path, megabytes: int, streams: int) -> list[float]:
    """Gbit/s of each of `streams` connections sending `megabytes` each at the same time."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(streams) as pool:
        futures = [pool.submit(send, port, server_name, ca, megabytes) for _ in range(streams)]
        elapsed = [f.result() for f in futures]
    return [megabytes * 8 * 1024 * 1024 / t / 1e9 for t in elapsed]


def send(port: int, server_name: str, ca: Path, megabytes: int) -> float:
    """Seconds to push `megabytes` through a TLS connection and have them acknowledged."""
    context = ssl.create_default_context(cafile=str(ca))
    payload = b"\x00" * CHUNK
    total = megabytes * 1024 * 1024
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        started = time.perf_counter()
        sent = 0
        while sent < total - CHUNK:
            tls.sendall(payload)
            sent += CHUNK
        tls.sendall(b"\x00" * (total - sent - 1) + b"!")
        answer = tls.recv(64)
        elapsed = time.perf_counter() - started
    assert int(answer) == total, answer
    return elapsed


@contextmanager
def sshd_reverse(
    work: Path,
    target: int,
    cipher: str | None,
    echo_target: int,
    link: tuple[str, int] | None = None,
) -> Iterator[tuple[int, int]]:
    """An sshd on loopback and `ssh -R` into it: connections to the yielded port reach
    `target` the way they would reach a NAS behind an SSH reverse tunnel. With `link` (host,
    port), sshd listens on that port of 127.0.0.1 and ssh connects to it at `host`."""
    keys = work / f"ssh-{cipher or 'default'}"
    keys.mkdir()
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "host")], check=True
    )
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "user")], check=True
    )
    shutil.copy(keys / "user.pub", keys / "authorized_keys")
    sshd_port, forwarded, echo_forwarded = free_port(), free_port(), free_port()
    ssh_host = "127.0.0.1"
    if link is not None:
        ssh_host, sshd_port = link
    (keys / "sshd_config").write_text(
        textwrap.dedent(f"""
        Port {sshd_port}
        ListenAddress 127.0.0.1
        HostKey {keys}/host
        AuthorizedKeysFile {keys}/authorized_keys
        PidFile {keys}/sshd.pid
        PermitRootLogin yes
        StrictModes no
        UsePAM no
        AllowTcpForwarding yes
    """)
    )
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    with process([sshd, "-D", "-e", "-f", str(keys / "sshd_config")], None, keys / "sshd.log"):
        wait_port(sshd_port)
        options = ["-c", cipher] if cipher else []
        ssh = [
            "ssh",
            "-N",
            "-i",
            str(keys / "user"),
            "-p",
            str(sshd_port),
            *options,
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ExitOnForwardFailure=yes",
            "-R",
            f"127.0.0.1:{forwarded}:127.0.0.1:{target}",
            "-R",
            f"127.0.0.1:{echo_forwarded}:127.0.0.1:{echo_target}",
            f"root@{ssh_host}",
        ]
        with process(ssh, None, keys / "ssh.log"):
            wait_port(forwarded)
            wait_port(echo_forwarded)
            yield forwarded, echo_forwarded


@contextmanager
def relay_and_agent(
    work: Path,
    ca: trustme.CA,
    target: int,
    echo_target: int,
    data_connections: bool = True,
    data_pool: int = 4,
    link: tuple[str, int, int] | None = None,
) -> Iterator[int]:
    """relayd with two devices: nas1's web service is the sink, nas2's the echo server. With
    `data_connections` off, every byte travels in the tunnel's DATA frames (the path of plain
    HTTP forwarding and install sessions); `data_pool` is relayd's `[tunnel].data_pool`. With
    `link` (host, tunnel port, data port), relayd listens on those ports of 127.0.0.1 and the
    agents connect to them at `host` (a proxy standing in for a long link)."""
    directory = work / f"relay-{data_connections}-{data_pool}"
    directory.mkdir()
    write_certificate(directory, "relay", "relay.test", ca=ca)
    devices = {"nas1": target, "nas2": echo_target}
    keys = {d: load_or_create_key(directory / f"{d}.key") for d in devices}

    async def enrol() -> None:
        registry = Registry.open_sqlite(directory / "registry.sqlite3")
        owner = await registry.create_account("bench@example.org", "Bench")
        for device, key in keys.items():
            await registry.enrol_device(owner.account_id, device, public_key_bytes(key))
        await registry.aclose()

    trio.run(enrol)
    tunnel, https = free_port(), free_port()
    agents_reach = "127.0.0.1"
    data_listen = ""
    if link is not None:
        agents_reach, tunnel, data = link
        data_listen = f'data_listen = "127.0.0.1:{data}"'

    (directory / "relayd.toml").write_text(
        textwrap.dedent(f"""
        [relay]
        name = "relay.test"
        state_dir = "state"
        registry = "registry.sqlite3"
        [tunnel]
        listen = "127.0.0.1:{tunnel}"
        cert_file = "relay.crt"
        key_file = "relay.key"
        data_connections = {"true" if data_connections else "false"}
        data_pool = {data_pool}
        {data_listen}
        [ingress]
        link_zone = "link.test"
        https_listen = "127.0.0.1:{https}"
        [limits]
        max_tunnels_per_address = 100
    """)
    )
    for device, port in devices.items():
        (directory / f"{device}.toml").write_text(
            textwrap.dedent(f"""
            [agent]
            device_name = "{device}"
            key_file = "{device}.key"
            state_dir = "agent-{device}"
            [relay]
            addresses = ["{agents_reach}:{tunnel}"]
            server_name = "relay.test"
            ca_file = "ca.pem"
            [services]
            web = "127.0.0.1:{port}"
        """)
        )
    relayd = [str(BIN / "relayd"), "--config", str(directory / "relayd.toml")]
    agent = str(BIN / "nascloud-agent")
    with (
        process(relayd, None, directory / "relayd.log"),
        process([agent, "--config", str(directory / "nas1.toml")], None, directory / "nas1.log"),
        process([agent, "--config", str(directory / "nas2.toml")], None, directory / "nas2.log"),
    ):
        wait_port(https)
        deadline = time.monotonic() + 20
        while not all("tunnel up" in (directory / f"{d}.log").read_text() for d in devices):
            if time.monotonic() > deadline:
                raise RuntimeError("the agents did not connect")
            time.sleep(0.05)
        yield https


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=1024)
    parser.add_argument("--round-trips", type=int, default=300)
    args = parser.parse_args()
    missing = [p for p in ("socat", "ssh", "ssh-keygen") if shutil.which(p) is None]
    if missing or not (shutil.which("sshd") or Path("/usr/sbin/sshd").exists()):
        sys.exit(f"missing {missing or ['sshd']}: `make test` installs them")
    with tempfile.TemporaryDirectory(prefix="nascloud-relay-bench-") as tmp:
        work = Path(tmp)
        ca = write_certificate(work, "nas", "nas1.link.test", "nas2.link.test")
        nas_port = free_port()
        results: dict[str, float] = {}
        aggregate: dict[str, list[float]] = {}
        latency: dict[str, tuple[list[float], list[float]]] = {}
        name = "nas1.link.test"
        echo_port = free_port()
        ca_path = work / "ca.pem"

        def measure(label: str, sink_port: int, echo: int) -> None:
            results[label] = send(sink_port, name, ca_path, args.megabytes)
            aggregate[label] = parallel(sink_port, name, ca_path, args.megabytes // 16, 16)
            direct = echo_port if echo != echo_port else None
            latency[label] = round_trips(echo, name, ca_path, args.round_trips, direct)

        with (
            process(
                [
                    sys.executable,
                    "-c",
                    SINK,
                    str(nas_port),
                    str(work / "nas.crt"),
                    str(work / "nas.key"),
                ],
                None,
                work / "sink.log",
                ready="ready",
            ),
            process(
                [
                    sys.executable,
                    "-c",
                    ECHO,
                    str(echo_port),
                    str(work / "nas.crt"),
                    str(work / "nas.key"),
                ],
                None,
                work / "echo.log",
                ready="ready",
            ),
        ):
            measure("direct", nas_port, echo_port)
            socat_port, socat_echo = free_port(), free_port()
            with (
                process(
                    [
                        "socat",
                        f"TCP4-LISTEN:{socat_port},bind=127.0.0.1,fork,reuseaddr",
                        f"TCP4:127.0.0.1:{nas_port}",
                    ],
                    None,
                    work / "socat.log",
                ),
                process(
                    [
                        "socat",
                        f"TCP4-LISTEN:{socat_echo},bind=127.0.0.1,fork,reuseaddr",
                        f"TCP4:127.0.0.1:{echo_port}",
                    ],
                    None,
                    work / "socat-echo.log",
                ),
            ):
                wait_port(socat_port)
                wait_port(socat_echo)
                measure("socat", socat_port, socat_echo)
            for cipher in (None, "aes128-gcm@openssh.com"):
                with sshd_reverse(work, nas_port, cipher, echo_port) as (port, echo):
                    measure(f"ssh -R ({cipher or 'default cipher'})", port, echo)
            with relay_and_agent(work, ca, nas_port, echo_port) as port:
                label = "relayd + agent (SNI passthrough)"
                results[label] = send(port, name, ca_path, args.megabytes)
                aggregate[label] = parallel(port, name, ca_path, args.megabytes // 16, 16)
                # The echo server stands behind a second device, nas2.
                latency[label] = round_trips(
                    port, "nas2.link.test", ca_path, args.round_trips, echo_port
                )
            with relay_and_agent(work, ca, nas_port, echo_port, data_pool=0) as port:
                # The same without ready data connections: each waits for the agent's connect.
                label = "relayd + agent (passthrough, no pool)"
                latency[label] = round_trips(
                    port, "nas2.link.test", ca_path, args.round_trips, echo_port
                )
            with relay_and_agent(work, ca, nas_port, echo_port, data_connections=False) as port:
                label = "relayd + agent (in tunnel DATA)"
                results[label] = send(port, name, ca_path, args.megabytes)
                latency[label] = round_trips(
                    port, "nas2.link.test", ca_path, args.round_trips, echo_port
                )
    rates = {k: args.megabytes * 8 * 1024 * 1024 / v / 1e9 for k, v in results.items()}
    best_ssh = max(v for k, v in rates.items() if k.startswith("ssh"))
    default_ssh = rates["ssh -R (default cipher)"]
    ours = rates["relayd + agent (SNI passthrough)"]
    print(f"one TLS stream of {args.megabytes} MiB, client to a NAS stand-in, on loopback\n")
    for label, rate in rates.items():
        print(f"  {label:<36}{rate:>7.2f} Gbit/s   relayd/this {ours / rate:>5.2f}")
    in_tunnel = rates["relayd + agent (in tunnel DATA)"]
    print(
        f"\n  relayd passthrough vs best ssh -R: {ours / best_ssh:.2f}x (target 2x); "
        f"vs default ssh -R: {ours / default_ssh:.2f}x"
        f"\n  relayd in-tunnel vs default ssh -R: {in_tunnel / default_ssh:.2f}x (target 1x)"
    )
    print("\n16 streams at once: aggregate Gbit/s, slowest stream / mean\n")
    ssh_aggregate = max(sum(v) for k, v in aggregate.items() if k.startswith("ssh"))
    for label, per_stream in aggregate.items():
        fairness = min(per_stream) / (sum(per_stream) / len(per_stream))
        print(f"  {label:<36}{sum(per_stream):>7.2f} Gbit/s   slowest/mean {fairness:>4.2f}")
    ours_aggregate = sum(aggregate["relayd + agent (SNI passthrough)"])
    print(f"\n  relayd aggregate vs best ssh -R: {ours_aggregate / ssh_aggregate:.2f}x (target 1x)")
    print(
        f"\nnew connection + TLS + 64-byte round trip, {args.round_trips} each: p50 / p99 ms;"
        "\nadded to direct connections made in turn with them (the first row: alone)\n"
    )

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(len(values) * q))] * 1e3

    for label, (values, direct) in latency.items():
        p50, p99 = pct(values, 0.5), pct(values, 0.99)
        extra50, extra99 = p50 - pct(direct, 0.5), p99 - pct(direct, 0.99)
        print(f"  {label:<38}{p50:>7.2f} / {p99:>6.2f}   p50 {extra50:+.2f}  p99 {extra99:+.2f}")
    print(json.dumps({k: round(v, 3) for k, v in rates.items()}))


if __name__ == "__main__":
    main()
