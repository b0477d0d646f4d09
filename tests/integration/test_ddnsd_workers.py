"""Worker processes on one port: once an update is acknowledged, every worker answers it."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import dns.message
import dns.query
import dns.rcode

from ddnsd._workers import WORKER_ENV
from tests.ddnsd_harness import Ddnsd, DdnsdOptions, running_ddnsd

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


def test_every_worker_answers_an_update_as_soon_as_it_is_acknowledged(tmp_path: Path) -> None:
    from .ddnsd_updates import http_update

    with running_ddnsd(tmp_path, DdnsdOptions(workers=3)) as daemon:
        pids = worker_pids(daemon)
        assert len(pids) == 3
        # Three processes hold a UDP socket on the one port; the kernel spreads queries.
        listing = subprocess.run(
            ["ss", "-Huanp", f"sport = :{daemon.dns_port}"], capture_output=True, text=True
        ).stdout
        assert {int(p) for p in re.findall(r"pid=(\d+)", listing)} == pids
        for step in range(1, 6):
            address = f"198.51.100.{step}"
            assert http_update(daemon, "nas1", address) == f"good {address}"
            assert answers_from_many_ports(daemon, "nas1.dyn.test") == [[address]] * SOCKETS
        # RFC 2136 over UDP may land on any worker: it is forwarded to the main process.
        for step in range(6, 10):
            algorithm, name, secret = daemon.tsig["nas1"].split(":")
            import dns.name
            import dns.tsigkeyring
            import dns.update

            keyring = dns.tsigkeyring.from_text({name: (algorithm, secret)})
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
