"""An acknowledged update survives `kill -9` of ddnsd in the middle of a burst."""

from __future__ import annotations

import base64
import http.client
import signal
import subprocess
import threading
import time
from pathlib import Path

import dns.message
import dns.query

from tests.ddnsd_harness import Ddnsd, DdnsdOptions, prepare, start, stop

from .ddnsd_updates import http_update

DEVICES = tuple(f"dev{i}" for i in range(40))


def test_every_acknowledged_update_survives_kill_9(tmp_path: Path) -> None:
    prepare(tmp_path, DdnsdOptions(devices=DEVICES))
    daemon = start(tmp_path)
    sent: dict[str, list[str]] = {d: [] for d in DEVICES}
    acknowledged: dict[str, int] = {}
    stop_clients = threading.Event()

    def client(device: str, number: int) -> None:
        host, port = daemon.dyndns2.rsplit(":", 1)
        auth = base64.b64encode(f"{device}.dyn.test:{daemon.tokens[device]}".encode()).decode()
        connection = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            for step in range(10_000):
                if stop_clients.is_set():
                    return
                # Public, distinct addresses (a LAN's 10/8 is refused by default).
                address = f"11.{number}.{step // 250}.{step % 250 + 1}"
                sent[device].append(address)
                try:
                    connection.request(
                        "GET",
                        f"/nic/update?hostname={device}.dyn.test&myip={address}",
                        headers={"Authorization": f"Basic {auth}"},
                    )
                    body = connection.getresponse().read().decode()
                except (OSError, http.client.HTTPException):
                    return  # killed
                if body.strip() == f"good {address}":
                    acknowledged[device] = len(sent[device]) - 1
        finally:
            connection.close()  # a socket left to the garbage collector fails the run

    threads = [threading.Thread(target=client, args=(d, i)) for i, d in enumerate(DEVICES)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while sum(acknowledged.values()) < 400 and time.monotonic() < deadline:
        time.sleep(0.02)
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait()
    stop_clients.set()
    for thread in threads:
        thread.join(timeout=10)
    assert len(acknowledged) == len(DEVICES), "every client got at least one update through"

    restarted = start(tmp_path)
    try:
        for device in DEVICES:
            query = dns.message.make_query(f"{device}.dyn.test", "A")
            response = dns.query.udp(query, "127.0.0.1", port=restarted.dns_port, timeout=5)
            [rrset] = response.answer
            stored = sent[device].index(rrset[0].address)
            # What was acknowledged is there, or a later update that was already in flight.
            assert stored >= acknowledged[device], (device, stored, acknowledged[device])
    finally:
        stop(restarted)


def _build_holdsync(directory: Path) -> Path:
    """tests/holdsync.c as a shared object: logs and, on demand, holds fsync/fdatasync."""
    library = directory / "holdsync.so"
    source = Path(__file__).parents[1] / "holdsync.c"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O2", "-o", str(library), str(source), "-ldl"], check=True
    )
    return library


def _synced(log: Path, what: str) -> list[tuple[float, str]]:
    """(time, path) of each `what` line ("held" or "done") the shim wrote for the WAL."""
    if not log.exists():
        return []
    lines = [line.split() for line in log.read_text().splitlines()]
    return [(float(t), p) for t, _, kind, p in lines if kind == what and p.endswith("-wal")]


def test_an_update_is_acknowledged_only_after_its_batch_reached_the_disk(tmp_path: Path) -> None:
    # SIGKILL keeps the page cache, so the test above would pass with synchronous=OFF. Here the
    # WAL's fdatasync is held: until it returns, the update must be neither acknowledged nor
    # served, and the acknowledgement comes only after it.
    library = _build_holdsync(tmp_path)
    sync_log, hold = tmp_path / "sync.log", tmp_path / "hold"
    prepare(tmp_path, DdnsdOptions(devices=("nas1",)))
    daemon = start(
        tmp_path,
        env={
            "LD_PRELOAD": str(library),
            "HOLDSYNC_LOG": str(sync_log),
            "HOLDSYNC_HOLD": str(hold),
        },
    )
    try:
        assert http_update(daemon, "nas1", "198.51.100.1") == "good 198.51.100.1"
        assert _synced(sync_log, "done"), "the shim sees the WAL's syncs"
        hold.touch()
        replies: list[tuple[float, str]] = []

        def update() -> None:
            body = http_update(daemon, "nas1", "198.51.100.2")
            replies.append((time.time(), body))

        client = threading.Thread(target=update)
        client.start()
        deadline = time.monotonic() + 10
        while not _synced(sync_log, "held") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _synced(sync_log, "held"), "the batch is synced before it is acknowledged"
        client.join(timeout=0.5)  # with the sync held, no answer may come
        assert replies == []
        assert _address(daemon, "nas1.dyn.test") == "198.51.100.1"  # nor is it served
        released = time.time()
        hold.unlink()
        client.join(timeout=10)
        [(answered, body)] = replies
        assert body == "good 198.51.100.2"
        [held_at] = [t for t, _ in _synced(sync_log, "held")]
        assert any(held_at < t < answered and t >= released for t, _ in _synced(sync_log, "done"))
        assert _address(daemon, "nas1.dyn.test") == "198.51.100.2"
    finally:
        hold.unlink(missing_ok=True)
        stop(daemon)


def _address(daemon: Ddnsd, name: str) -> str:
    query = dns.message.make_query(name, "A")
    response = dns.query.udp(query, "127.0.0.1", port=daemon.dns_port, timeout=5)
    [rrset] = response.answer
    return str(rrset[0].address)
