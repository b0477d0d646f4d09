"""The owner's journey in a real browser: headless Chromium signs up on the portal, types the
pairing code a running agent shows, sees the NAS become theirs and come online through the
relay, then finds a connection in its history; screenshots of each step are saved."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.test_link import _wait
from tests.integration.test_pairing import pairing_stack
from tests.integration.test_portal import PASSWORD

from .cdp import Browser
from .conftest import require


def test_chromium_pairs_a_nas_and_sees_it_in_the_history(tmp_path: Path) -> None:
    require("chromium")
    with pairing_stack(tmp_path) as stack:
        shown = tmp_path / "nas" / "pairing.json"
        _wait(shown.exists, 20, "the pairing code")
        code = json.loads(shown.read_text())["code"]
        base = f"http://127.0.0.1:{stack.portal.port}"
        with Browser(tmp_path / "chromium-profile", "--window-size=900,720") as browser:
            browser.navigate(base + "/sign-up")
            browser.act_and_wait_for_load(
                "document.querySelector('[name=account_name]').value = 'pia';"
                f"document.querySelector('[name=password]').value = {PASSWORD!r};"
                "document.querySelector('form[action=\"/sign-up\"]').submit()"
            )
            browser.navigate(base + "/pair")
            browser.run(
                f"document.querySelector('[name=code]').value = {code.lower()!r};"
                "document.querySelector('[name=name]').value = 'pias-nas'"
            )
            browser.screenshot(tmp_path / "pair-typed.png")
            browser.act_and_wait_for_load(
                "document.querySelector('form[action=\"/pair\"]').submit()"
            )
            assert "pias-nas is now yours" in browser.run("document.body.innerText")
            browser.screenshot(tmp_path / "pair-done.png")
            _wait(lambda: stack.metric("nascloud_relay_tunnels") == 1, 20, "the NAS online")
            stack.browse("pias-nas")

            def in_history() -> bool:
                browser.navigate(base + "/history")
                return "127.0.0.0/24" in browser.run("document.body.innerText")

            _wait(in_history, 20, "the connection in the history")
            browser.screenshot(tmp_path / "history.png")
        for shot in ("pair-typed.png", "pair-done.png", "history.png"):
            assert (tmp_path / shot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        print(f"screenshots saved at {tmp_path}")
