"""A real browser: headless Chromium opens the NAS's page through the relay, trusting the
NAS's key by its SPKI hash, and a screenshot is saved."""

from __future__ import annotations

import base64
import hashlib
import subprocess

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.integration.test_link import LINK_ZONE, Link, link

from .cdp import HEADLESS_CHROMIUM
from .conftest import require

__all__ = ["link"]


def spki_hash(pem: bytes) -> str:
    certificate = x509.load_pem_x509_certificate(pem)
    spki = certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def chromium(link: Link, *args: str) -> subprocess.CompletedProcess[str]:
    require("chromium")
    leaf = (link.directory / "nas-leaf.pem").read_bytes()
    profile = link.directory / "chromium-profile"
    return subprocess.run(
        [
            *HEADLESS_CHROMIUM,
            f"--user-data-dir={profile}",
            f"--host-resolver-rules=MAP nas1.{LINK_ZONE} 127.0.0.1",
            f"--ignore-certificate-errors-spki-list={spki_hash(leaf)}",
            *args,
            f"https://nas1.{LINK_ZONE}:{link.https_port}/from-a-browser",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_chromium_gets_the_nas_page_through_the_relay(link: Link) -> None:
    dom = chromium(link, "--dump-dom")
    assert "hello from the NAS, you asked for /from-a-browser" in dom.stdout, dom.stderr[-2000:]
    screenshot = link.directory / "nas-through-relay.png"
    shot = chromium(link, f"--screenshot={screenshot}", "--window-size=1024,400")
    assert screenshot.exists(), shot.stderr[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot saved at {screenshot}")
