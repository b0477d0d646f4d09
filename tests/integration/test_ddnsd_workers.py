"""Worker processes on one port: each of them answers, and an update is acknowledged only once
every one has applied it. Which process answered is known by stopping (SIGSTOP) all others:
what is answered then came from the one left running."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import select
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.tsigkeyring
import dns.update
import pytest

from ddnsd._workers import APPLY_TIMEOUT_S, WORKER_ENV
from tests.ddnsd_harness import Ddnsd, DdnsdOptions, running_ddnsd

from .ddnsd_updates import http_update

SOCKETS = 24  # distinct source ports: the kernel spreads them over the workers


def ask(daemon: Ddnsd, name: str, rdtype: str = "A", source_port: int = 0) -> list[str]:
    """One UDP query from `source_port` (0: a fresh one); the answer's records."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", source_port))
        sock.settimeout(5)
        query = dns.message.make_query(name, rdtype)
        sock.sendto(query.to_wire(), ("127.0.0.1", daemon.dns_port))
        response = dns.message.from_wire(sock.recv(4096))
        return sorted(rr.to_text() for rrset in response.answer for rr in rrset)


def answers_from_many_ports(daemon: Ddnsd, name: str, rdtype: str = "A") -> list[list[str]]:
    return [ask(daemon, name, rdtype) for _ in range(SOCKETS)]


def worker_pids(daemon: Ddnsd) -> set[int]:
    out = subprocess.run(
        ["pgrep", "-f", str(daemon.config_path)], capture_output=True, text=True
    ).stdout
    return {int(p) for p in out.split()}


def socket_holders(daemon: Ddnsd) -> set[int]:
    """The processes that hold a UDP socket on ddnsd's DNS port."""
    listing = subprocess.run(
        ["ss", "-Huanp", f"sport = :{daemon.dns_port}"], capture_output=True, text=True
    ).stdout
    return {int(p) for p in re.findall(r"pid=(\d+)", listing)}


def workers(daemon: Ddnsd) -> dict[int, int]:
    """The live worker processes of `daemon`, by index: read from their environment."""
    found: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # gone meanwhile, or not ours to read
        for entry in environ:
            if entry.startswith(WORKER_ENV.encode() + b"=") and state != "Z":
                worker = json.loads(entry.split(b"=", 1)[1])
                if worker["socket"] == str(daemon.state_dir / "workers.sock"):
                    found[worker["index"]] = int(proc.name)
    return found


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.05)


def stopped(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
    except OSError:
        return False


@contextmanager
def only_running(daemon: Ddnsd, keep: int) -> Iterator[None]:
    """Every other process holding the DNS socket is stopped (SIGSTOP): what is answered
    meanwhile, `keep` answered. What reaches the others waits in their queues."""
    others = socket_holders(daemon) - {keep}
    try:
        for pid in others:
            os.kill(pid, signal.SIGSTOP)
        wait_until(lambda: all(stopped(pid) for pid in others), "the others stopped")
        yield
    finally:
        for pid in others:
            os.kill(pid, signal.SIGCONT)


def answers_of_each_process(daemon: Ddnsd, name: str, rdtype: str = "A") -> dict[int, list[str]]:
    """For each process holding the DNS socket, what it answered while it was the only one
    running (at least one query each), after checking that every query got that answer."""
    seen: dict[int, list[str]] = {}
    for pid in sorted(socket_holders(daemon)):
        for _ in range(5):  # a batch reaches this process with odds 1 - (2/3)**24 each
            sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(SOCKETS)]
            try:
                with only_running(daemon, pid):
                    for sock in sockets:
                        sock.bind(("127.0.0.1", 0))
                        query = dns.message.make_query(name, rdtype)
                        sock.sendto(query.to_wire(), ("127.0.0.1", daemon.dns_port))
                    # The first answer comes from `pid`; the others are held by the stopped.
                    alone, _, _ = select.select(sockets, [], [], 5)
                    alone_answers = [_records(sock.recv(4096)) for sock in alone]
                for sock in sockets:
                    sock.settimeout(5)
                rest = [_records(sock.recv(4096)) for sock in sockets if sock not in alone]
            finally:
                for sock in sockets:
                    sock.close()
            assert len({repr(a) for a in alone_answers + rest}) <= 1, (alone_answers, rest)
            if alone_answers:
                seen[pid] = alone_answers[0]
                break
    return seen


def _records(wire: bytes) -> list[str]:
    response = dns.message.from_wire(wire)
    return sorted(rr.to_text() for rrset in response.answer for rr in rrset)


def queued_to_worker(daemon: Ddnsd, pid: int) -> int:
    """Bytes the main process sent worker `pid` that it has not read."""
    listing = subprocess.run(["ss", "-xpH"], capture_output=True, text=True).stdout
    ours = str(daemon.state_dir / "workers.sock")
    peers = {line.split()[7] for line in listing.splitlines() if line.split()[4:5] == [ours]}
    return sum(
        int(line.split()[2])
        for line in listing.splitlines()
        if f"pid={pid}," in line and line.split()[5] in peers
    )


def test_each_process_answers_what_was_acknowledged(tmp_path: Path) -> None:
    with running_ddnsd(tmp_path, DdnsdOptions(workers=3)) as daemon:
        pids = {daemon.process.pid, *workers(daemon).values()}
        assert len(pids) == 3
        # Three processes hold a UDP socket on the one port; the kernel spreads queries.
        assert socket_holders(daemon) == pids
        for step in range(1, 4):
            address = f"198.51.100.{step}"
            assert http_update(daemon, "nas1", address) == f"good {address}"
            assert answers_of_each_process(daemon, "nas1.dyn.test") == {
                pid: [address] for pid in pids
            }
        # RFC 2136 over UDP may land on any worker: it is forwarded to the main process.
        algorithm, name, secret = daemon.tsig["nas1"].split(":")
        keyring = dns.tsigkeyring.from_text({name: (algorithm, secret)})
        for step in range(4, 7):
            update = dns.update.UpdateMessage(
                "dyn.test", keyring=keyring, keyname=dns.name.from_text(name)
            )
            update.replace("_acme-challenge.nas1", 60, "TXT", f"token-{step}")
            response = dns.query.udp(update, "127.0.0.1", port=daemon.dns_port, timeout=5)
            assert response.rcode() == dns.rcode.NOERROR
            assert (
                answers_from_many_ports(daemon, "_acme-challenge.nas1.dyn.test", "TXT")
                == [[f'"token-{step}"']] * SOCKETS
            )
    assert not worker_pids(daemon)  # the workers stop with the main process


def test_an_update_is_acknowledged_only_once_every_worker_applied_it(tmp_path: Path) -> None:
    with running_ddnsd(tmp_path, DdnsdOptions(workers=3)) as daemon:
        late = workers(daemon)[1]
        host, port = daemon.dyndns2.rsplit(":", 1)
        auth = base64.b64encode(f"nas1.dyn.test:{daemon.tokens['nas1']}".encode()).decode()
        request = (
            "GET /nic/update?hostname=nas1.dyn.test&myip=198.51.100.9 HTTP/1.1\r\n"
            f"Host: {host}\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n"
        )
        os.kill(late, signal.SIGSTOP)
        try:
            wait_until(lambda: stopped(late), "worker 1 stopped")
            with socket.create_connection((host, int(port)), timeout=5) as client:
                client.sendall(request.encode())
                # The change waits unread in the stopped worker's socket: the main process
                # has committed it and sent it on, and must now wait for that worker.
                wait_until(lambda: queued_to_worker(daemon, late) > 0, "the change sent on")
                metrics(daemon)  # the main process is not stuck: it answers other requests
                client.setblocking(False)
                with pytest.raises(BlockingIOError):
                    client.recv(4096)  # ...but not this one
                client.setblocking(True)
                os.kill(late, signal.SIGCONT)
                answer = b""
                while chunk := client.recv(4096):  # until the server closes (bounded: 5 s)
                    answer += chunk
            assert answer.decode().endswith("\r\n\r\ngood 198.51.100.9\n"), answer
            assert workers(daemon)[1] == late, f"worker 1 was ended: over {APPLY_TIMEOUT_S} s?"
        finally:
            os.kill(late, signal.SIGCONT)
        assert answers_of_each_process(daemon, "nas1.dyn.test") == {
            pid: ["198.51.100.9"] for pid in socket_holders(daemon)
        }


def metrics(daemon: Ddnsd) -> str:
    host, port = daemon.metrics.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request("GET", "/metrics")
        return connection.getresponse().read().decode()
    finally:
        connection.close()
