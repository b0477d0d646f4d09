"""Cloud Install end to end with real processes: relayd with its install site, nascloud-agent in
install mode, a small setup UI standing in for the new NAS, and curl as the owner's browser.

The relay sees the NAS come from 127.0.0.1. A browser on 127.0.0.1 is "on the NAS's network";
one that leaves from 127.0.0.2 (curl --interface) is elsewhere and gets a relayed session.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import sqlite3
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trio
import trustme

from registry import Registry, SQLiteBackend, hash_secret, normalize_cloud_key
from tests.database import database_bytes
from tests.integration.test_link import BIN, _start_relay, _wait

LINK_ZONE = "link.test"
INSTALL_HOST = f"install.{LINK_ZONE}"
CLOUD_KEY = "K7QD-XM2P-9HTA-4R3B"
ELSEWHERE = "127.0.0.2"  # a browser on another network


class SetupUI(BaseHTTPRequestHandler):
    """The new NAS's setup wizard (plain HTTP on the NAS; the relay carries it over TLS)."""

    seen: list[dict[str, str]]

    def do_GET(self) -> None:
        self.seen.append(dict(self.headers))
        self._send(200, f"NAS setup wizard at {self.path}".encode())

    def do_POST(self) -> None:
        self.seen.append(dict(self.headers))
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._send(200, b"setup got " + body)

    def _send(self, status: int, body: bytes) -> None:
        page = b"<!doctype html><title>Setup</title><h1>" + body + b"</h1>"
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Install:
    directory: Path
    relay: subprocess.Popen[bytes]
    agent: subprocess.Popen[bytes]
    https_port: int
    http_port: int
    metrics_port: int
    setup_port: int
    seen: list[dict[str, str]]
    extra: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def curl(
        self, *args: str, host: str = INSTALL_HOST, source: str = "127.0.0.1"
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "curl",
                "-sS",
                "--max-time",
                "30",
                "--interface",
                source,
                "--resolve",
                f"{host}:{self.https_port}:127.0.0.1",
                "--cacert",
                str(self.directory / "ca.pem"),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def find(
        self, key: str, source: str = "127.0.0.1", *extra: str
    ) -> subprocess.CompletedProcess[str]:
        return self.curl(
            "-i",
            "--data-urlencode",
            f"cloud_key={key}",
            *extra,
            f"https://{INSTALL_HOST}:{self.https_port}/find",
            source=source,
        )

    def session(self, source: str = ELSEWHERE) -> tuple[str, str]:
        """Find the NAS from elsewhere: the session's host and its token."""
        found = self.find(CLOUD_KEY, source)
        assert found.returncode == 0, found.stderr
        match = re.search(r'href="https://([a-z2-7]{32})\.' + re.escape(INSTALL_HOST), found.stdout)
        assert match, found.stdout
        return f"{match.group(1)}.{INSTALL_HOST}", match.group(1)

    def metric(self, name: str) -> float:
        match = re.search(rf"^{name} (\S+)$", self.metrics(), re.MULTILINE)
        return float(match.group(1)) if match else -1.0

    def metrics(self) -> str:
        return subprocess.run(
            ["curl", "-sS", f"http://127.0.0.1:{self.metrics_port}/metrics"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout

    def start_agent(self, name: str, extra: str = "") -> subprocess.Popen[bytes]:
        config = (self.directory / "agent.toml").read_text().replace('"agent"', f'"{name}"')
        (self.directory / f"{name}.toml").write_text(config + extra)
        with (self.directory / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                [str(BIN / "nascloud-agent"), "--config", str(self.directory / f"{name}.toml")],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.extra.append(process)
        return process

    def rows(self) -> int:
        with sqlite3.connect(self.directory / "registry.sqlite3") as db:
            return int(db.execute("SELECT count(*) FROM install_registrations").fetchone()[0])


@contextmanager
def running_install(
    tmp_path: Path, lifetime_s: float = 86400, tunnel_host: str = "127.0.0.1"
) -> Iterator[Install]:
    """relayd with its install site, an agent in install mode, and the NAS's setup UI. With
    `tunnel_host="[::1]"` the NAS reaches the relay over IPv6, so that a browser on 127.0.0.1
    is on another network (for a browser that cannot pick its source address)."""
    # An operator creates the registry (relayd opens one, and never makes it).
    SQLiteBackend(tmp_path / "registry.sqlite3").close()
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    relay_cert = ca.issue_cert("relay.test")
    relay_cert.private_key_pem.write_to_path(str(tmp_path / "relay.key"))
    relay_cert.cert_chain_pems[0].write_to_path(str(tmp_path / "relay.crt"))
    site_cert = ca.issue_cert(INSTALL_HOST, f"*.{INSTALL_HOST}")
    site_cert.private_key_pem.write_to_path(str(tmp_path / "install.key"))
    site_cert.cert_chain_pems[0].write_to_path(str(tmp_path / "install.crt"))
    seen: list[dict[str, str]] = []
    SetupUI.seen = seen
    setup = ThreadingHTTPServer(("127.0.0.1", 0), SetupUI)
    threading.Thread(target=setup.serve_forever, daemon=True).start()
    (tmp_path / "relayd.toml").write_text(
        f"""
[relay]
name = "relay.test"
state_dir = "relay-state"
registry = "registry.sqlite3"
metrics_listen = "127.0.0.1:0"
access_log_key_file = "relay-state/access-log.keys"
[tunnel]
listen = "{tunnel_host}:0"
cert_file = "relay.crt"
key_file = "relay.key"
[ingress]
link_zone = "{LINK_ZONE}"
https_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
[install]
cert_file = "install.crt"
key_file = "install.key"
lifetime_s = {lifetime_s}
lookup_floor_s = 0.05
lookups_per_minute = 20
pairing_url = "https://portal.test/pair"
[limits]
drain_timeout_s = 1
handshake_timeout_s = 2
"""
    )
    (tmp_path / "agent").mkdir()
    (tmp_path / "agent" / "cloud.key").write_text(CLOUD_KEY + "\n")
    (tmp_path / "agent" / "cloud.key").chmod(0o600)
    relay, listening = _start_relay(tmp_path)
    ports = {k: int(v[0].rsplit(":", 1)[1]) for k, v in listening.items()}
    (tmp_path / "agent.toml").write_text(
        f"""
[agent]
key_file = "agent/device.key"
state_dir = "agent"
[relay]
addresses = ["{tunnel_host}:{ports["tunnel"]}"]
server_name = "relay.test"
ca_file = "ca.pem"
[reconnect]
initial_delay_s = 0.1
max_delay_s = 1
[install]
cloud_key_file = "agent/cloud.key"
setup_service = "127.0.0.1:{setup.server_address[1]}"
"""
    )
    with (tmp_path / "agent.log").open("ab") as log:
        agent = subprocess.Popen(
            [str(BIN / "nascloud-agent"), "--config", str(tmp_path / "agent.toml")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    install = Install(
        tmp_path,
        relay,
        agent,
        ports["https"],
        ports["http"],
        ports["metrics"],
        setup.server_address[1],
        seen,
    )
    _wait(lambda: install.metric("nascloud_relay_install_tunnels") == 1, 20, "the install tunnel")
    try:
        yield install
    finally:
        for process in (*install.extra, install.agent, install.relay):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
        setup.shutdown()
        setup.server_close()


@pytest.fixture
def install(tmp_path: Path) -> Iterator[Install]:
    with running_install(tmp_path) as install:
        yield install


def test_on_the_nas_network_the_browser_goes_straight_to_the_nas(install: Install) -> None:
    # The key as a person types it, and a redirect target smuggled into the form.
    found = install.find(
        "k7qd xm2p 9hta 4r3b", "127.0.0.1", "--data-urlencode", "next=https://evil.example/"
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.startswith("HTTP/1.1 200"), found.stdout
    lan_url = f"http://127.0.0.1:{install.setup_port}/"
    assert f"refresh: 0; url={lan_url}" in found.stdout.lower()
    assert "evil" not in found.stdout  # only addresses the NAS registered
    assert "without the cloud" in found.stdout
    # That URL is the NAS's setup UI, reached directly.
    direct = subprocess.run(["curl", "-sS", lan_url], capture_output=True, text=True, timeout=30)
    assert "NAS setup wizard" in direct.stdout


def test_from_elsewhere_setup_is_relayed_through_the_install_tunnel(install: Install) -> None:
    host, token = install.session()
    page = install.curl(
        "-v", f"https://{host}:{install.https_port}/wizard?step=1", host=host, source=ELSEWHERE
    )
    assert page.returncode == 0, page.stderr
    assert "NAS setup wizard at /wizard?step=1" in page.stdout
    assert f'"*.{INSTALL_HOST}"' in page.stderr  # the relay's own wildcard certificate
    posted = install.curl(
        "--data",
        "admin=owner&disk=raid1",
        f"https://{host}:{install.https_port}/setup",
        host=host,
        source=ELSEWHERE,
    )
    assert "setup got admin=owner&disk=raid1" in posted.stdout
    headers = {name.lower(): value for name, value in install.seen[-1].items()}
    assert headers["host"] == f"{host}:{install.https_port}"
    assert headers["forwarded"] == f"for={ELSEWHERE};proto=https"
    assert headers["connection"] == "close"
    assert install.metric("nascloud_relay_install_sessions") == 1
    metrics = install.metrics()  # counters only (privacy rule 8): no key, token or address
    for secret in (CLOUD_KEY, normalize_cloud_key(CLOUD_KEY), token, ELSEWHERE, "127.0.0.1"):
        assert secret not in metrics


def test_stop_ends_the_session_closes_the_tunnel_and_deletes_the_registration(
    install: Install,
) -> None:
    host, token = install.session()
    stopped = install.curl(
        "--data",
        f"session={token}",
        f"https://{INSTALL_HOST}:{install.https_port}/stop",
        source=ELSEWHERE,
    )
    assert "Setup through the cloud is stopped" in stopped.stdout, stopped.stdout
    _wait(lambda: install.metric("nascloud_relay_install_tunnels") == 0, 10, "the tunnel to close")
    _wait(lambda: install.rows() == 0, 5, "the registration's row to go")
    gone = install.curl("-i", f"https://{host}:{install.https_port}/", host=host, source=ELSEWHERE)
    assert gone.stdout.startswith("HTTP/1.1 404"), gone.stdout
    assert "does not exist or has ended" in gone.stdout
    assert install.find(CLOUD_KEY, ELSEWHERE).stdout.startswith("HTTP/1.1 404")
    # The agent stops reporting for good: it does not come back, even after a restart.
    _wait(
        lambda: "the relay ended the install" in (install.directory / "agent.log").read_text(),
        10,
        "the agent",
    )
    window = json.loads((install.directory / "agent" / "install-window.json").read_text())
    assert window["ended"] is True
    time.sleep(1.5)
    assert install.metric("nascloud_relay_install_tunnels") == 0


def test_wrong_keys_forged_sessions_and_oversized_forms_get_clear_answers(
    install: Install,
) -> None:
    near = install.find("K7QD-XM2P-9HTA-4R3C")
    far = install.find("ZZZZ-ZZZZ-ZZZZ-ZZZZ")
    assert near.stdout.startswith("HTTP/1.1 404") and far.stdout.startswith("HTTP/1.1 404")
    # One answer however close the key was, but for the key given back to be corrected.
    bodies = [re.sub(r'value="[^"]*"', "", a.stdout.split("\n\n", 1)[1]) for a in (near, far)]
    assert bodies[0] == bodies[1] and 'value="K7QD-XM2P-9HTA-4R3C"' in near.stdout
    forged = "a" * 32 + "." + INSTALL_HOST
    answer = install.curl("-i", f"https://{forged}:{install.https_port}/", host=forged)
    assert answer.stdout.startswith("HTTP/1.1 404"), answer.stdout
    host, _ = install.session()
    # A session's host in the Host header of another connection name: refused.
    misdirected = install.curl(
        "-i",
        "-H",
        f"Host: {forged}",
        f"https://{host}:{install.https_port}/",
        host=host,
        source=ELSEWHERE,
    )
    assert misdirected.stdout.startswith("HTTP/1.1 421"), misdirected.stdout
    big = install.curl(
        "-i",
        "--data-binary",
        "cloud_key=" + "A" * 10000,
        f"https://{INSTALL_HOST}:{install.https_port}/find",
    )
    assert big.stdout.startswith("HTTP/1.1 413"), big.stdout
    # Rate limit: 20 tries a minute from one address, then 429; the NAS is still there.
    statuses = [install.find(f"WRONG-KEY-0000-{i:04d}", "127.0.0.3").stdout[:12] for i in range(22)]
    assert statuses.count("HTTP/1.1 404") == 20 and statuses[-1] == "HTTP/1.1 429", statuses
    assert install.find(CLOUD_KEY, ELSEWHERE).stdout.startswith("HTTP/1.1 200")


def test_a_second_nas_with_the_same_cloud_key_is_refused(install: Install) -> None:
    install.start_agent("twin")
    log = install.directory / "twin.log"
    _wait(lambda: "refused the install registration" in log.read_text(), 20, "the refusal")
    assert "registered already" in log.read_text()
    assert install.rows() == 1
    assert install.metric("nascloud_relay_install_tunnels") == 1


def test_setup_done_ends_install_mode_at_once(install: Install) -> None:
    """The agent is given its device identity (a reload): the install registration goes."""
    config = install.directory / "agent.toml"
    config.write_text(config.read_text().replace("[agent]\n", '[agent]\ndevice_name = "nas9"\n'))
    install.agent.send_signal(signal.SIGHUP)
    _wait(lambda: install.metric("nascloud_relay_install_tunnels") == 0, 10, "install mode to end")
    # relayd stops routing first and then deletes the row, in a worker thread: a moment apart.
    _wait(lambda: install.rows() == 0, 5, "the registration's row to go")
    assert install.find(CLOUD_KEY, ELSEWHERE).stdout.startswith("HTTP/1.1 404")


def test_a_nas_set_up_through_the_cloud_ends_by_pairing(install: Install) -> None:
    """The setup wizard's last step turns `pairing` on (a reload): install mode ends at once,
    the NAS shows a pairing code, and once an owner takes it, serves as that device."""
    config = install.directory / "agent.toml"
    config.write_text(config.read_text().replace("[agent]\n", "[agent]\npairing = true\n"))
    install.agent.send_signal(signal.SIGHUP)
    _wait(lambda: install.metric("nascloud_relay_install_tunnels") == 0, 10, "install mode to end")
    _wait(lambda: install.rows() == 0, 5, "the registration's row to go")
    shown = install.directory / "agent" / "pairing.json"
    _wait(shown.exists, 20, "the pairing code")
    pairing = json.loads(shown.read_text())
    assert pairing["url"] == "https://portal.test/pair"

    async def take() -> None:
        registry = Registry.open_sqlite(install.directory / "registry.sqlite3", create=False)
        owner = await registry.create_account("sam@example.org", "Sam")
        await registry.complete_pairing(pairing["code"], owner.account_id, "nas7")
        await registry.aclose()

    trio.run(take)
    _wait(lambda: install.metric("nascloud_relay_tunnels") == 1, 20, "the NAS as nas7")
    identity = json.loads((install.directory / "agent" / "identity.json").read_text())
    assert identity["device_name"] == "nas7"
    assert install.find(CLOUD_KEY, ELSEWHERE).stdout.startswith("HTTP/1.1 404")


def test_after_its_lifetime_nothing_of_the_install_is_left(tmp_path: Path) -> None:
    with running_install(tmp_path, lifetime_s=3) as install:
        host, _ = install.session()
        page = install.curl(f"https://{host}:{install.https_port}/", host=host, source=ELSEWHERE)
        assert "NAS setup wizard" in page.stdout
        _wait(lambda: install.metric("nascloud_relay_install_tunnels") == 0, 10, "the window's end")
        assert install.find(CLOUD_KEY, ELSEWHERE).stdout.startswith("HTTP/1.1 404")
        gone = install.curl(
            "-i", f"https://{host}:{install.https_port}/", host=host, source=ELSEWHERE
        )
        assert gone.stdout.startswith("HTTP/1.1 404")
        assert install.rows() == 0
        stored = database_bytes(tmp_path / "registry.sqlite3")
        assert hash_secret(normalize_cloud_key(CLOUD_KEY)) not in stored
        assert b'["127.0.0.1"]' not in stored  # the LAN addresses it reported
        assert host.split(".")[0].encode() not in stored  # the session token never was
        log = (tmp_path / "agent.log").read_text()
        _wait(
            lambda: "the relay ended the install" in (tmp_path / "agent.log").read_text(),
            10,
            "the agent",
        )
        assert CLOUD_KEY not in log and CLOUD_KEY not in (tmp_path / "relayd.log").read_text()


def _tls_to(install: Install, host: str) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(install.directory / "ca.pem"))
    raw = socket.create_connection(("127.0.0.1", install.https_port), timeout=10)
    return context.wrap_socket(raw, server_hostname=host)


def test_slow_and_oversized_browsers_are_cut_off_and_hurt_no_one(install: Install) -> None:
    host, _ = install.session()
    # A slowloris on the session host and one on the install page: half a head, then nothing.
    slow = [_tls_to(install, host), _tls_to(install, INSTALL_HOST)]
    for sock in slow:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x")
    # Meanwhile everyone else is served.
    page = install.curl(f"https://{host}:{install.https_port}/", host=host, source=ELSEWHERE)
    assert "NAS setup wizard" in page.stdout
    # The slow ones are closed after the handshake timeout (2 s here), with or without a 408.
    for sock in slow:
        started = time.monotonic()
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        assert time.monotonic() - started < 8
        assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:80]
        sock.close()
    huge = install.curl(
        "-i",
        "-H",
        "X-Big: " + "a" * 40000,
        f"https://{host}:{install.https_port}/",
        host=host,
        source=ELSEWHERE,
    )
    assert huge.stdout.startswith("HTTP/1.1 431"), huge.stdout[:200]
    # TLS that never completes, and plain text on the HTTPS port: closed, nobody else hurt.
    raw = socket.create_connection(("127.0.0.1", install.https_port), timeout=10)
    raw.sendall(b"GET / HTTP/1.1\r\nHost: " + INSTALL_HOST.encode() + b"\r\n\r\n")
    assert raw.recv(100) == b""
    raw.close()
    page = install.curl(f"https://{host}:{install.https_port}/", host=host, source=ELSEWHERE)
    assert "NAS setup wizard" in page.stdout
    assert install.relay.poll() is None


def test_plain_http_to_the_install_site_is_sent_to_https(install: Install) -> None:
    answer = subprocess.run(
        [
            "curl",
            "-sS",
            "-i",
            "-H",
            f"Host: {INSTALL_HOST}",
            f"http://127.0.0.1:{install.http_port}/find?x=1",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    assert answer.startswith("HTTP/1.1 308"), answer
    assert f"location: https://{INSTALL_HOST}:{install.https_port}/find?x=1" in answer.lower()
