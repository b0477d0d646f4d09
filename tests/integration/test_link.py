"""A NAS with no open port reached through relayd, end to end, with real processes: a test
NAS web server (HTTPS with its own certificate), nascloud-agent, relayd, and curl."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import tomli_w
import trio
import trustme
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import public_key_bytes
from registry import Registry
from tests.database import database_bytes
from tunnel import load_or_create_key

BIN = Path(sys.executable).parent
LINK_ZONE = "link.test"


class NasHandler(BaseHTTPRequestHandler):
    """The NAS's own web UI, as far as these tests need it."""

    def do_GET(self) -> None:
        if self.path == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            self._websocket_echo()
            return
        if self.path.startswith("/big/"):
            size = int(self.path.split("/")[2])
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            chunk = b"x" * 65536
            left = size
            while left:
                self.wfile.write(chunk[: min(left, len(chunk))])
                left -= min(left, len(chunk))
            return
        name = getattr(self.server, "nas_name", "the NAS")
        body = f"hello from {name}, you asked for {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        digest = hashlib.sha256()
        left = length
        while left:
            data = self.rfile.read(min(left, 1 << 20))
            digest.update(data)
            left -= len(data)
        body = digest.hexdigest().encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _websocket_echo(self) -> None:
        """Just enough of RFC 6455 to echo text frames back."""
        accept = base64.b64encode(
            hashlib.sha1(
                (
                    self.headers["Sec-WebSocket-Key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
                ).encode()
            ).digest()
        ).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        while True:
            head = self.rfile.read(2)
            if len(head) < 2 or head[0] & 0x0F == 0x8:  # closed, or a close frame
                return
            length = head[1] & 0x7F
            mask = self.rfile.read(4)
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(length)))
            self.wfile.write(bytes([0x81, len(payload)]) + payload)
            self.wfile.flush()

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Link:
    directory: Path
    ca: trustme.CA
    relay: subprocess.Popen[bytes]
    agent: subprocess.Popen[bytes]
    https_port: int
    http_port: int
    tunnel_port: int
    other_agent: subprocess.Popen[bytes] | None = None
    other_key: Ed25519PrivateKey | None = None

    def curl(self, *args: str, host: str = f"nas1.{LINK_ZONE}") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "curl",
                "-sS",
                "--max-time",
                "60",
                "--resolve",
                f"{host}:{self.https_port}:127.0.0.1",
                "--resolve",
                f"{host}:{self.http_port}:127.0.0.1",
                "--cacert",
                str(self.directory / "ca.pem"),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )


def _wait(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


# relayd.toml's listen keys, by the name listening.json gives their addresses.
_LISTEN_KEYS = {
    "tunnel": ("tunnel", "listen"),
    "https": ("ingress", "https_listen"),
    "http": ("ingress", "http_listen"),
    "metrics": ("relay", "metrics_listen"),
}


def _keep_ports(directory: Path, listening: dict[str, list[str]]) -> None:
    """Write the ports relayd bound for port 0 into its config, so a restart takes them again.

    Ports are never probed free and released before relayd binds them (another process could
    take them in between); only a restart reuses them, as a real relay's would.
    """
    path = directory / "relayd.toml"
    config = tomllib.loads(path.read_text())
    for kind, (section, key) in _LISTEN_KEYS.items():
        if config.get(section, {}).get(key, "").endswith(":0") and kind in listening:
            config[section][key] = listening[kind]
    path.write_text(tomli_w.dumps(config))


def _start_relay(directory: Path) -> tuple[subprocess.Popen[bytes], dict[str, list[str]]]:
    listening = directory / "relay-state" / "listening.json"
    listening.unlink(missing_ok=True)
    with (directory / "relayd.log").open("ab") as log:  # the child keeps its own copy
        process = subprocess.Popen(
            [str(BIN / "relayd"), "--config", str(directory / "relayd.toml")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    _wait(lambda: listening.exists() or process.poll() is not None, 20, "relayd")
    assert process.poll() is None, (directory / "relayd.log").read_text()
    return process, json.loads(listening.read_text())


@pytest.fixture
def link(tmp_path: Path) -> Iterator[Link]:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    relay_cert = ca.issue_cert("relay.test")
    relay_cert.private_key_pem.write_to_path(str(tmp_path / "relay.key"))
    relay_cert.cert_chain_pems[0].write_to_path(str(tmp_path / "relay.crt"))
    nas_cert = ca.issue_cert(f"nas1.{LINK_ZONE}", f"*.nas1.{LINK_ZONE}")
    nas_cert.cert_chain_pems[0].write_to_path(str(tmp_path / "nas-leaf.pem"))
    nas_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    nas_cert.configure_cert(nas_context)
    nas = ThreadingHTTPServer(("127.0.0.1", 0), NasHandler)
    nas.socket = nas_context.wrap_socket(nas.socket, server_side=True)
    threading.Thread(target=nas.serve_forever, daemon=True).start()
    # A second device, with its own NAS, to show the two never see each other's traffic.
    other_cert = ca.issue_cert(f"nas2.{LINK_ZONE}")
    other_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    other_cert.configure_cert(other_context)
    other = ThreadingHTTPServer(("127.0.0.1", 0), NasHandler)
    other.nas_name = "nas2"  # type: ignore[attr-defined]
    other.socket = other_context.wrap_socket(other.socket, server_side=True)
    threading.Thread(target=other.serve_forever, daemon=True).start()

    key = load_or_create_key(tmp_path / "agent" / "device.key")
    assert oct((tmp_path / "agent" / "device.key").stat().st_mode & 0o777) == "0o600"
    other_key = load_or_create_key(tmp_path / "agent2" / "device.key")

    async def enrol() -> None:
        registry = Registry.open_sqlite(tmp_path / "registry.sqlite3")
        owner = await registry.create_account("owner@example.org", "Owner")
        await registry.enrol_device(owner.account_id, "nas1", public_key_bytes(key))
        await registry.enrol_device(owner.account_id, "nas2", public_key_bytes(other_key))
        # Enrolled, and never connected: an offline device.
        offline_key = Ed25519PrivateKey.generate()
        await registry.enrol_device(owner.account_id, "nas3", public_key_bytes(offline_key))
        await registry.aclose()

    trio.run(enrol)
    (tmp_path / "relayd.toml").write_text(
        f"""
[relay]
name = "relay.test"
state_dir = "relay-state"
registry = "registry.sqlite3"
metrics_listen = "127.0.0.1:0"
access_log_key_file = "relay-state/access-log.keys"
[tunnel]
listen = "127.0.0.1:0"
cert_file = "relay.crt"
key_file = "relay.key"
[ingress]
link_zone = "{LINK_ZONE}"
https_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
[limits]
drain_timeout_s = 2
handshake_timeout_s = 2
"""
    )
    relay, listening = _start_relay(tmp_path)
    _keep_ports(tmp_path, listening)
    ports = {k: int(v[0].rsplit(":", 1)[1]) for k, v in listening.items()}
    (tmp_path / "agent.toml").write_text(
        f"""
[agent]
device_name = "nas1"
key_file = "agent/device.key"
state_dir = "agent"
[relay]
addresses = ["127.0.0.1:{ports["tunnel"]}"]
server_name = "relay.test"
ca_file = "ca.pem"
[services]
web = "127.0.0.1:{nas.server_address[1]}"
[reconnect]
initial_delay_s = 0.1
max_delay_s = 1
"""
    )
    (tmp_path / "agent2.toml").write_text(
        (tmp_path / "agent.toml")
        .read_text()
        .replace('device_name = "nas1"', 'device_name = "nas2"')
        .replace("agent/device.key", "agent2/device.key")
        .replace('state_dir = "agent"', 'state_dir = "agent2"')
        .replace(f"127.0.0.1:{nas.server_address[1]}", f"127.0.0.1:{other.server_address[1]}")
    )
    agents = []
    for name in ("agent", "agent2"):
        with (tmp_path / f"{name}.log").open("ab") as log:
            agents.append(
                subprocess.Popen(
                    [str(BIN / "nascloud-agent"), "--config", str(tmp_path / f"{name}.toml")],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    agent = agents[0]
    result = Link(tmp_path, ca, relay, agent, ports["https"], ports["http"], ports["tunnel"])
    result.other_agent = agents[1]
    result.other_key = other_key
    for device in ("nas1", "nas2"):  # both tunnels up before any test looks
        _wait(
            lambda device=device: (
                result.curl(
                    f"https://{device}.{LINK_ZONE}:{result.https_port}/",
                    host=f"{device}.{LINK_ZONE}",
                ).returncode
                == 0
            ),
            20,
            f"the tunnel of {device}",
        )
    try:
        yield result
    finally:
        for process in (result.agent, result.other_agent, result.relay):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        for server in (nas, other):
            server.shutdown()
            server.server_close()


def test_the_page_arrives_with_the_nas_certificate(link: Link) -> None:
    done = link.curl("-v", f"https://nas1.{LINK_ZONE}:{link.https_port}/status?x=1")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello from the NAS, you asked for /status?x=1\n"
    # The second device answers for itself only.
    _wait(
        lambda: link.curl(
            f"https://nas2.{LINK_ZONE}:{link.https_port}/", host=f"nas2.{LINK_ZONE}"
        ).stdout.startswith("hello from nas2"),
        20,
        "the second device",
    )
    assert f'subjectAltName: host "nas1.{LINK_ZONE}" matched' in done.stderr
    # Names under the device's name reach it too.
    deep = link.curl(
        f"https://files.nas1.{LINK_ZONE}:{link.https_port}/", host=f"files.nas1.{LINK_ZONE}"
    )
    assert deep.returncode == 0 and deep.stdout.startswith("hello from the NAS"), deep.stderr


def test_the_relay_never_sees_plaintext_or_keeps_a_canary(link: Link) -> None:
    canary = "canary-" + os.urandom(8).hex()
    done = link.curl(
        "-H",
        f"X-Secret: {canary}",
        "--data",
        canary,
        f"https://nas1.{LINK_ZONE}:{link.https_port}/{canary}?q={canary}",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == hashlib.sha256(canary.encode()).hexdigest()
    link.relay.send_signal(signal.SIGTERM)
    link.relay.wait(timeout=10)
    for path in link.directory.rglob("*"):
        if path.is_file() and "agent" not in path.name and path.name not in ("test_link.py",):
            if path.name in ("agent.log",):
                continue
            assert canary.encode() not in path.read_bytes(), path


def test_large_bodies_pass_both_ways(link: Link) -> None:
    size = 100 * 1024 * 1024
    down = link.curl(
        "-o",
        "/dev/null",
        "-w",
        "%{size_download}",
        f"https://nas1.{LINK_ZONE}:{link.https_port}/big/{size}",
    )
    assert down.returncode == 0 and int(down.stdout) == size, down.stderr
    payload = link.directory / "upload.bin"
    payload.write_bytes(os.urandom(8 * 1024 * 1024))
    up = link.curl("--data-binary", f"@{payload}", f"https://nas1.{LINK_ZONE}:{link.https_port}/up")
    assert up.stdout == hashlib.sha256(payload.read_bytes()).hexdigest(), up.stderr


def _ending(port: int, sent: bytes, timeout_s: float = 5) -> tuple[bytes, str]:
    """What a connection to `port` that sends `sent` gets back, and how it ends: "eof" or
    "reset". The relay must end it itself: waiting `timeout_s` for that fails the test."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(sent)
        deadline = time.monotonic() + timeout_s
        while True:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return received, "reset"
            except TimeoutError:
                raise AssertionError(f"no close within {timeout_s} s after {sent[:40]!r}") from None
            if not chunk:
                return received, "eof"
            received += chunk


def test_unknown_names_and_missing_sni_get_a_silent_close(link: Link) -> None:
    from tests.unit.test_relayd_sni import client_hello

    unknown = link.curl(f"https://nas9.{LINK_ZONE}:{link.https_port}/", host=f"nas9.{LINK_ZONE}")
    assert unknown.returncode != 0
    with socket.create_connection(("127.0.0.1", link.https_port), timeout=5) as sock:
        context = ssl.create_default_context(cafile=str(link.directory / "ca.pem"))
        context.check_hostname = False
        started = time.monotonic()
        # The close itself (EOF or reset), not a timeout (which is an OSError too).
        with pytest.raises((ssl.SSLEOFError, ConnectionResetError)):
            context.wrap_socket(sock)  # no server_hostname: no SNI
        assert time.monotonic() - started < 4
    # Nothing tells a connected device from an enrolled one that is offline (nas3) or a name
    # that is nobody's: whatever is not a ClientHello for a connected device gets the same
    # nothing back and the same kind of end.
    request = "GET / HTTP/1.1\r\nHost: {}\r\n\r\n"
    probes = {
        "no SNI": client_hello(None),
        "plain HTTP to a connected device": request.format(f"nas1.{LINK_ZONE}").encode(),
        "an offline device": client_hello(f"nas3.{LINK_ZONE}"),
        "plain HTTP to an offline device": request.format(f"nas3.{LINK_ZONE}").encode(),
        "an unknown device": client_hello(f"nas9.{LINK_ZONE}"),
        "plain HTTP to an unknown device": request.format(f"nas9.{LINK_ZONE}").encode(),
    }
    endings = {what: _ending(link.https_port, sent) for what, sent in probes.items()}
    assert endings["an unknown device"][0] == b""  # silent
    assert set(endings.values()) == {endings["an unknown device"]}, endings
    # The relay keeps serving the real device.
    assert link.curl(f"https://nas1.{LINK_ZONE}:{link.https_port}/").returncode == 0


def test_plain_http_is_redirected_to_https(link: Link) -> None:
    done = link.curl("-i", f"http://nas1.{LINK_ZONE}:{link.http_port}/settings?tab=2")
    assert done.stdout.startswith("HTTP/1.1 308"), done.stdout
    assert (
        f"location: https://nas1.{LINK_ZONE}:{link.https_port}/settings?tab=2"
        in done.stdout.lower()
    )
    unknown = link.curl("-i", f"http://other.example:{link.http_port}/", host="other.example")
    assert unknown.stdout.startswith("HTTP/1.1 404"), unknown.stdout
    # A reserved name is never a device's (no install site here): the same 404.
    reserved = f"install.{LINK_ZONE}"
    install = link.curl("-i", f"http://{reserved}:{link.http_port}/", host=reserved)
    assert install.stdout.startswith("HTTP/1.1 404"), install.stdout


def test_the_agent_comes_back_after_relayd_restarts(link: Link) -> None:
    link.relay.send_signal(signal.SIGKILL)
    link.relay.wait()
    assert link.curl(f"https://nas1.{LINK_ZONE}:{link.https_port}/").returncode != 0
    link.relay, _ = _start_relay(link.directory)  # the same ports, from the same config
    _wait(
        lambda: link.curl(f"https://nas1.{LINK_ZONE}:{link.https_port}/").returncode == 0,
        20,
        "the agent to reconnect",
    )
    assert link.agent.poll() is None


def test_a_websocket_stays_open_through_the_relay(link: Link) -> None:
    context = ssl.create_default_context(cafile=str(link.directory / "ca.pem"))
    with (
        socket.create_connection(("127.0.0.1", link.https_port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=f"nas1.{LINK_ZONE}") as tls,
    ):
        key = base64.b64encode(os.urandom(16)).decode()
        tls.sendall(
            (
                f"GET /ws HTTP/1.1\r\nHost: nas1.{LINK_ZONE}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            response += tls.recv(4096)
        assert response.startswith(b"HTTP/1.0 101") or response.startswith(b"HTTP/1.1 101")
        for number in range(5):
            message = f"message {number}".encode()
            mask = os.urandom(4)
            masked = bytes(b ^ mask[i % 4] for i, b in enumerate(message))
            tls.sendall(bytes([0x81, 0x80 | len(message)]) + mask + masked)
            echo = tls.recv(4096)
            assert echo == bytes([0x81, len(message)]) + message
            time.sleep(0.3)  # a connection that lives, with pauses, as websockets do
        tls.sendall(bytes([0x88, 0x80]) + os.urandom(4))


def test_unregistering_a_device_closes_its_tunnel_at_once(link: Link) -> None:
    done = subprocess.run(
        [
            str(BIN / "nascloud"),
            "device",
            "delete",
            "nas2",
            "--yes",
            "--registry",
            str(link.directory / "registry.sqlite3"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr

    def nas2_gone() -> bool:
        result = link.curl(f"https://nas2.{LINK_ZONE}:{link.https_port}/", host=f"nas2.{LINK_ZONE}")
        return result.returncode != 0

    _wait(nas2_gone, 10, "nas2 to be unreachable")
    assert link.curl(f"https://nas1.{LINK_ZONE}:{link.https_port}/").returncode == 0
    # The relay says why in its log (and refuses the agent from now on: no key is enrolled).
    assert "the device was unregistered" in (link.directory / "relayd.log").read_text()


def test_a_reload_drops_no_tunnel(link: Link) -> None:
    tunnels_before = (link.directory / "agent.log").read_text().count("tunnel up")
    link.relay.send_signal(signal.SIGHUP)
    _wait(
        lambda: "configuration reloaded" in (link.directory / "relayd.log").read_text(),
        10,
        "the reload",
    )
    assert link.curl(f"https://nas1.{LINK_ZONE}:{link.https_port}/").returncode == 0
    time.sleep(0.5)
    assert (link.directory / "agent.log").read_text().count("tunnel up") == tunnels_before


def test_connections_are_in_the_encrypted_access_log_only(link: Link) -> None:
    assert link.curl(f"https://nas1.{LINK_ZONE}:{link.https_port}/").returncode == 0
    link.curl("-i", f"http://nas1.{LINK_ZONE}:{link.http_port}/")

    def logs() -> list[dict[str, object]]:
        done = subprocess.run(
            [
                str(BIN / "nascloud"),
                "logs",
                "--json",
                "--registry",
                str(link.directory / "registry.sqlite3"),
                "--key-file",
                str(link.directory / "relay-state" / "access-log.keys"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        records: list[dict[str, object]] = json.loads(done.stdout)["records"]
        return records

    _wait(lambda: len(logs()) >= 2, 10, "the records to be written")
    records = logs()
    https = [r for r in records if r["ingress"] == "https" and r["device"] == "nas1"]
    assert https and https[-1]["client_address"] == "127.0.0.1"
    assert int(str(https[-1]["bytes_out"])) > 0 and https[-1]["result"] == "ok"
    assert any(r["ingress"] == "http" and r["result"] == "redirected" for r in records)
    assert set(records[0]) == {
        "started_at",
        "ended_at",
        "device",
        "client_address",
        "ingress",
        "bytes_in",
        "bytes_out",
        "result",
    }  # metadata only: no path, query, header or payload field exists
    database = database_bytes(link.directory / "registry.sqlite3")
    assert b"127.0.0.1" not in database  # the full address only encrypted
