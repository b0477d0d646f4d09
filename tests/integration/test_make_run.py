"""Tried as a new user would: a clean clone, `make run` in the background, then every command
it prints, run as printed in a shell (curl through the relay, DynDNS2, dig, the lookup API,
the install site, the access log, metrics, nsupdate)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from nascloud._run import PORTS
from tests.stack_harness import free_port_range

ROOT = Path(__file__).resolve().parents[2]


def printed_commands(output: str) -> list[str]:
    """The shell blocks between "Try:" and the closing line, comments removed."""
    body = output.split("Try:", 1)[1].split("The same endpoints are in", 1)[0]
    blocks = []
    for block in re.split(r"\n\s*\n", body):
        lines = [line for line in block.splitlines() if not line.strip().startswith("#")]
        if any(line.strip() for line in lines):
            blocks.append("\n".join(lines))
    return blocks


def test_make_run_from_a_clean_clone_does_what_it_prints(tmp_path: Path) -> None:
    clone = tmp_path / "nascloud"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    state = tmp_path / "var"
    base_port = free_port_range(PORTS)
    log_path = tmp_path / "make-run.log"
    environment = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    with log_path.open("wb") as log:
        make = subprocess.Popen(
            ["make", "run", f"STATE_DIR={state}", f"BASE_PORT={base_port}"],
            cwd=clone,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C goes to the whole group, as in a terminal
            env=environment,
        )
    try:
        deadline = time.monotonic() + 300  # the first run builds the clone's own venv
        while "Ctrl-C stops" not in log_path.read_text(errors="replace"):
            assert make.poll() is None, log_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "make run did not come up"
            time.sleep(0.5)
        endpoints = json.loads((state / "endpoints.json").read_text())
        assert endpoints["dns"] == {"host": "127.0.0.1", "port": base_port}
        assert endpoints["install"]["url"].startswith("https://install.")
        # The demo NAS's certificate came from the local ACME CA (Pebble), through the tunnel:
        # the printed curl trusts Pebble's root for it, not the development CA.
        assert endpoints["acme"]["root_cert"] is not None
        assert endpoints["demo_device"]["ca_cert"] == endpoints["acme"]["root_cert"]
        # relayd got its install site's certificate from Pebble by itself.
        assert endpoints["install"]["ca_cert"] == endpoints["acme"]["root_cert"]
        commands = printed_commands(log_path.read_text())
        assert len(commands) >= 7, commands
        outputs = []
        for command in commands:
            for _attempt in range(50):  # the agents may still be connecting
                done = subprocess.run(
                    ["bash", "-c", "set -eo pipefail\n" + command],
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                if done.returncode == 0 and "HTTP/1.1 404" not in done.stdout:
                    break
                time.sleep(0.2)
            assert done.returncode == 0, (command, done.stdout, done.stderr)
            outputs.append(done.stdout)
        everything = "\n".join(outputs)
        assert "Hello from your NAS" in everything  # through the relay
        assert "good 198.51.100.7" in everything  # DynDNS2
        assert re.search(
            r"^demo\.dyn\.localhost\.\s+\d+\s+IN\s+A\s+198\.51\.100\.7$", everything, re.M
        )
        assert '"online": true' in everything  # the lookup API
        assert "Your NAS is on this network" in everything  # the install site, same network
        assert "Your NAS was found" in everything  # and from elsewhere
        assert "nascloud_relay_tunnels 1" in everything
        # The demo owner signed in to the portal and saw the demo NAS there.
        assert endpoints["portal"]["url"].startswith("http://localhost:")  # passkeys need a name
        assert "https://demo.link.localhost/" in everything
        assert '"code": "' in everything  # the NAS waiting to be paired shows its code
    finally:
        os.killpg(make.pid, signal.SIGINT)
        try:
            make.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
    assert "Traceback" not in log_path.read_text(errors="replace")
