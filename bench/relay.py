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
import signal
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

from bench._servers import free_port
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
def running(
    command: list[str], log: Path, ready: str | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE if ready else out, stderr=out)
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


def wait_port(port: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@contextmanager
def sshd_reverse(work: Path, target: int, cipher: str | None) -> Iterator[int]:
    """An sshd on loopback and `ssh -R` into it: connections to the yielded port reach
    `target` the way they would reach a NAS behind an SSH reverse tunnel."""
    keys = work / f"ssh-{cipher or 'default'}"
    keys.mkdir()
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "host")], check=True
    )
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "user")], check=True
    )
    shutil.copy(keys / "user.pub", keys / "authorized_keys")
    sshd_port, forwarded = free_port(), free_port()
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
    with running([sshd, "-D", "-e", "-f", str(keys / "sshd_config")], keys / "sshd.log"):
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
            "root@127.0.0.1",
        ]
        with running(ssh, keys / "ssh.log"):
            wait_port(forwarded)
            yield forwarded


@contextmanager
def relay_and_agent(work: Path, ca: trustme.CA, target: int) -> Iterator[int]:
    directory = work / "relay"
    directory.mkdir()
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    cert = ca.issue_cert("relay.test")
    cert.private_key_pem.write_to_path(str(directory / "relay.key"))
    cert.cert_chain_pems[0].write_to_path(str(directory / "relay.crt"))
    key = load_or_create_key(directory / "device.key")

    async def enrol() -> None:
        registry = Registry.open_sqlite(directory / "registry.sqlite3")
        owner = await registry.create_account("bench@example.org", "Bench")
        await registry.enrol_device(owner.account_id, "nas1", public_key_bytes(key))
        await registry.aclose()

    trio.run(enrol)
    tunnel, https = free_port(), free_port()
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
        [ingress]
        link_zone = "link.test"
        https_listen = "127.0.0.1:{https}"
    """)
    )
    (directory / "agent.toml").write_text(
        textwrap.dedent(f"""
        [agent]
        device_name = "nas1"
        key_file = "device.key"
        state_dir = "agent"
        [relay]
        addresses = ["127.0.0.1:{tunnel}"]
        server_name = "relay.test"
        ca_file = "ca.pem"
        [services]
        web = "127.0.0.1:{target}"
    """)
    )
    with running(
        [str(BIN / "relayd"), "--config", str(directory / "relayd.toml")], directory / "relayd.log"
    ):
        wait_port(https)
        with running(
            [str(BIN / "nascloud-agent"), "--config", str(directory / "agent.toml")],
            directory / "agent.log",
        ):
            deadline = time.monotonic() + 20
            while "tunnel up" not in (directory / "agent.log").read_text():
                if time.monotonic() > deadline:
                    raise RuntimeError("the agent did not connect")
                time.sleep(0.05)
            yield https


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=1024)
    args = parser.parse_args()
    missing = [p for p in ("socat", "ssh", "ssh-keygen") if shutil.which(p) is None]
    if missing or not (shutil.which("sshd") or Path("/usr/sbin/sshd").exists()):
        sys.exit(f"missing {missing or ['sshd']}: `make test` installs them")
    with tempfile.TemporaryDirectory(prefix="nascloud-relay-bench-") as tmp:
        work = Path(tmp)
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(work / "ca.pem"))
        nas_cert = ca.issue_cert("nas1.link.test")
        nas_cert.private_key_pem.write_to_path(str(work / "nas.key"))
        nas_cert.cert_chain_pems[0].write_to_path(str(work / "nas.crt"))
        nas_port = free_port()
        results: dict[str, float] = {}
        name = "nas1.link.test"
        with running(
            [
                sys.executable,
                "-c",
                SINK,
                str(nas_port),
                str(work / "nas.crt"),
                str(work / "nas.key"),
            ],
            work / "sink.log",
            ready="ready",
        ):
            results["direct"] = send(nas_port, name, work / "ca.pem", args.megabytes)
            socat_port = free_port()
            with running(
                [
                    "socat",
                    f"TCP4-LISTEN:{socat_port},bind=127.0.0.1,fork,reuseaddr",
                    f"TCP4:127.0.0.1:{nas_port}",
                ],
                work / "socat.log",
            ):
                wait_port(socat_port)
                results["socat"] = send(socat_port, name, work / "ca.pem", args.megabytes)
            for cipher in (None, "aes128-gcm@openssh.com"):
                with sshd_reverse(work, nas_port, cipher) as port:
                    label = f"ssh -R ({cipher or 'default cipher'})"
                    results[label] = send(port, name, work / "ca.pem", args.megabytes)
            with relay_and_agent(work, ca, nas_port) as port:
                results["relayd + agent (SNI passthrough)"] = send(
                    port, name, work / "ca.pem", args.megabytes
                )
    rates = {k: args.megabytes * 8 * 1024 * 1024 / v / 1e9 for k, v in results.items()}
    best_ssh = max(v for k, v in rates.items() if k.startswith("ssh"))
    default_ssh = rates["ssh -R (default cipher)"]
    ours = rates["relayd + agent (SNI passthrough)"]
    print(f"one TLS stream of {args.megabytes} MiB, client to a NAS stand-in, on loopback\n")
    for label, rate in rates.items():
        print(f"  {label:<36}{rate:>7.2f} Gbit/s   relayd/this {ours / rate:>5.2f}")
    print(
        f"\n  relayd passthrough vs best ssh -R: {ours / best_ssh:.2f}x (target 2x); "
        f"vs default ssh -R: {ours / default_ssh:.2f}x"
    )
    print(json.dumps({k: round(v, 3) for k, v in rates.items()}))


if __name__ == "__main__":
    main()
