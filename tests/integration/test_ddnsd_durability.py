"""An acknowledged update survives `kill -9` of ddnsd in the middle of a burst."""

from __future__ import annotations

import base64
import http.client
import signal
import threading
import time
from pathlib import Path

import dns.message
import dns.query

from tests.ddnsd_harness import DdnsdOptions, prepare, start, stop

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
