"""A real browser: headless Chromium types the cloud key on the install page, continues to the
relayed setup session, lands on the test NAS's setup page through the relay, and a
screenshot is saved."""

from __future__ import annotations

from pathlib import Path

from tests.integration.test_install import CLOUD_KEY, INSTALL_HOST, running_install
from tests.interop.test_link_chromium import spki_hash

from .cdp import Browser
from .conftest import require


def test_chromium_finds_the_nas_by_its_cloud_key_and_reaches_its_setup(tmp_path: Path) -> None:
    require("chromium")
    with running_install(tmp_path, tunnel_host="[::1]") as install:
        certificate = (tmp_path / "install.crt").read_bytes()
        with Browser(
            tmp_path / "chromium-profile",
            f"--host-resolver-rules=MAP {INSTALL_HOST} 127.0.0.1, MAP *.{INSTALL_HOST} 127.0.0.1",
            f"--ignore-certificate-errors-spki-list={spki_hash(certificate)}",
            "--window-size=1024,640",
        ) as browser:
            browser.navigate(f"https://{INSTALL_HOST}:{install.https_port}/")
            assert browser.run("document.title") == "Set up your new NAS"
            # A typo: the key is kept to correct, the answer shown as an error.
            browser.act_and_wait_for_load(
                "document.getElementById('cloud_key').value = 'K7QD-XM2P-9HTA-4R3C';"
                "document.getElementById('find').click()"
            )
            assert browser.run("document.getElementById('cloud_key').value") == (
                "K7QD-XM2P-9HTA-4R3C"
            )
            assert browser.run("document.querySelector('[role=alert]') !== null")
            # The field fits what it asks for: its placeholder is not cut off.
            assert browser.run(
                "(() => { const f = document.getElementById('cloud_key');"
                " return f.scrollWidth <= f.clientWidth; })()"
            )
            browser.screenshot(tmp_path / "install-wrong-key.png")
            browser.act_and_wait_for_load(
                f"document.getElementById('cloud_key').value = {CLOUD_KEY.lower()!r};"
                "document.getElementById('find').click()"
            )
            assert browser.run("document.title") == "Your NAS was found"
            (tmp_path / "install-found.png").unlink(missing_ok=True)
            browser.screenshot(tmp_path / "install-found.png")
            browser.act_and_wait_for_load("document.getElementById('continue').click()")
            assert browser.run("location.hostname").endswith("." + INSTALL_HOST)
            assert browser.run("document.body.innerText") == "NAS setup wizard at /"
            screenshot = tmp_path / "nas-setup-through-relay.png"
            browser.screenshot(screenshot)
        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(screenshot.read_bytes()) > 2000
        forwarded = {k.lower(): v for k, v in install.seen[-1].items()}["forwarded"]
        assert forwarded == "for=127.0.0.1;proto=https"  # the browser, relayed
        print(f"screenshots saved at {tmp_path}")
