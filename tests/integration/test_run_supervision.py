"""`nascloud run` restarts a daemon that fails, as systemd's Restart=on-failure would, and
Ctrl-C is a clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.stack_harness import Stack, running_stack


def _pid_of(stack: Stack, config: str) -> int | None:
    found = subprocess.run(
        ["pgrep", "-f", str(stack.state / config)], capture_output=True, text=True
    ).stdout.split()
    return int(found[0]) if found else None


def _relay_answers(stack: Stack) -> bool:
    link = stack.endpoints["demo_device"]["relay_hostname"]
    https = stack.endpoints["relay"]["https_port"]
    done = subprocess.run(
        [
            "curl",
            "-s",
            "--max-time",
            "5",
            "--cacert",
            stack.endpoints["demo_device"]["ca_cert"],
            "--resolve",
            f"{link}:{https}:127.0.0.1",
            f"https://{link}:{https}/",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return "Hello from your NAS" in done.stdout


def _until(condition: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_killed_daemon_is_restarted_and_ctrl_c_stops_cleanly(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        _until(lambda: _relay_answers(stack), 30, "the demo NAS through the relay")
        first = _pid_of(stack, "relayd.toml")
        assert first is not None
        os.kill(first, signal.SIGKILL)
        _until(lambda: _pid_of(stack, "relayd.toml") not in (None, first), 15, "relayd's restart")
        # The agent finds the new relayd by itself, within its backoff.
        _until(lambda: _relay_answers(stack), 30, "the demo NAS through the new relayd")
    # Ctrl-C (SIGINT to nascloud run) stopped every daemon, and said nothing of a failure.
    assert stack.returncode == 0, stack.output
    assert "relayd failed (signal 9); restarting it" in stack.output
    assert "stopping the stack" not in stack.output and "Traceback" not in stack.output
    for config in ("ddnsd.toml", "relayd.toml", "agent.toml", "new-nas.toml"):
        assert _pid_of(stack, config) is None, config
