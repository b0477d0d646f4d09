"""relayd under a service manager: READY once listening, RELOADING/READY around a SIGHUP
reload that re-reads certificates, a broken config kept out, STOPPING on SIGTERM."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import trio
import trustme

from tests.relay_harness import prepare, relay_toml

BIN = Path(sys.executable).parent


def relay_certificate(port: int) -> str:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="relay.test") as tls,
    ):
        return hashlib.sha256(tls.getpeercert(binary_form=True) or b"").hexdigest()


def test_notifications_and_reload(tmp_path: Path) -> None:
    ca: trustme.CA = trio.run(prepare, tmp_path)
    (tmp_path / "relayd.toml").write_text(relay_toml())
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(20)
    with (tmp_path / "relayd.log").open("wb") as log:
        relayd = subprocess.Popen(
            [str(BIN / "relayd"), "--config", str(tmp_path / "relayd.toml")],
            env={**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify")},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        assert notify.recv(4096) == b"READY=1"
        # Listening by then: the port answers at once.
        port = int(
            json.loads((tmp_path / "relay" / "listening.json").read_text())["tunnel"][0].rsplit(
                ":", 1
            )[1]
        )
        before = relay_certificate(port)

        # A new certificate, then SIGHUP: RELOADING with the time, then READY again.
        cert = ca.issue_cert("relay.test")
        cert.private_key_pem.write_to_path(str(tmp_path / "relay.key"))
        cert.cert_chain_pems[0].write_to_path(str(tmp_path / "relay.crt"))
        relayd.send_signal(signal.SIGHUP)
        reloading = notify.recv(4096).decode().split("\n")
        assert reloading[0] == "RELOADING=1" and reloading[1].startswith("MONOTONIC_USEC=")
        assert notify.recv(4096) == b"READY=1"
        after = relay_certificate(port)
        assert after != before

        # A broken config is refused and the running one stays.
        good = (tmp_path / "relayd.toml").read_text()
        (tmp_path / "relayd.toml").write_text(good.replace('name = "relay.test"', "name = 5"))
        relayd.send_signal(signal.SIGHUP)
        assert notify.recv(4096).startswith(b"RELOADING=1")
        assert notify.recv(4096) == b"READY=1"
        assert relay_certificate(port) == after
        time.sleep(0.2)
        assert (
            "reload refused, the running configuration stays"
            in (tmp_path / "relayd.log").read_text()
        )
        assert (
            "[relay].name: expected a string, got an integer 5"
            in (tmp_path / "relayd.log").read_text()
        )

        relayd.send_signal(signal.SIGTERM)
        assert notify.recv(4096) == b"STOPPING=1"
        assert relayd.wait(timeout=20) == 0
    finally:
        if relayd.poll() is None:
            relayd.kill()
            relayd.wait()
        notify.close()
