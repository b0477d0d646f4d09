"""Privacy rule 1 over the whole local stack: unique strings sent in payloads, paths, query
strings and headers — through the relay, to DynDNS2, in a refused RFC 2136 update, through a
relayed Cloud Install session and as a wrong cloud key — appear in no log, no database and no
file the cloud keeps."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.tsigkeyring
import dns.update

from tests.stack_harness import BIN, running_stack


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-s", *args], capture_output=True, text=True, timeout=30)


def test_canaries_are_kept_nowhere(tmp_path: Path) -> None:
    canary = "canary-" + os.urandom(8).hex()
    with running_stack(tmp_path) as stack:
        endpoints = stack.endpoints
        # Through the relay: header, path, query and body of an HTTPS request to the NAS.
        link = endpoints["demo_device"]["relay_hostname"]
        https = endpoints["relay"]["https_port"]
        relayed = ""
        deadline = time.monotonic() + 20
        while "Hello from your NAS" not in relayed and time.monotonic() < deadline:
            relayed = _curl(
                "--cacert",
                endpoints["demo_device"]["ca_cert"],
                "--resolve",
                f"{link}:{https}:127.0.0.1",
                "-H",
                f"X-Canary: {canary}",
                "-A",
                f"browser/{canary}",
                f"https://{link}:{https}/{canary}?q={canary}",
            ).stdout
            time.sleep(0.2)
        assert "Hello from your NAS" in relayed
        # A body too (the demo NAS's web server answers POST with its own 501).
        posted = _curl(
            "--cacert",
            endpoints["demo_device"]["ca_cert"],
            "--resolve",
            f"{link}:{https}:127.0.0.1",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--data",
            canary,
            f"https://{link}:{https}/upload",
        )
        assert posted.stdout == "501", posted
        # Plain HTTP to the relay: redirected, the path and query not kept.
        http = endpoints["relay"]["http_port"]
        redirected = _curl(
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            f"Host: {link}",
            f"http://127.0.0.1:{http}/{canary}?q={canary}",
        )
        assert redirected.stdout == "308"
        # DynDNS2: an accepted update with a canary in the query and the User-Agent, and a
        # refused one with the canary as user name and password.
        dyndns2 = endpoints["dyndns2"]
        host = endpoints["demo_device"]["hostname"]
        for user, password, word in (
            (dyndns2["username"], dyndns2["password"], "good"),
            (f"{canary}.example", canary, "badauth"),
        ):
            reply = _curl(
                "-u",
                f"{user}:{password}",
                "-A",
                f"router/{canary}",
                f"{dyndns2['url']}?hostname={host}&myip=198.51.100.9&extra={canary}",
            )
            assert reply.stdout.split()[0] == word, reply.stdout
        # RFC 2136: a signed update for a name the key may not change, carrying the canary.
        algorithm, name, secret = endpoints["rfc2136"]["tsig"].split(":")
        keyring = dns.tsigkeyring.from_text({name: (algorithm, secret)})
        update = dns.update.UpdateMessage(
            endpoints["zone"], keyring=keyring, keyname=dns.name.from_text(name)
        )
        update.replace(f"someone-else.{endpoints['zone']}.", 60, "TXT", f'"{canary}"')
        answer = dns.query.tcp(update, "127.0.0.1", port=endpoints["dns"]["port"], timeout=5)
        assert answer.rcode() == dns.rcode.REFUSED
        # Cloud Install: a relayed setup session of the new NAS (the relay ends TLS there and
        # reads the HTTP), with the canary in its path, query, headers and body; and a wrong
        # cloud key carrying it.
        install = endpoints["install"]
        resolve = f"{install['hostname']}:{https}:127.0.0.1"
        deadline = time.monotonic() + 20
        found = ""
        while 'id="continue"' not in found and time.monotonic() < deadline:
            found = _curl(
                *("--interface", "127.0.0.2", "--cacert", endpoints["install"]["ca_cert"]),
                *("--resolve", resolve, "-A", f"browser/{canary}"),
                *("--data-urlencode", f"cloud_key={install['cloud_key']}"),
                f"{install['url']}find",
            ).stdout
            time.sleep(0.2)
        session = found.split('id="continue" href="', 1)[1].split('"', 1)[0]
        session_host = session.split("//", 1)[1].split(":", 1)[0]
        to_session = (
            *("--interface", "127.0.0.2", "--cacert", endpoints["install"]["ca_cert"]),
            *("--resolve", f"{session_host}:{https}:127.0.0.1"),
            *("-H", f"X-Canary: {canary}", "-A", f"browser/{canary}"),
        )
        setup = _curl(*to_session, f"{session}{canary}?q={canary}")
        assert "Welcome to your new NAS" in setup.stdout, setup
        # A body too (the demo setup page answers POST with its own 501).
        posted = _curl(
            *to_session, "-o", "/dev/null", "-w", "%{http_code}", "--data", canary, session
        )
        assert posted.stdout == "501", posted
        wrong = _curl(
            *("--cacert", endpoints["install"]["ca_cert"], "--resolve", resolve),
            *("--data-urlencode", f"cloud_key={canary}"),
            f"{install['url']}find",
        )
        assert "No new NAS is waiting" in wrong.stdout
    assert stack.returncode == 0, stack.output
    files = [p for p in stack.state.rglob("*") if p.is_file()]
    assert any(p.name.startswith("registry.sqlite3") for p in files)
    for path in files:
        assert canary.encode() not in path.read_bytes(), path
    # The operational logs of ddnsd, relayd and the agent: the stack's output (the demo NAS
    # logs nothing of its visitors).
    assert canary not in stack.output
    # What was kept instead: metadata records of each of those requests, readable with the keys.
    logs = subprocess.run(
        [
            str(BIN / "nascloud"),
            "logs",
            "--json",
            "--registry",
            str(stack.state / "registry.sqlite3"),
            "--key-file",
            str(stack.state / "relayd" / "access-log.keys"),
            "--key-file",
            str(stack.state / "ddnsd" / "access-log.keys"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    kept = json.loads(logs.stdout)
    assert kept["unreadable"] == 0
    kinds = {(r["ingress"], r["result"]) for r in kept["records"]}
    assert {("https", "ok"), ("http", "redirected"), ("dyndns2", "good")} <= kinds
    assert ("install", "ok") in kinds
    assert ("rfc2136", "refused") in kinds
