"""The owner portal: sign-in cost (argon2id at OWASP's first choice) beside the reference
argon2 command line hashing with the same parameters, and the devices page with 1,000
devices in the account. Real process on loopback, one request at a time.

Run: .venv/bin/python bench/portal.py [--devices 1000] [--rounds 30]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from portal import new_hasher
from registry import Registry, SQLiteBackend

BIN = Path(sys.executable).parent
PASSWORD = "a portal password for the bench"


def request(
    port: int, method: str, path: str, cookie: str = "", body: bytes | None = None
) -> tuple[http.client.HTTPResponse, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Cookie": cookie} if cookie else {}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    data = response.read().decode()
    connection.close()
    return response, data


def sign_in(port: int) -> tuple[float, str]:
    """(seconds the POST took, the session cookie)."""
    response, page = request(port, "GET", "/sign-in")
    form_cookie = response.getheader("Set-Cookie", "").split(";", 1)[0]
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]
    body = urlencode({"csrf": csrf, "account_name": "owner", "password": PASSWORD}).encode()
    started = time.perf_counter()
    response, _ = request(port, "POST", "/sign-in", form_cookie, body)
    took = time.perf_counter() - started
    assert response.status == 303, response.status
    cookies = [v for k, v in response.getheaders() if k == "Set-Cookie" and "session" in v]
    return took, cookies[0].split(";", 1)[0]


def reference_argon2(rounds: int) -> float | None:
    """Median seconds of Debian's `argon2` (the reference implementation) for one hash."""
    if shutil.which("argon2") is None:
        return None
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run(
            ["argon2", "saltsaltsalt", "-id", "-t", "2", "-k", "19456", "-p", "1", "-e"],
            input=PASSWORD.encode(),
            capture_output=True,
            check=True,
        )
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def prepare(path: Path, devices: int) -> None:
    SQLiteBackend(path).close()
    registry = Registry.open_sqlite(path, create=False)
    owner = await registry.create_owner("owner", new_hasher().hash(PASSWORD), "Owner")
    for i in range(devices):
        await registry.enrol_device(owner.account_id, f"nas{i:05d}", os.urandom(32))
    await registry.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nascloud-portal-") as tmp:
        work = Path(tmp)
        trio.run(prepare, work / "registry.sqlite3", args.devices)
        (work / "portal.toml").write_text(
            '[portal]\nlisten = ["127.0.0.1:0"]\noperator_name = "bench"\nzone = "dyn.test"\n'
            'link_zone = "link.test"\nstate_dir = "state"\nregistry = "registry.sqlite3"\n'
            "sign_in_attempts_per_account = 1000\nsign_in_attempts_per_address = 100000\n"
            'public_url = "http://localhost:8443"\n'  # passkeys offered: /sign-in makes options
        )
        with (work / "portal.log").open("wb") as log:
            portal = subprocess.Popen(
                [str(BIN / "nascloud-portal"), "--config", str(work / "portal.toml")],
                cwd=work,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            listening = work / "state" / "listening.json"
            while not listening.exists():
                assert portal.poll() is None, (work / "portal.log").read_text()
                time.sleep(0.05)
            port = int(json.loads(listening.read_text())["portal"][0].rsplit(":", 1)[1])
            sign_ins, cookie = [], ""
            for _ in range(args.rounds):
                took, cookie = sign_in(port)
                sign_ins.append(took)
            pages: dict[str, list[float]] = {
                "/devices": [],
                "/devices?page=20": [],
                "/account": [],
                "/account/passkeys": [],
                "/sign-in": [],  # with the passkey's request options and challenge
            }
            for _ in range(args.rounds):
                for path, times in pages.items():
                    started = time.perf_counter()
                    response, page = request(port, "GET", path, cookie)
                    times.append(time.perf_counter() - started)
                    assert response.status == 200, (path, response.status)
                    if path.startswith("/devices"):
                        assert page.count("<h2>") == min(args.devices, 50)
            reference = reference_argon2(args.rounds)
        finally:
            portal.terminate()
            portal.wait(timeout=20)
    sign_in_p50 = statistics.median(sign_ins) * 1000
    print(f"\nportal, {args.rounds} rounds each, one at a time, loopback\n")
    print(
        f"  sign-in (POST to 303), p50 / max      {sign_in_p50:7.1f} /"
        f" {max(sign_ins) * 1000:.1f} ms   (target < 300)"
    )
    if reference is not None:
        print(
            f"  argon2 CLI, one hash, same parameters {reference * 1000:7.1f} ms"
            f"   sign-in / CLI {sign_in_p50 / (reference * 1000):.2f}"
        )
    for path, times in pages.items():
        p50 = statistics.median(times) * 1000
        print(
            f"  {path:<18} ({args.devices} devices, 50 a page), p50 / max"
            f" {p50:6.1f} / {max(times) * 1000:.1f} ms   (target < 20)"
        )


if __name__ == "__main__":
    main()
