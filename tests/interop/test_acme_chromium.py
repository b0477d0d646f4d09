"""A browser that trusts only Pebble's root opens the NAS's page through the relay: the NAS
got its certificate by itself (the agent's ACME client, DNS-01 over the tunnel), the relay
passed the TLS through, and Chromium checked the chain with no exception of any kind."""

from __future__ import annotations

import contextlib
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import trio

from config import AgentConfig, loads
from ddnsd._daemon import Ddnsd
from nasagent._agent import Agent
from tests.integration.test_relay_ddns import ddnsd_and_relayd
from tests.pebble_harness import Pebble, running_pebble

from .cdp import HEADLESS_CHROMIUM
from .conftest import require
from .test_acme_pebble import _agent_config, _until


class NasPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = (
            b"<html><body><h1>Hello from nas1</h1><p>certificate from its own CA</p></body></html>"
        )
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _nss_trusting(home: Path, root_pem: bytes | None) -> None:
    """Chromium's certificate store on Linux ($HOME/.pki/nssdb), with `root_pem` as the only
    root added to the system's (none at all when None)."""
    database = home / ".pki" / "nssdb"
    database.mkdir(parents=True)
    subprocess.run(["certutil", "-d", f"sql:{database}", "-N", "--empty-password"], check=True)
    if root_pem is not None:
        (home / "root.pem").write_bytes(root_pem)
        trusted = ("-A", "-n", "pebble", "-t", "C,,", "-i", str(home / "root.pem"))
        subprocess.run(["certutil", "-d", f"sql:{database}", *trusted], check=True)


async def _chromium(
    home: Path, https: str, *args: str, host: str = "nas1.link.test"
) -> subprocess.CompletedProcess[bytes]:
    port = https.rsplit(":", 1)[1]
    return await trio.run_process(
        [
            *HEADLESS_CHROMIUM,
            f"--user-data-dir={home / 'profile'}",
            f"--host-resolver-rules=MAP {host} 127.0.0.1",
            *args,
            f"https://{host}:{port}/",
        ],
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


async def test_chromium_trusting_only_pebble_opens_the_nas_page(tmp_path: Path) -> None:
    require("chromium", "certutil", "pebble")
    with trio.fail_after(180):
        async with ddnsd_and_relayd(tmp_path) as (ddnsd, relay):
            dns_address = ddnsd.listening["dns"][0]
            with running_pebble(tmp_path / "pebble", dns_address) as pebble:
                nas = ThreadingHTTPServer(("127.0.0.1", 0), NasPage)
                text = (
                    _agent_config(
                        tmp_path,
                        relay.listening["tunnel"][0],
                        dns_address,
                        pebble.directory_url,
                        pebble.api_ca_file,
                    )
                    + f'[services]\nweb = "127.0.0.1:{nas.server_address[1]}"\n'
                )
                agent = Agent(loads(AgentConfig, text, "agent.toml", tmp_path))
                certificates = agent.certificates
                assert certificates is not None
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(agent.run)
                    await _until(lambda: certificates.issued >= 1, "the NAS's certificate")
                    # The NAS's web server takes the files the agent wrote.
                    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                    context.load_cert_chain(tmp_path / "web/cert.pem", tmp_path / "web/key.pem")
                    nas.socket = context.wrap_socket(nas.socket, server_side=True)
                    threading.Thread(target=nas.serve_forever, daemon=True).start()
                    root = pebble.issuing_root()
                    https = relay.listening["https"][0]
                    trusting = tmp_path / "trusting"
                    await trio.to_thread.run_sync(_nss_trusting, trusting, root)
                    page = await _chromium(trusting, https, "--dump-dom")
                    assert b"Hello from nas1" in page.stdout, page.stderr[-3000:]
                    shot = tmp_path / "nas-page-pebble.png"
                    await _chromium(
                        trusting, https, f"--screenshot={shot}", "--window-size=800,300"
                    )
                    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
                    print(f"screenshot saved at {shot}")
                    # The same browser without Pebble's root gets no page: nothing else let
                    # it through.
                    stranger = tmp_path / "stranger"
                    await trio.to_thread.run_sync(_nss_trusting, stranger, None)
                    refused = await _chromium(stranger, https, "--dump-dom")
                    assert b"Hello from nas1" not in refused.stdout
                    nursery.cancel_scope.cancel()
                nas.shutdown()
                nas.server_close()


async def test_chromium_trusting_only_pebble_opens_the_install_site(tmp_path: Path) -> None:
    """relayd's own certificate for its install site, from Pebble by relayd itself."""
    require("chromium", "certutil", "pebble")
    pebbles: list[Pebble] = []
    with contextlib.ExitStack() as stack, trio.fail_after(180):

        def with_pebble(ddnsd: Ddnsd) -> str:
            dns_address = ddnsd.listening["dns"][0]
            pebbles.append(stack.enter_context(running_pebble(tmp_path / "pebble", dns_address)))
            return (
                f'[install]\n[acme]\ndirectory_url = "{pebbles[0].directory_url}"\n'
                f'ca_file = "{pebbles[0].api_ca_file}"\ncheck_servers = ["{dns_address}"]\n'
                "propagation_timeout_s = 20\nretry_initial_s = 0.2\nretry_max_s = 2\n"
            )

        async with ddnsd_and_relayd(tmp_path, with_pebble) as (_, relay):
            site = relay.install
            assert site is not None
            await _until(lambda: site.context is not None, "the install site's certificate")
            https = relay.listening["https"][0]
            trusting = tmp_path / "trusting"
            await trio.to_thread.run_sync(_nss_trusting, trusting, pebbles[0].issuing_root())
            host = "install.link.test"
            page = await _chromium(trusting, https, "--dump-dom", host=host)
            assert b"Set up your new NAS" in page.stdout, page.stderr[-3000:]
            shot = tmp_path / "install-site-pebble.png"
            await _chromium(
                trusting, https, f"--screenshot={shot}", "--window-size=800,500", host=host
            )
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            print(f"screenshot saved at {shot}")
            stranger = tmp_path / "stranger"
            await trio.to_thread.run_sync(_nss_trusting, stranger, None)
            refused = await _chromium(stranger, https, "--dump-dom", host=host)
            assert b"Set up your new NAS" not in refused.stdout
