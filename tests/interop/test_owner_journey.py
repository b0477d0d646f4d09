"""An owner's whole journey in headless Chromium, on the real stack (portal, relayd with its
lookup API, ddnsd, a NAS's agent asking to be paired; one registry): sign up, turn on
two-step sign-in, sign in again with a code and "trust this computer", add a passkey and sign
in with it on a fresh profile, pair the NAS by its code, let a second account reach it
(custom mode, then the lookup API), see a browser's connection in the history, download the
export, turn Link off (the relay refuses the NAS), and delete the account: its names answer
NXDOMAIN and the database files hold none of its data. Screenshots of each step are saved."""

from __future__ import annotations

import base64
import json
import re
import sqlite3
import subprocess
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP

from tests.database import database_bytes
from tests.ddnsd_harness import DdnsdOptions, start, stop, write_config
from tests.integration.test_link import _wait
from tests.integration.test_pairing import pairing_stack
from tests.integration.test_portal import PASSWORD
from tests.integration.test_portal import Browser as HttpBrowser
from tunnel import load_key

from .cdp import Browser
from .conftest import require
from .test_portal_passkeys import authenticator, free_port, press

OWNER, DISPLAY, EMAIL = "wrenna", "Wren Quill", "wren.quill@example.org"
DEVICE = "blue-box"


def submit(browser: Browser, action: str, values: dict[str, str]) -> None:
    """Fill the fields of the form posting to `action` (pages hold several password fields)
    and submit it, as a person typing there would."""
    form = f"document.querySelector('form[action=\"{action}\"]')"
    typed = "".join(f"{form}.elements[{k!r}].value = {v!r};" for k, v in values.items())
    browser.act_and_wait_for_load(typed + f"{form}.submit()")


def text(browser: Browser) -> str:
    return str(browser.run("document.body.innerText"))


def totp(key: str, at: float) -> str:
    secret = base64.b32decode(key.replace(" ", "") + "=" * (-len(key.replace(" ", "")) % 8))
    return TOTP(secret, 6, SHA1(), 30).generate(at).decode()


def rcode(port: int, name: str) -> str:
    response = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=5)
    return dns.rcode.to_text(response.rcode())


def test_an_owner_from_sign_up_to_erasure(tmp_path: Path) -> None:
    require("chromium", "curl")
    port = free_port()
    base = f"http://localhost:{port}"
    shots: list[str] = []
    with pairing_stack(tmp_path, portal_port=port) as stack:
        # ddnsd on the stack's registry: the names of its devices.
        ddns = tmp_path / "ddns"
        (ddns / "state").mkdir(parents=True)
        config = write_config(ddns, DdnsdOptions(devices=()))
        config.write_text(
            config.read_text().replace(
                'registry = "state/registry.sqlite3"',
                f'registry = "{tmp_path / "registry.sqlite3"}"',
            )
        )
        (ddns / "secrets.json").write_text('{"tokens": {}, "tsig": {}}')
        daemon = start(ddns)
        try:

            def shot(browser: Browser, name: str) -> None:
                browser.screenshot(tmp_path / f"{name}.png")
                shots.append(name)

            with Browser(tmp_path / "first-profile", "--window-size=900,760") as first:
                first_key = authenticator(first)
                first.call(
                    "Browser.setDownloadBehavior",
                    behavior="allow",
                    downloadPath=str(tmp_path / "downloads"),
                )
                # Sign up.
                first.navigate(base + "/sign-up")
                submit(
                    first,
                    "/sign-up",
                    {
                        "account_name": OWNER,
                        "password": PASSWORD,
                        "display_name": DISPLAY,
                        "email": EMAIL,
                    },
                )
                assert first.run("location.pathname") == "/devices"
                # Two-step sign-in on, from the key the page shows.
                first.navigate(base + "/account/two-step")
                key = first.run("document.getElementById('totp-key').textContent")
                shot(first, "journey-two-step")
                now = time.time()
                submit(first, "/account/two-step", {"password": PASSWORD, "code": totp(key, now)})
                recovery = re.findall(r"[0-9A-Z]{5}-[0-9A-Z]{5}", text(first))
                assert len(recovery) == 10, text(first)
                # Sign out and in: the password, then a code (the next step's: the one
                # used to turn it on is spent), trusting this computer.
                first.act_and_wait_for_load("document.querySelector('form.inline').submit()")
                first.navigate(base + "/sign-in")
                submit(first, "/sign-in", {"account_name": OWNER, "password": PASSWORD})
                assert first.run("document.title").startswith("Two-step")
                code = totp(key, now + 30)
                first.run(
                    "document.querySelector('[name=trust]').checked = true;"
                    f"document.querySelector('[name=code]').value = {code!r}"
                )
                shot(first, "journey-code")
                submit(first, "/sign-in/code", {"code": code})
                assert first.run("location.pathname") == "/devices", text(first)
                # Trusted: signed out and in again, the password alone.
                first.act_and_wait_for_load("document.querySelector('form.inline').submit()")
                first.navigate(base + "/sign-in")
                submit(first, "/sign-in", {"account_name": OWNER, "password": PASSWORD})
                assert first.run("location.pathname") == "/devices", text(first)
                # A passkey.
                first.navigate(base + "/account/passkeys")
                submit(first, "/account/passkeys/new", {"name": "laptop", "password": PASSWORD})
                press(first, "form[data-passkey] button")
                assert "laptop" in text(first)
                [credential] = first.call(
                    "WebAuthn.getCredentials", session=True, authenticatorId=first_key
                )["credentials"]

                with Browser(tmp_path / "fresh-profile", "--window-size=900,760") as fresh:
                    fresh.call(
                        "WebAuthn.addCredential",
                        session=True,
                        authenticatorId=authenticator(fresh),
                        credential=credential,
                    )
                    fresh.navigate(base + "/sign-in")
                    press(fresh, "form[data-passkey] button")
                    assert fresh.run("location.pathname") == "/devices", text(fresh)
                    shot(fresh, "journey-passkey-signed-in")
                    # Pair the NAS by the code it shows.
                    shown = tmp_path / "nas" / "pairing.json"
                    _wait(shown.exists, 20, "the pairing code")
                    pairing = json.loads(shown.read_text())["code"]
                    fresh.navigate(base + "/pair")
                    submit(fresh, "/pair", {"code": pairing, "name": DEVICE})
                    assert f"{DEVICE} is now yours" in text(fresh)
                    _wait(lambda: stack.metric("nascloud_relay_tunnels") == 1, 20, "the NAS")
                    _wait(
                        lambda: rcode(daemon.dns_port, f"{DEVICE}.dyn.test") == "NOERROR",
                        10,
                        "its name in ddnsd",
                    )

                # A second account, let in by name: the lookup API shows it the device.
                friend = HttpBrowser(stack.portal.port)
                friend.sign_up("yuri")
                friend_csrf = friend.csrf("/account")
                made = friend.request(
                    "POST", "/account/tokens", {"csrf": friend_csrf, "password": PASSWORD}
                )
                token = re.search(r'<code id="secret">([^<]+)</code>', made.body)
                assert token

                def lookup() -> int:
                    done = subprocess.run(
                        [
                            "curl",
                            "-s",
                            "-o",
                            "/dev/null",
                            "-w",
                            "%{http_code}",
                            "-H",
                            f"Authorization: Bearer {token.group(1)}",
                            f"http://127.0.0.1:{stack.api_port}/v1/devices/{DEVICE}",
                        ],
                        capture_output=True,
                        text=True,
                        timeout=30,
                    )
                    return int(done.stdout or 0)

                assert lookup() == 404  # private: as if it did not exist
                first.navigate(base + f"/devices/{DEVICE}")
                first.run("document.querySelector('[name=mode][value=custom]').checked = true")
                submit(first, f"/devices/{DEVICE}/access", {"accounts": "yuri"})
                shot(first, "journey-device")
                assert lookup() == 200
                # A browser's connection through the relay, in the history.
                stack.browse(DEVICE)

                def in_history() -> bool:
                    first.navigate(base + "/history")
                    return "127.0.0.0/24" in text(first)

                _wait(in_history, 20, "the connection in the history")
                shot(first, "journey-history")
                # The export, downloaded.
                first.navigate(base + "/account")
                first.run("document.querySelector('a[href=\"/account/export\"]').click()")
                downloads = tmp_path / "downloads"
                _wait(
                    lambda: any(p.suffix == ".json" for p in downloads.glob("*")),
                    20,
                    "the export",
                )
                [exported] = [p for p in downloads.glob("*") if p.suffix == ".json"]
                data = json.loads(exported.read_text())
                assert data["account"]["account_name"] == OWNER
                assert [d["name"] for d in data["devices"]] == [DEVICE]
                assert [k["name"] for k in data["passkeys"]] == ["laptop"]
                # Link off: the relay refuses the NAS.
                first.navigate(base + f"/devices/{DEVICE}")
                submit(first, f"/devices/{DEVICE}/link", {})
                _wait(lambda: stack.metric("nascloud_relay_tunnels") == 0, 20, "Link off")
                assert stack.metric('nascloud_relay_tunnels_closed_total{reason="link_off"}') == 1
                shot(first, "journey-link-off")
                # Delete the account.
                first.navigate(base + "/account")
                submit(first, "/account/delete", {"password": PASSWORD})
                assert "Your account is deleted" in text(first)
                shot(first, "journey-deleted")
            _wait(
                lambda: (
                    rcode(daemon.dns_port, f"{DEVICE}.dyn.test") == "NXDOMAIN"
                    and rcode(daemon.dns_port, f"{DEVICE}.link.test") == "NXDOMAIN"
                ),
                10,
                "NXDOMAIN for its names",
            )
        finally:
            stop(daemon)
        public_key = load_key(tmp_path / "nas" / "device.key").public_key().public_bytes_raw()
    # Every process is stopped: the files are what a copy of the disk would hold.
    stored = database_bytes(tmp_path / "registry.sqlite3")
    for value in (OWNER, DISPLAY, EMAIL, "laptop"):
        assert value.encode() not in stored, value
    totp_secret = base64.b32decode(key.replace(" ", "") + "=" * (-len(key.replace(" ", "")) % 8))
    for secret in (totp_secret, base64.b64decode(credential["credentialId"]), public_key):
        assert secret not in stored
    # The access log keeps its sealed records six months whatever is erased (the policy's
    # rule for access logs), indexed by the device's name: that name is in no other table.
    with sqlite3.connect(tmp_path / "registry.sqlite3") as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            if table != "access_log":
                rows = db.execute(f"SELECT * FROM {table}").fetchall()
                assert DEVICE not in repr(rows), table
    for name in shots:
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshots saved at {tmp_path}")
