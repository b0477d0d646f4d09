"""A full disk under the registry: nothing that could not be stored is acknowledged, and the
registry recovers by itself when room returns, even when its own write-ahead log filled the
disk and even across a restart. The disks are small tmpfs mounts the tests make."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.tsigkeyring
import dns.update
import pytest
import trio

from registry import DnsRRset, RegistryFull, SQLiteBackend
from registry._models import AccessMode, Account, Device
from relayd._daemon import Relayd
from relayd._daemon import serve as serve_relayd
from tests.ddnsd_harness import Ddnsd, prepare, start, stop
from tests.relay_harness import agent, browse, echo_service, listening_service, relay_config
from tests.relay_harness import prepare as prepare_relay

from .ddnsd_updates import http_update

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        # Lazily: a daemon that failed the test may still hold a file open there.
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill(disk: Path, name: str = "filler") -> None:
    """Take every free block of `disk` (another program filling it)."""
    fd = os.open(disk / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (65536, 4096, 512, 1):  # down to the last partial block
            for _ in range(100_000):  # far more than the small disks hold
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)


def rrset(i: int, value: str) -> DnsRRset:
    return DnsRRset(f"h{i % 40}.nas1.dyn.test", "TXT", "nas1", 60, (value,))


def stored(path: Path) -> dict[str, tuple[str, ...]]:
    backend = SQLiteBackend(path, reserve_bytes=0)
    try:
        return {r.owner: r.values for r in backend.load_dns()[0]}
    finally:
        backend.close()


@pytest.mark.parametrize("restart", [False, True], ids=["running", "restarted"])
def test_a_wal_that_filled_the_disk_is_emptied_without_a_person(
    tmp_path: Path, restart: bool
) -> None:
    """The issue's case: a reader's snapshot keeps the log from being reset, the log grows
    until the disk is full, and then the checkpoint that would empty it needs room in the
    database file that is not there. The reserve is that room."""
    with small_disk(tmp_path / "disk", "3m") as disk:
        path = disk / "registry.sqlite3"
        backend = SQLiteBackend(path)
        assert backend.reserve_path is not None and backend.reserve_path.exists()
        backend.insert_account(Account("acc", "o@example.org", "Owner", 0.0))
        backend.insert_device(Device("nas1", "acc", b"k" * 32, AccessMode.PRIVATE, (), 0.0, None))
        reader = sqlite3.connect(path, isolation_level=None)  # relayd, the CLI: another process
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM devices").fetchone()
        acknowledged: dict[str, tuple[str, ...]] = {}
        refused = 0
        for i in range(20_000):  # the log fills 3 MiB long before
            try:
                backend.commit_dns([rrset(i, f"v{i}")], {"dyn.test": i + 1})
                acknowledged[rrset(i, "").owner] = (f"v{i}",)
            except RegistryFull as exc:
                assert "the disk is full" in str(exc)
                refused += 1
                if refused == 3:
                    break
        assert refused == 3, "the disk never filled"
        reader.execute("ROLLBACK")  # the snapshot ends; nobody frees any space
        reader.close()
        if restart:
            backend.close()
            backend = SQLiteBackend(path)
        written = 0
        for i in range(3):  # the write that meets the full disk may still be refused
            try:
                backend.commit_dns([rrset(i, f"after{i}")], {"dyn.test": 100_000 + i})
                acknowledged[rrset(i, "").owner] = (f"after{i}",)
                written += 1
            except RegistryFull:
                assert written == 0, "refused again after a write went through"
        assert written >= 2, "still refused once the snapshot ended"
        assert (disk / "registry.sqlite3-wal").stat().st_size < 1 << 20  # emptied
        assert backend.reserve_path is not None and backend.reserve_path.exists()  # taken again
        backend.close()
        assert stored(path) == acknowledged  # every acknowledged write, nothing else


def _update(daemon: Ddnsd, name: str, address: str) -> int:
    algorithm, key_name, secret = daemon.tsig["nas2"].split(":")
    keyring = dns.tsigkeyring.from_text({key_name: (algorithm, secret)})
    update = dns.update.UpdateMessage(
        "dyn.test", keyring=keyring, keyname=dns.name.from_text(key_name)
    )
    update.replace(name, 60, "A", address)
    return int(dns.query.tcp(update, "127.0.0.1", port=daemon.dns_port, timeout=5).rcode())


def _address(daemon: Ddnsd, name: str) -> str:
    query = dns.message.make_query(name, "A")
    response = dns.query.udp(query, "127.0.0.1", port=daemon.dns_port, timeout=5)
    [rrset] = response.answer
    return str(rrset[0].address)


def test_ddnsd_acknowledges_only_what_it_stored_and_recovers_when_room_returns(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path / "state", "4m") as disk:
        prepare(tmp_path)
        daemon = start(tmp_path)
        try:
            assert http_update(daemon, "nas1", "198.51.100.1") == "good 198.51.100.1"
            assert _update(daemon, "nas2", "198.51.100.2") == dns.rcode.NOERROR
            # Whatever room the log had, or a checkpoint gave back, is taken each time:
            # some updates still fit, until one does not.
            answers: list[str] = []
            for i in range(1, 60):
                fill(disk)
                answers.append(http_update(daemon, "nas1", f"203.0.113.{i}"))
                if answers[-1] != f"good 203.0.113.{i}":
                    break
            assert answers[-1] == "911", answers
            good = [a for a in answers if a.startswith("good")]
            last = good[-1].split()[1] if good else "198.51.100.1"
            fill(disk, "filler2")
            assert _update(daemon, "nas2", "198.51.100.22") == dns.rcode.SERVFAIL
            # What was refused is not answered; what was acknowledged is.
            assert _address(daemon, "nas1.dyn.test") == last
            assert _address(daemon, "nas2.dyn.test") == "198.51.100.2"
            stop(daemon)
            # A restart on the full disk serves what was stored, and refuses again.
            daemon = start(tmp_path)
            assert _address(daemon, "nas1.dyn.test") == last
            assert http_update(daemon, "nas1", "203.0.113.200") == "911"
            assert _update(daemon, "nas2", "198.51.100.23") == dns.rcode.SERVFAIL
            # Room returns (the other program is cleaned up): no restart, no person.
            (disk / "filler").unlink()
            (disk / "filler2").unlink()
            answers = [http_update(daemon, "nas1", f"203.0.113.{i}") for i in (201, 202)]
            assert answers[-1] == "good 203.0.113.202", answers
            assert _update(daemon, "nas2", "198.51.100.24") == dns.rcode.NOERROR
            assert _address(daemon, "nas1.dyn.test") == "203.0.113.202"
            assert _address(daemon, "nas2.dyn.test") == "198.51.100.24"
            assert (disk / "registry.sqlite3.reserve").exists()
        finally:
            stop(daemon)
        assert daemon.process.returncode == 0, daemon.log()  # served throughout, then stopped
        log = daemon.log()
        # Each refusal is one line, not a traceback: a full disk is expected, not a bug.
        assert "a DynDNS2 update was not stored: " in log and "the disk is full" in log, log
        assert "Traceback" not in log, log


async def test_relayd_passes_traffic_on_a_full_disk(tmp_path: Path) -> None:
    """relayd reads the registry (who is who) and writes little to it: a full disk under it
    stops neither the tunnels that are up nor the agents that connect meanwhile."""
    with small_disk(tmp_path / "disk", "8m") as disk:
        await prepare_relay(disk, ("nas1", "nas2"))
        service = await listening_service()
        port = service.getsockname()[1]
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                relay: Relayd = await nursery.start(serve_relayd, relay_config(disk))
                nursery.start_soon(echo_service, service)
                tunnel, https = relay.listening["tunnel"][0], relay.listening["https"][0]
                nas1 = agent(disk, tunnel, f"127.0.0.1:{port}")
                nursery.start_soon(nas1.run)
                await nas1.connected.wait()
                assert (await browse(https, b"before")).endswith(b"before")
                fill(disk)
                for i in range(5):
                    assert (await browse(https, b"full %d" % i)).endswith(b"full %d" % i)
                # An agent that connects now is served too.
                nas2 = agent(disk, tunnel, f"127.0.0.1:{port}", device="nas2")
                nursery.start_soon(nas2.run)
                reply = b""
                for _ in range(100):  # 5 s at most
                    fill(disk)  # whatever a checkpoint gave back is taken again
                    reply = await browse(https, b"second", name="nas2.link.test")
                    if reply.endswith(b"second"):
                        break
                    await trio.sleep(0.05)
                assert reply.endswith(b"second"), relay.counts
                # Its first tunnel held: a last-seen time relayd could not write ends nothing.
                assert nas2.attempts == 0 and not relay.counts["tunnel_error"], relay.counts
                nursery.cancel_scope.cancel()
        service.close()
