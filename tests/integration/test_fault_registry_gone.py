"""The registry is gone (its file deleted, its file system unmounted, the file not a database):
ddnsd acknowledges nothing more, and ends (relayd too) with one clear line and exit code 3, for
systemd to start it again, rather than answering 911 and SERVFAIL forever or dying of a traceback.
A full disk or a lock held is not "gone": those heal (test_fault_disk_full)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import trio

from ddnsd._daemon import DEVICE_SYNC_INTERVAL_S
from service import EXIT_REGISTRY_GONE
from tests import relay_harness
from tests.ddnsd_harness import BIN, Ddnsd, prepare, start, stop

from .ddnsd_updates import http_update
from .test_fault_disk_full import small_disk

# Noticed at the next registry call, or at the device list's next reading at the latest.
BOUND_S = DEVICE_SYNC_INTERVAL_S + 5


def ended(daemon: Ddnsd) -> int:
    try:
        return daemon.process.wait(timeout=BOUND_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"ddnsd still runs:\n{daemon.log()}") from None


def one_clear_line(log: str, why: str) -> None:
    lines = [line for line in log.splitlines() if "the registry is gone" in line]
    assert len(lines) == 1, log
    assert (
        lines[0].startswith("CRITICAL ddnsd: stopping: the registry is gone: ") and why in lines[0]
    )
    assert "Traceback" not in log, log  # what found it gone said so in a line, too


@pytest.mark.parametrize("update_first", [True, False], ids=["an update finds it", "idle"])
def test_a_deleted_registry_ends_ddnsd(tmp_path: Path, update_first: bool) -> None:
    prepare(tmp_path)
    daemon = start(tmp_path)
    try:
        assert http_update(daemon, "nas1", "198.51.100.1") == "good 198.51.100.1"
        daemon.registry_path.unlink()  # SQLite would go on writing to the deleted file
        if update_first:
            assert http_update(daemon, "nas1", "198.51.100.2") == "911"
        assert ended(daemon) == EXIT_REGISTRY_GONE
    finally:
        stop(daemon)
    one_clear_line(daemon.log(), "no such file (deleted, or its file system unmounted)")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_an_unmounted_registry_ends_ddnsd(tmp_path: Path) -> None:
    with small_disk(tmp_path / "state", "8m"):
        prepare(tmp_path)
        daemon = start(tmp_path)
        try:
            assert http_update(daemon, "nas1", "198.51.100.1") == "good 198.51.100.1"
            # Lazily, as an operator's umount -l does when the file is open: ddnsd's open
            # descriptor keeps working, the path no longer leads to it.
            subprocess.run(["umount", "-l", str(tmp_path / "state")], check=True)
            try:
                assert ended(daemon) == EXIT_REGISTRY_GONE
            finally:
                (tmp_path / "state").mkdir(exist_ok=True)  # for small_disk's umount
                subprocess.run(
                    ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(tmp_path / "state")],
                    check=True,
                )
        finally:
            stop(daemon)
    one_clear_line(daemon.log(), "no such file")


def test_a_registry_that_is_not_a_database_ends_ddnsd_at_start(tmp_path: Path) -> None:
    prepare(tmp_path)
    registry = tmp_path / "state" / "registry.sqlite3"
    registry.write_bytes(b"this is not a SQLite database, whatever its name says\n" * 100)
    started = time.monotonic()
    done = subprocess.run(
        [str(BIN / "ddnsd"), "--config", str(tmp_path / "ddnsd.toml")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
    )
    assert done.returncode == EXIT_REGISTRY_GONE, done.stdout + done.stderr
    assert time.monotonic() - started < 30
    one_clear_line(done.stdout + done.stderr, "not a database")


@pytest.mark.parametrize("daemon", ["ddnsd", "relayd"])
def test_a_registry_that_is_not_there_is_not_made_anew(tmp_path: Path, daemon: str) -> None:
    # After an exit 3 for an unmounted disk, systemd's restart must not find an empty new
    # registry at the path and serve a zone without devices: it ends again, and says why.
    if daemon == "ddnsd":
        prepare(tmp_path)
        registry = tmp_path / "state" / "registry.sqlite3"
    else:
        trio.run(relay_harness.prepare, tmp_path)
        (tmp_path / "relayd.toml").write_text(relay_harness.relay_toml())
        registry = tmp_path / "registry.sqlite3"
    for leftover in registry.parent.glob(registry.name + "*"):
        leftover.unlink()
    done = subprocess.run(
        [str(BIN / daemon), "--config", str(tmp_path / f"{daemon}.toml")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
    )
    assert done.returncode == EXIT_REGISTRY_GONE, done.stdout + done.stderr
    assert "no registry there" in done.stdout + done.stderr
    assert not registry.exists()


def test_a_deleted_registry_ends_relayd_too(tmp_path: Path) -> None:
    trio.run(relay_harness.prepare, tmp_path)
    (tmp_path / "relayd.toml").write_text(relay_harness.relay_toml())
    listening = tmp_path / "relay" / "listening.json"
    with (tmp_path / "relayd.log").open("ab") as log:
        relayd = subprocess.Popen(
            [str(BIN / "relayd"), "--config", str(tmp_path / "relayd.toml")],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        deadline = time.monotonic() + 20
        while not listening.exists():
            assert relayd.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        (tmp_path / "registry.sqlite3").unlink()
        # Its next look at the registry (it follows deletions every 2 s) finds it gone.
        assert relayd.wait(timeout=BOUND_S) == EXIT_REGISTRY_GONE
    finally:
        if relayd.poll() is None:
            relayd.kill()
            relayd.wait()
    log_text = (tmp_path / "relayd.log").read_text()
    [line] = [line for line in log_text.splitlines() if "the registry is gone" in line]
    assert line.startswith("CRITICAL relayd: stopping: the registry is gone: "), log_text
    assert "Traceback" not in log_text, log_text
