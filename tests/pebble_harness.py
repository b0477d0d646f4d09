"""Pebble, Let's Encrypt's test CA (Debian's `pebble`), on loopback for tests: its ACME API
over HTTPS with a certificate of a test CA, DNS-01 checked against the DNS server given."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class Pebble:
    directory_url: str
    management_url: str
    api_ca_file: Path  # trusts Pebble's own HTTPS (not what it issues)
    log_path: Path

    def issuing_root(self) -> bytes:
        """The root Pebble signs certificates under (a new one on every start)."""
        context = ssl.create_default_context(cafile=str(self.api_ca_file))
        with urllib.request.urlopen(f"{self.management_url}/roots/0", context=context) as r:
            return bytes(r.read())


def _probed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_pebble(directory: Path, dns_server: str, *, validity_s: int = 3600) -> Iterator[Pebble]:
    """Pebble with its certificates valid `validity_s`, validating against `dns_server`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    api_cert = ca.issue_cert("127.0.0.1", "localhost")
    api_cert.private_key_pem.write_to_path(str(directory / "pebble-api.key"))
    api_cert.cert_chain_pems[0].write_to_path(str(directory / "pebble-api.crt"))
    ca.cert_pem.write_to_path(str(directory / "pebble-api-ca.pem"))
    environment = {
        **os.environ,
        "PEBBLE_VA_NOSLEEP": "1",  # validate at once
        "PEBBLE_WFE_NONCEREJECT": "0",  # no deliberately refused nonces
        "PEBBLE_AUTHZREUSE": "0",  # every order proves its names again
    }
    log_path = directory / "pebble.log"
    for _attempt in range(5):
        # Pebble cannot be told to take port 0 and say which it got: a port is probed, and
        # another is tried if something took it before Pebble bound it.
        port, management = _probed_port(), _probed_port()
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{port}",
                "managementListenAddress": f"127.0.0.1:{management}",
                "certificate": str(directory / "pebble-api.crt"),
                "privateKey": str(directory / "pebble-api.key"),
                "httpPort": 5002,
                "tlsPort": 5001,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
                "certificateValidityPeriod": validity_s,
            }
        }
        (directory / "pebble.json").write_text(json.dumps(config))
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                ["pebble", "-config", str(directory / "pebble.json"), "-dnsserver", dns_server],
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        pebble = Pebble(
            f"https://127.0.0.1:{port}/dir",
            f"https://127.0.0.1:{management}",
            directory / "pebble-api-ca.pem",
            log_path,
        )
        if _answers(pebble, process):
            break
        process.kill()
        process.wait()
        if "address already in use" not in log_path.read_text(errors="replace"):
            raise RuntimeError(f"pebble did not start:\n{log_path.read_text()[-2000:]}")
    else:
        raise RuntimeError("pebble found no free port in five tries")
    try:
        yield pebble
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _answers(pebble: Pebble, process: subprocess.Popen[bytes]) -> bool:
    context = ssl.create_default_context(cafile=str(pebble.api_ca_file))
    deadline = time.monotonic() + 20
    while process.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(pebble.directory_url, context=context, timeout=2):
                return True
        except OSError:
            time.sleep(0.1)
    return False
