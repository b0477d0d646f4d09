"""Owners who run their own ACME client on the NAS: certbot's RFC 2136 plugin, with the
device's TSIG key, gets a certificate from Pebble for both of the device's names. It updates
the link zone's challenge name itself (it does not follow CNAMEs); ddnsd stores it where the
CNAME points."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from tests.ddnsd_harness import Ddnsd
from tests.pebble_harness import running_pebble

from .conftest import require


def test_certbot_gets_both_names_with_the_devices_tsig_key(ddnsd: Ddnsd, tmp_path: Path) -> None:
    require("certbot", "pebble")
    algorithm, name, secret = ddnsd.tsig["nas1"].split(":")
    credentials = tmp_path / "rfc2136.ini"
    credentials.write_text(
        f"dns_rfc2136_server = 127.0.0.1\n"
        f"dns_rfc2136_port = {ddnsd.dns_port}\n"
        f"dns_rfc2136_name = {name}\n"
        f"dns_rfc2136_secret = {secret}\n"
        f"dns_rfc2136_algorithm = {algorithm.upper()}\n"
    )
    credentials.chmod(0o600)
    with running_pebble(tmp_path / "pebble", f"127.0.0.1:{ddnsd.dns_port}") as pebble:
        done = subprocess.run(
            [
                "certbot",
                "certonly",
                "--non-interactive",
                "--agree-tos",
                "--register-unsafely-without-email",
                "--server",
                pebble.directory_url,
                *("--config-dir", str(tmp_path / "config"), "--work-dir", str(tmp_path / "work")),
                *("--logs-dir", str(tmp_path / "logs"), "--cert-name", "nas1"),
                "--authenticator",
                "dns-rfc2136",
                *("--dns-rfc2136-credentials", str(credentials)),
                *("--dns-rfc2136-propagation-seconds", "1"),
                *("-d", "nas1.dyn.test", "-d", "nas1.link.test"),
            ],
            env={**os.environ, "REQUESTS_CA_BUNDLE": str(pebble.api_ca_file)},
            capture_output=True,
            text=True,
            timeout=180,
        )
        log = (tmp_path / "logs" / "letsencrypt.log").read_text(errors="replace")
        assert done.returncode == 0, done.stdout + done.stderr + log[-4000:]
        root = pebble.issuing_root()
    chain = x509.load_pem_x509_certificates(
        (tmp_path / "config" / "live" / "nas1" / "fullchain.pem").read_bytes()
    )
    store = Store([x509.load_pem_x509_certificate(root)])
    for host in ("nas1.dyn.test", "nas1.link.test"):
        verifier = PolicyBuilder().store(store).build_server_verifier(x509.DNSName(host))
        verifier.verify(chain[0], chain[1:])
