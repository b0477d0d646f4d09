"""Pairing, with the real programs: an agent with no device identity asks relayd for a code,
its owner signs up on the portal and types it with a name, and the agent comes up as that
device by itself, and again after a restart. A code works once; guesses are refused and
limited."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import trustme

from tests.integration.test_install import INSTALL_HOST
from tests.integration.test_link import BIN, LINK_ZONE, _start_relay, _wait
from tests.integration.test_portal import Answer, Browser, Running, running_portal


def _metric(port: int, name: str) -> float:
    text = subprocess.run(
        ["curl", "-sS", f"http://127.0.0.1:{port}/metrics"],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else -1.0


def _start_agent(directory: Path) -> subprocess.Popen[bytes]:
    with (directory / "agent.log").open("ab") as log:
        return subprocess.Popen(
            [str(BIN / "nascloud-agent"), "--config", str(directory / "agent.toml")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@dataclass
class Stack:
    portal: Running
    relay: subprocess.Popen[bytes]
    agent: subprocess.Popen[bytes]
    metrics_port: int
    https_port: int
    api_port: int  # relayd's lookup API

    def metric(self, name: str) -> float:
        return _metric(self.metrics_port, name)

    def browse(self, device: str) -> None:
        """A browser's HTTPS connection to the device through the relay (whatever the NAS
        answers: the relay keeps its record)."""
        name = f"{device}.{LINK_ZONE}:{self.https_port}"
        subprocess.run(
            [
                "curl",
                "-sk",
                "--max-time",
                "5",
                "--resolve",
                f"{name}:127.0.0.1",
                f"https://{name}/",
            ],
            capture_output=True,
            timeout=30,
        )


@contextmanager
def pairing_stack(tmp_path: Path, portal_port: int = 0) -> Iterator[Stack]:
    """The portal, relayd offering pairing (and keeping an access log the portal reads, and
    its lookup API), and an agent with no identity asking for a code (state in
    `tmp_path / "nas"`). With `portal_port`, the portal offers passkeys at
    http://localhost:<portal_port>."""
    keys = tmp_path / "relay-state" / "access-log.keys"
    extra = f'access_log_key_files = ["{keys}"]'
    if portal_port:
        extra += f'\npublic_url = "http://localhost:{portal_port}"'
    with running_portal(tmp_path, extra=extra, port=portal_port) as portal:
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        for name, hosts in (
            ("relay", ["relay.test"]),
            ("install", [INSTALL_HOST, f"*.{INSTALL_HOST}"]),
        ):
            cert = ca.issue_cert(*hosts)
            cert.private_key_pem.write_to_path(str(tmp_path / f"{name}.key"))
            cert.cert_chain_pems[0].write_to_path(str(tmp_path / f"{name}.crt"))
        (tmp_path / "relayd.toml").write_text(
            f"""
[relay]
name = "relay.test"
state_dir = "relay-state"
access_log_key_file = "{keys}"
registry = "{tmp_path / "registry.sqlite3"}"
metrics_listen = "127.0.0.1:0"
[tunnel]
listen = "127.0.0.1:0"
cert_file = "{tmp_path / "relay.crt"}"
key_file = "{tmp_path / "relay.key"}"
[ingress]
link_zone = "{LINK_ZONE}"
https_listen = "127.0.0.1:0"
[api]
listen = "127.0.0.1:0"
[install]
cert_file = "{tmp_path / "install.crt"}"
key_file = "{tmp_path / "install.key"}"
pairing_url = "http://127.0.0.1:{portal.port}/pair"
"""
        )
        relay, listening = _start_relay(tmp_path)
        metrics = int(listening["metrics"][0].rsplit(":", 1)[1])
        (tmp_path / "agent.toml").write_text(
            f"""
[agent]
key_file = "{tmp_path / "nas" / "device.key"}"
state_dir = "{tmp_path / "nas"}"
pairing = true
[relay]
addresses = ["{listening["tunnel"][0]}"]
server_name = "relay.test"
ca_file = "{tmp_path / "ca.pem"}"
[reconnect]
initial_delay_s = 0.1
max_delay_s = 1
"""
        )
        (tmp_path / "nas").mkdir()
        agent = _start_agent(tmp_path)
        stack = Stack(
            portal,
            relay,
            agent,
            metrics,
            int(listening["https"][0].rsplit(":", 1)[1]),
            int(listening["api"][0].rsplit(":", 1)[1]),
        )
        try:
            yield stack
        finally:
            stack.agent.terminate()
            stack.agent.wait(timeout=20)
            relay.terminate()
            relay.wait(timeout=20)
        for log in ("agent.log", "relayd.log"):
            assert "Traceback" not in (tmp_path / log).read_text(), log


def test_an_owner_pairs_a_nas_by_its_code(tmp_path: Path) -> None:
    with pairing_stack(tmp_path) as stack:
        portal, metrics = stack.portal, stack.metrics_port
        shown = tmp_path / "nas" / "pairing.json"
        _wait(shown.exists, 20, "the pairing code")
        offer = json.loads(shown.read_text())
        assert offer["url"] == f"http://127.0.0.1:{portal.port}/pair"
        assert offer["code"] in (tmp_path / "agent.log").read_text()  # for the NAS's UI
        owner = portal.browser()
        owner.sign_up("olivia")
        guessed = _pair(owner, "AAAA-AAAA", "nas5")
        assert guessed.status == 404 and "not valid" in guessed.body
        done = _pair(owner, offer["code"].lower().replace("-", ""), "nas5")
        assert (done.status, done.headers["Location"]) == (303, "/devices?paired=nas5")
        assert "nas5 is now yours" in owner.request("GET", "/devices?paired=nas5").body
        # The agent is told, keeps its name, and comes up as the device by itself.
        identity = tmp_path / "nas" / "identity.json"
        _wait(identity.exists, 20, "the device identity")
        assert json.loads(identity.read_text()) == {"device_name": "nas5"}
        assert not shown.exists()
        _wait(lambda: _metric(metrics, "nascloud_relay_tunnels") == 1, 20, "the device tunnel")
        assert _metric(metrics, 'nascloud_relay_pairings_total{event="paired"}') == 1
        # A browser through the relay (the NAS serves nothing: refused) is in the owner's
        # history, its address masked.
        stack.browse("nas5")
        _wait(lambda: "127.0.0.0/24" in owner.request("GET", "/history").body, 20, "history")
        history = owner.request("GET", "/history").body
        assert "nas5" in history and "https" in history and "127.0.0.1<" not in history
        # The code was single use: another account gets nothing from it.
        thief = portal.browser()
        thief.sign_up("theo")
        assert _pair(thief, offer["code"], "mine").status == 404
        # Restarted, it is the device at once: no new code.
        stack.agent.terminate()
        assert stack.agent.wait(timeout=20) == 0
        _wait(lambda: _metric(metrics, "nascloud_relay_tunnels") == 0, 20, "the tunnel to go")
        stack.agent = _start_agent(tmp_path)
        _wait(lambda: _metric(metrics, "nascloud_relay_tunnels") == 1, 20, "the device again")
        assert _metric(metrics, 'nascloud_relay_pairings_total{event="code_given"}') == 1
        # Guessing: ten tries per address (and per account) per 15 minutes, then none at
        # all; three were made from this address already.
        answers = [_pair(thief, f"ZZZZ-{i:04d}", "mine").status for i in range(11)]
        assert answers == [404] * 7 + [429] * 4, answers


def _pair(browser: Browser, code: str, name: str) -> Answer:
    form = {"csrf": browser.csrf("/pair"), "code": code, "name": name}
    return browser.request("POST", "/pair", form)


def test_an_owner_turns_link_off_and_on_again(tmp_path: Path) -> None:
    """Off, relayd closes the NAS's tunnel and refuses it; on again, the NAS is back by itself."""
    with pairing_stack(tmp_path) as stack:
        shown = tmp_path / "nas" / "pairing.json"
        _wait(shown.exists, 20, "the pairing code")
        owner = stack.portal.browser()
        owner.sign_up("quinn")
        assert _pair(owner, json.loads(shown.read_text())["code"], "nas6").status == 303
        _wait(lambda: stack.metric("nascloud_relay_tunnels") == 1, 20, "the device tunnel")
        csrf = owner.csrf("/devices/nas6")
        assert "browsers reach this NAS" in owner.request("GET", "/devices/nas6").body
        off = owner.request("POST", "/devices/nas6/link", {"csrf": csrf, "link": "off"})
        assert off.headers["Location"] == "/devices/nas6?saved=1"
        _wait(lambda: stack.metric("nascloud_relay_tunnels") == 0, 20, "the tunnel closed")
        closed = 'nascloud_relay_tunnels_closed_total{reason="link_off"}'
        assert stack.metric(closed) == 1
        # It keeps trying (backoff up to a second here) and is refused each time.
        time.sleep(3)
        assert stack.metric("nascloud_relay_tunnels") == 0
        assert "the relay refuses this NAS" in owner.request("GET", "/devices/nas6").body
        owner.request("POST", "/devices/nas6/link", {"csrf": csrf, "link": "on"})
        _wait(lambda: stack.metric("nascloud_relay_tunnels") == 1, 20, "the NAS back")
        # Another account cannot turn it off.
        other = stack.portal.browser()
        other.sign_up("rita")
        refused = other.request(
            "POST", "/devices/nas6/link", {"csrf": other.csrf("/devices"), "link": "off"}
        )
        assert refused.status == 404
