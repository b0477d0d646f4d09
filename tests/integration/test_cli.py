"""The console scripts as a user runs them: --help, --version, --check-config exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack_harness import running_stack

BIN = Path(sys.executable).parent
EXAMPLES = Path(__file__).resolve().parents[2] / "config" / "examples"
SCRIPTS = ["relayd", "ddnsd", "nascloud-agent", "nascloud"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_and_version(script: str) -> None:
    helped = run(script, "--help")
    assert helped.returncode == 0
    assert helped.stdout.startswith(f"usage: {script}")
    versioned = run(script, "--version")
    assert versioned.returncode == 0
    assert versioned.stdout.strip() == f"{script} 0.1.0"


def test_check_config_accepts_a_valid_file_and_rejects_a_broken_one(tmp_path: Path) -> None:
    valid = run(
        "nascloud-agent", "--check-config", "--config", str(EXAMPLES / "nascloud-agent.toml")
    )
    assert valid.returncode == 0, valid.stderr
    assert "is valid" in valid.stdout

    broken = tmp_path / "agent.toml"
    broken.write_text('[relay]\naddresses = "x"\nserver_name = "R"\nbogus = 1\n')
    result = run("nascloud-agent", "--check-config", "--config", str(broken))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert f"{broken}: [relay].bogus: unknown key" in lines
    # One address or a list of them: "x" is read as one, and is no address.
    assert (
        f'{broken}: [relay].addresses: expected "host:port", got \'x\' (e.g. "127.0.0.1:7443")'
        in lines
    )
    assert f"{broken}: [relay].server_name: must be lower-case (try 'r')" in lines
    assert lines[-1] == f"nascloud-agent: 3 problem(s) in {broken}"


@pytest.mark.parametrize("script", ["relayd", "ddnsd"])
def test_check_config_on_a_missing_file_says_so(script: str, tmp_path: Path) -> None:
    result = run(script, "--check-config", "--config", str(tmp_path / "none.toml"))
    assert result.returncode == 1
    assert "cannot read: No such file or directory" in result.stderr


def test_nascloud_run_serves_the_printed_commands(tmp_path: Path) -> None:
    import json
    import time

    import dns.message
    import dns.query

    with running_stack(tmp_path) as stack:
        base_port = stack.base_port
        endpoints = stack.endpoints
        assert endpoints["dns"] == {"host": "127.0.0.1", "port": base_port}
        dyndns2 = endpoints["dyndns2"]
        host = endpoints["demo_device"]["hostname"]
        reply = subprocess.run(
            [
                "curl",
                "-s",
                "-u",
                f"{dyndns2['username']}:{dyndns2['password']}",
                f"{dyndns2['url']}?hostname={host}&myip=198.51.100.7",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        assert reply.strip() == "good 198.51.100.7"
        response = dns.query.udp(
            dns.message.make_query(host, "A"), "127.0.0.1", port=base_port, timeout=5
        )
        assert response.answer[0][0].address == "198.51.100.7"
        # The demo NAS's page through the relay, with the NAS's own certificate.
        link = endpoints["demo_device"]["relay_hostname"]
        https = endpoints["relay"]["https_port"]
        page = ""
        deadline = time.monotonic() + 20
        while "Hello from your NAS" not in page and time.monotonic() < deadline:
            page = subprocess.run(
                [
                    "curl",
                    "-s",
                    "--cacert",
                    endpoints["demo_device"]["ca_cert"],
                    "--resolve",
                    f"{link}:{https}:127.0.0.1",
                    f"https://{link}:{https}/",
                ],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout
            time.sleep(0.2)
        assert "Hello from your NAS" in page
        lookup = subprocess.run(
            [
                "curl",
                "-s",
                "-H",
                f"Authorization: Bearer {endpoints['api']['token']}",
                f"{endpoints['api']['url']}/v1/devices/demo",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        assert json.loads(lookup)["online"] is True
        metrics = subprocess.run(
            ["curl", "-s", endpoints["metrics"]["url"]],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        assert "nascloud_relay_tunnels 1" in metrics
        # The brand-new NAS, found by its cloud key: from its own network, sent straight to
        # its setup page; from another, through a relayed session.
        install = endpoints["install"]
        resolve = f"{install['hostname']}:{https}:127.0.0.1"

        def find(source: str) -> str:
            return subprocess.run(
                [
                    "curl",
                    "-s",
                    "-i",
                    "--interface",
                    source,
                    "--cacert",
                    endpoints["install"]["ca_cert"],
                    "--resolve",
                    resolve,
                    "--data-urlencode",
                    f"cloud_key={install['cloud_key']}",
                    f"{install['url']}find",
                ],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout

        deadline = time.monotonic() + 20
        while "HTTP/1.1 200" not in (found := find("127.0.0.1")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert f"url={install['setup_url']}" in found, found
        relayed = find("127.0.0.2")
        session = relayed.split('id="continue" href="', 1)[1].split('"', 1)[0]
        session_host = session.split("//", 1)[1].split(":", 1)[0]
        setup = subprocess.run(
            [
                "curl",
                "-s",
                "--interface",
                "127.0.0.2",
                "--cacert",
                endpoints["install"]["ca_cert"],
                "--resolve",
                f"{session_host}:{https}:127.0.0.1",
                session,
            ],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        assert "Welcome to your new NAS" in setup
    assert stack.returncode == 0, stack.output
    assert install["cloud_key"] in stack.output  # printed, with the commands to try
    assert f"dig @127.0.0.1 -p {base_port} {host} A" in stack.output
