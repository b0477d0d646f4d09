"""A real browser on the owner portal: headless Chromium signs up (the `__Host-` session cookie
taken over plain HTTP on loopback, as browsers allow), sees the account's device, switches to
French; screenshots are saved. No script runs in the pages: the test types through DevTools."""

from __future__ import annotations

from pathlib import Path

from tests.integration.test_portal import PASSWORD, _enrol, running_portal

from .cdp import Browser
from .conftest import require


def test_chromium_signs_up_and_sees_its_device(tmp_path: Path) -> None:
    require("chromium")
    with running_portal(tmp_path) as portal:
        with Browser(tmp_path / "chromium-profile", "--window-size=900,700") as browser:
            base = f"http://127.0.0.1:{portal.port}"
            browser.navigate(base + "/sign-up")
            assert browser.run("document.title").startswith("Create an account")
            browser.act_and_wait_for_load(
                "document.querySelector('[name=account_name]').value = 'heidi';"
                f"document.querySelector('[name=password]').value = {PASSWORD!r};"
                "document.querySelector('[name=display_name]').value = 'Heidi';"
                "document.querySelector('form[action=\"/sign-up\"]').submit()"
            )
            assert browser.run("location.pathname") == "/devices"
            _enrol(portal.registry, "heidi", "nas7")
            browser.navigate(base + "/devices")  # the session cookie went with it
            text = browser.run("document.body.innerText")
            assert "nas7" in text and "https://nas7.link.test/" in text
            shot = tmp_path / "portal-devices.png"
            browser.screenshot(shot)
            browser.act_and_wait_for_load("document.querySelector('a[lang=fr]').click()")
            assert "Vos appareils" in browser.run("document.body.innerText")
            browser.screenshot(tmp_path / "portal-devices-fr.png")
            # Signed out, the same browser is sent back to the sign-in page.
            browser.act_and_wait_for_load("document.querySelector('form.inline').submit()")
            browser.navigate(base + "/devices")
            assert browser.run("location.pathname") == "/sign-in"
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        print(f"screenshots saved at {tmp_path}")
