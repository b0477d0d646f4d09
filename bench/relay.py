"""Relay throughput, side by side in one run on loopback, printing ratios.

One TLS client (this process) sends to one TLS server (a separate process standing in for
the NAS) through each of: nothing (direct), socat, an OpenSSH reverse tunnel (`ssh -R` to a
private sshd, with its default cipher and with aes128-gcm), and relayd + nascloud-agent with
HTTPS passed through by SNI. The bytes are the same TLS stream every time; only the middle
changes.

Each path is measured twice. First with TLS ends, as a browser and the NAS would use it: on
two cores the Python TLS ends take much of the CPU the middle needs. Then with plain ends, as
iperf3 would measure a middle: a real ClientHello (relayd routes by it) and then plain bytes,
which a passthrough relay moves untouched like any others; this is the relay's own capacity.

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
from registry import Registry
from tunnel import load_or_create_key

BIN = Path(sys.executable).parent
CHUNK = 256 * 1024

# The NAS stand-ins, run as `python -c CODE PORT [CERT KEY]`. With a certificate and key they
# end TLS; without, they read the ClientHello record the client starts with and then take plain
# bytes (the plain ends). SINK counts what arrives until the client's end mark ('!') and answers
# the count; ECHO sends everything back.
_ENDS = """
import socket, ssl, sys, threading
port, tls_files = int(sys.argv[1]), sys.argv[2:4]
if tls_files:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls_files)
server = socket.create_server(("127.0.0.1", port), backlog=512)
print("ready", flush=True)
def opened(conn):
    if tls_files:
        return context.wrap_socket(conn, server_side=True)
    head = b""
    while len(head) < 5:
        head += conn.recv(5 - len(head)) or b"x" * 5
    left = int.from_bytes(head[3:5], "big")
    while left > 0:
        left -= len(conn.recv(left)) or left
    return conn
def serve_forever(serve):
    while True:
        conn, _ = server.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""

SINK = (
    _ENDS
    + """
def serve(conn):
    with opened(conn) as ends:
        total = 0
        buffer = bytearray(1 << 20)
        while True:
            n = ends.recv_into(buffer)
            if not n:
                break
            total += n
            if buffer[n - 1] == 0x21:  # the client's end mark: '!'
                break
        ends.sendall(str(total).encode())
serve_forever(serve)
"""
)

ECHO = (
    _ENDS
    + """
def serve(conn):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        with opened(conn) as ends:
            while data := ends.recv(65536):
                ends.sendall(data)
    except OSError:
        pass
serve_forever(serve)
"""
)


def client_hello(server_name: str) -> bytes:
    """The ClientHello a TLS client would send first for `server_name`."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname=server_name)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def round_trips(
    port: int,
    server_name: str,
    ca: Path,
    count: int,
    direct: int | None = None,
    host: str = "127.0.0.1",
    plain: bool = False,
    gap_s: float = 0.01,
) -> tuple[list[float], list[float]]:
    """Seconds for each of `count` new connections: TCP, TLS, and one 64-byte round trip
    (`plain`: TCP, and a ClientHello with 64 plain bytes, echoed); with `direct` (the echo
    server's own port), each one alternates with a direct one, so that the two lists saw the
    same machine (this VM's latency drifts within a run). `gap_s` apart, so that what a
    middle does after a connection (relayd asks for a ready connection's replacement 5 ms
    later) does not land on the next one and get counted against the other path."""
    context = ssl.create_default_context(cafile=str(ca))
    hello = client_hello(server_name)

    def one(target: int) -> float:
        started = time.perf_counter()
        raw = socket.create_connection((host if target == port else "127.0.0.1", target))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle on either end
        with raw:
            if plain:
                raw.sendall(hello + b"x" * 64)
                _receive_exactly(raw, 64)
            else:
                with context.wrap_socket(raw, server_hostname=server_name) as tls:
                    tls.sendall(b"x" * 64)
                    _receive_exactly(tls, 64)
        return time.perf_counter() - started

    times, beside = [], []
    for _ in range(count):
        times.append(one(port))
        time.sleep(gap_s)
        if direct is not None:
            beside.append(one(direct))
            time.sleep(gap_s)
    return sorted(times), sorted(beside or times)


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    got = b""
    while len(got) < size:
        chunk = sock.recv(size - len(got))
        if not chunk:
            raise ConnectionError(f"closed after {len(got)} of {size} bytes")
        got += chunk
    return got


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
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        return _push(tls, megabytes)


def send_plain(port: int, server_name: str, megabytes: int) -> float:
    """Seconds to push a ClientHello and then `megabytes` of plain bytes, acknowledged."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(client_hello(server_name))
        return _push(sock, megabytes)


def _push(sock: socket.socket, megabytes: int) -> float:
    """Seconds to send `megabytes` of zeros ending with the sink's end mark '!', and to get
    the sink's count back."""
    payload = b"\x00" * CHUNK
    total = megabytes * 1024 * 1024
    started = time.perf_counter()
    sent = 0
    while sent < total - CHUNK:
        sock.sendall(payload)
        sent += CHUNK
    sock.sendall(b"\x00" * (total - sent - 1) + b"!")
    answer = sock.recv(64)
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
    remote_command: str | None = None,
) -> Iterator[tuple[int, int]]:
    """An sshd on loopback and `ssh -R` into it: connections to the yielded port reach
    `target` the way they would reach a NAS behind an SSH reverse tunnel. With `link` (host,
    port), sshd listens on that port of 127.0.0.1 and ssh connects to it at `host`. With
    `remote_command`, ssh runs it instead of `-N` (no session): ssh then turns Nagle off on
    its connection, as for any session."""
    keys = work / f"ssh-{cipher or 'default'}{'-command' if remote_command else ''}"
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
            *([] if remote_command else ["-N"]),
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
            *([remote_command] if remote_command else []),
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
    max_tunnels_per_address: int = 100,
    every_listener: bool = False,
) -> Iterator[int]:
    """relayd with two devices: nas1's web service is the sink, nas2's the echo server. With
    `data_connections` off, every byte travels in the tunnel's DATA frames (the path of plain
    HTTP forwarding and install sessions); `data_pool` is relayd's `[tunnel].data_pool`. With
    `link` (host, tunnel port, data port), relayd listens on those ports of 127.0.0.1 and the
    agents connect to them at `host` (a proxy standing in for a long link). With
    `every_listener`, relayd also serves plain HTTP and metrics, on ports it picks (its
    `state/listening.json` names them)."""
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
    metrics_listen = 'metrics_listen = "127.0.0.1:0"' if every_listener else ""
    http_listen = 'http_listen = "127.0.0.1:0"' if every_listener else ""

    (directory / "relayd.toml").write_text(
        textwrap.dedent(f"""
        [relay]
        name = "relay.test"
        state_dir = "state"
        registry = "registry.sqlite3"
        {metrics_listen}
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
        {http_listen}
        [limits]
        max_tunnels_per_address = {max_tunnels_per_address}
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


PASSTHROUGH = "relayd + agent (SNI passthrough)"
NO_POOL = "relayd + agent (passthrough, no pool)"
IN_TUNNEL = "relayd + agent (in tunnel DATA)"
# The Link issue's latency reference: `ssh -R` with a remote command, so a session that turns
# Nagle off; `ssh -N` holds a new connection's first bytes about 20 to 40 ms.
SSH_SESSION = "ssh -R (session, default cipher)"
LATENCY_ONLY = (NO_POOL, SSH_SESSION)
SINK_NAME, ECHO_NAME = "nas1.link.test", "nas2.link.test"


def middles(work: Path, ca: trustme.CA, sink: int, echo: int) -> Iterator[tuple[str, int, int]]:
    """Each path in turn between this process and the NAS stand-ins `sink` and `echo`: its
    label and the ports that reach each of them (relayd's one HTTPS port routes by name)."""
    work.mkdir()
    yield "direct", sink, echo
    socat_port, socat_echo = free_port(), free_port()
    with (
        process(
            [
                "socat",
                f"TCP4-LISTEN:{socat_port},bind=127.0.0.1,fork,reuseaddr",
                f"TCP4:127.0.0.1:{sink}",
            ],
            None,
            work / "socat.log",
        ),
        process(
            [
                "socat",
                f"TCP4-LISTEN:{socat_echo},bind=127.0.0.1,fork,reuseaddr",
                f"TCP4:127.0.0.1:{echo}",
            ],
            None,
            work / "socat-echo.log",
        ),
    ):
        wait_port(socat_port)
        wait_port(socat_echo)
        yield "socat", socat_port, socat_echo
    for cipher in (None, "aes128-gcm@openssh.com"):
        with sshd_reverse(work, sink, cipher, echo) as (port, echo_port):
            yield f"ssh -R ({cipher or 'default cipher'})", port, echo_port
    with sshd_reverse(work, sink, None, echo, remote_command="sleep 3600") as (port, echo_port):
        yield SSH_SESSION, port, echo_port
    with relay_and_agent(work, ca, sink, echo) as port:
        yield PASSTHROUGH, port, port
    with relay_and_agent(work, ca, sink, echo, data_pool=0) as port:
        # The same without ready data connections: each waits for the agent's connect.
        yield NO_POOL, port, port
    with relay_and_agent(work, ca, sink, echo, data_connections=False) as port:
        yield IN_TUNNEL, port, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=1024)
    parser.add_argument("--round-trips", type=int, default=300)
    args = parser.parse_args()
    missing = [p for p in ("socat", "ssh", "ssh-keygen") if shutil.which(p) is None]
    if missing or not (shutil.which("sshd") or Path("/usr/sbin/sshd").exists()):
        sys.exit(f"missing {missing or ['sshd']}: `make test` installs them")
    ends = ("TLS", "plain")
    rates: dict[str, dict[str, float]] = {end: {} for end in ends}
    aggregate: dict[str, list[float]] = {}
    latency: dict[str, dict[str, tuple[list[float], list[float]]]] = {end: {} for end in ends}
    with tempfile.TemporaryDirectory(prefix="nascloud-relay-bench-") as tmp:
        work = Path(tmp)
        ca = write_certificate(work, "nas", SINK_NAME, ECHO_NAME)
        ca_path = work / "ca.pem"
        tls_files = [str(work / "nas.crt"), str(work / "nas.key")]
        for end in ends:
            sink, echo = free_port(), free_port()
            extra = tls_files if end == "TLS" else []
            with (
                process(
                    [sys.executable, "-c", SINK, str(sink), *extra],
                    None,
                    work / f"sink-{end}.log",
                    ready="ready",
                ),
                process(
                    [sys.executable, "-c", ECHO, str(echo), *extra],
                    None,
                    work / f"echo-{end}.log",
                    ready="ready",
                ),
            ):
                for label, sink_port, echo_port in middles(work / end, ca, sink, echo):
                    if label not in LATENCY_ONLY:
                        if end == "TLS":
                            took = send(sink_port, SINK_NAME, ca_path, args.megabytes)
                        else:
                            took = send_plain(sink_port, SINK_NAME, args.megabytes)
                        rates[end][label] = args.megabytes * 8 * 1024 * 1024 / took / 1e9
                    if end == "TLS" and label not in (*LATENCY_ONLY, IN_TUNNEL):
                        aggregate[label] = parallel(
                            sink_port, SINK_NAME, ca_path, args.megabytes // 16, 16
                        )
                    latency[end][label] = round_trips(
                        echo_port,
                        ECHO_NAME,
                        ca_path,
                        args.round_trips,
                        None if label == "direct" else echo,
                        plain=end == "plain",
                    )
    for end in ends:
        report(end, rates[end], latency[end], args.megabytes, args.round_trips)
        if end == "TLS":
            report_aggregate(aggregate)
    print(json.dumps({end: {k: round(v, 3) for k, v in rates[end].items()} for end in ends}))


def report(
    end: str,
    rates: dict[str, float],
    latency: dict[str, tuple[list[float], list[float]]],
    megabytes: int,
    count: int,
) -> None:
    best_ssh = max(v for k, v in rates.items() if k.startswith("ssh"))
    default_ssh = rates["ssh -R (default cipher)"]
    ours = rates[PASSTHROUGH]
    print(f"\n== {end} ends: one stream of {megabytes} MiB, client to a NAS stand-in\n")
    for label, rate in rates.items():
        print(f"  {label:<36}{rate:>7.2f} Gbit/s   relayd/this {ours / rate:>5.2f}")
    in_tunnel = rates[IN_TUNNEL]
    print(
        f"\n  relayd passthrough vs best ssh -R: {ours / best_ssh:.2f}x (target 2x); "
        f"vs default ssh -R: {ours / default_ssh:.2f}x"
        f"\n  relayd in-tunnel vs default ssh -R: {in_tunnel / default_ssh:.2f}x (target 1x)"
    )
    what = "TLS handshake and a 64-byte" if end == "TLS" else "ClientHello and 64 plain bytes,"
    print(
        f"\n  new connection, {what} round trip, {count} each: p50 / p99 ms;"
        "\n  added to direct connections made in turn with them (the first row: alone)\n"
    )

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(len(values) * q))] * 1e3

    added: dict[str, tuple[float, float]] = {}
    for label, (values, direct) in latency.items():
        p50, p99 = pct(values, 0.5), pct(values, 0.99)
        added[label] = p50 - pct(direct, 0.5), p99 - pct(direct, 0.99)
        extra50, extra99 = added[label]
        print(f"  {label:<38}{p50:>7.2f} / {p99:>6.2f}   p50 {extra50:+.2f}  p99 {extra99:+.2f}")
    ours50, ours99 = added[PASSTHROUGH]
    print(
        f"\n  relayd passthrough adds p50 {ours50:+.2f} ms (target +0.65, the issue's figure for"
        f" ssh -R with a session; here {added[SSH_SESSION][0]:+.2f}), p99 {ours99:+.2f} (target"
        " +3)"
    )


def report_aggregate(aggregate: dict[str, list[float]]) -> None:
    print("\n  16 TLS streams at once: aggregate Gbit/s, slowest stream / mean\n")
    ssh_aggregate = max(sum(v) for k, v in aggregate.items() if k.startswith("ssh"))
    for label, per_stream in aggregate.items():
        fairness = min(per_stream) / (sum(per_stream) / len(per_stream))
        print(f"  {label:<36}{sum(per_stream):>7.2f} Gbit/s   slowest/mean {fairness:>4.2f}")
    ours = sum(aggregate[PASSTHROUGH])
    print(f"\n  relayd aggregate vs best ssh -R: {ours / ssh_aggregate:.2f}x (target 1x)")


if __name__ == "__main__":
    main()
