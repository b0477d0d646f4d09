"""Passkeys in a real browser: headless Chromium with a virtual authenticator (DevTools'
WebAuthn domain, user verification on) registers a passkey after the password, then a fresh
profile holding only that passkey (as a passkey synced to a new computer would be) signs in
with it, no password and no second step. The assertion the browser made is worth one sign-in:
posted again, it is refused; and a passkey made for another site is refused too."""

from __future__ import annotations

import base64
import http.client
import json
import socket
from pathlib import Path
from urllib.parse import urlencode

from tests.integration.test_portal import PASSWORD, running_portal

from .cdp import Browser
from .conftest import require


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def authenticator(browser: Browser) -> str:
    browser.call("WebAuthn.enable", session=True)
    return str(
        browser.call(
            "WebAuthn.addVirtualAuthenticator",
            session=True,
            options={
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            },
        )["authenticatorId"]
    )


def press(browser: Browser, selector: str) -> None:
    """Click as a person does (a user gesture), and wait for the page the form leads to."""
    browser.events.clear()
    browser.call(
        "Runtime.evaluate",
        session=True,
        expression=f"document.querySelector({selector!r}).click()",
        userGesture=True,
    )
    browser.wait_for_event("Page.loadEventFired")


def fill(browser: Browser, values: dict[str, str]) -> str:
    return "".join(
        f"document.querySelector('[name={name}]').value = {value!r};"
        for name, value in values.items()
    )


def cookie_header(browser: Browser) -> str:
    cookies = browser.call("Network.getAllCookies", session=True)["cookies"]
    return "; ".join(f"{c['name']}={c['value']}" for c in cookies)


def post(port: int, path: str, form: dict[str, str], cookie: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = urlencode(form).encode()
    connection.request(
        "POST",
        path,
        body=body,
        headers={
            "Host": f"localhost:{port}",
            "Cookie": cookie,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    response = connection.getresponse()
    answer = response.status, response.getheader("Location") or response.read().decode()
    connection.close()
    return answer


def assertion(browser: Browser, base: str) -> tuple[dict[str, str], str]:
    """A passkey sign-in's form as the page's script would post it, made by the browser's
    own WebAuthn API on a new sign-in page, and the browser's cookies."""
    browser.navigate(base + "/sign-in")
    made = browser.call(
        "Runtime.evaluate",
        session=True,
        expression=(
            "(async () => { const form = document.querySelector('form[data-passkey]');"
            " const options = PublicKeyCredential.parseRequestOptionsFromJSON("
            "JSON.parse(form.dataset.options));"
            " const c = await navigator.credentials.get({publicKey: options});"
            " return JSON.stringify({credential: JSON.stringify(c.toJSON()),"
            " csrf: form.elements.csrf.value}); })()"
        ),
        awaitPromise=True,
        returnByValue=True,
        userGesture=True,
    )
    answer: dict[str, str] = json.loads(made["result"]["value"])
    return {**answer, "next": ""}, cookie_header(browser)


def test_a_passkey_made_in_one_browser_signs_in_on_a_fresh_one(tmp_path: Path) -> None:
    require("chromium")
    port = free_port()
    base = f"http://localhost:{port}"  # a secure context; a passkey's site is a host name
    with running_portal(tmp_path, port=port, extra=f'public_url = "{base}"'):
        with Browser(tmp_path / "first-profile", "--window-size=900,760") as first:
            first_key = authenticator(first)
            first.navigate(base + "/sign-up")
            first.act_and_wait_for_load(
                fill(first, {"account_name": "ines", "password": PASSWORD})
                + "document.querySelector('form[action=\"/sign-up\"]').submit()"
            )
            first.navigate(base + "/account/passkeys")
            assert "No passkey yet." in first.run("document.body.innerText")
            first.act_and_wait_for_load(
                fill(first, {"name": "laptop", "password": PASSWORD})
                + "document.querySelector('form[action=\"/account/passkeys/new\"]').submit()"
            )
            assert first.run("document.title").startswith("Add a passkey")
            first.screenshot(tmp_path / "passkey-create.png")
            press(first, "form[data-passkey] button")
            text = first.run("document.body.innerText")
            assert first.run("location.search") == "?saved=1", text
            assert "laptop" in text and "never" in text
            first.screenshot(tmp_path / "passkeys.png")
            [credential] = first.call(
                "WebAuthn.getCredentials", session=True, authenticatorId=first_key
            )["credentials"]
            assert credential["isResidentCredential"] and credential["rpId"] == "localhost"

        with Browser(tmp_path / "fresh-profile", "--window-size=900,760") as fresh:
            fresh_key = authenticator(fresh)
            fresh.call(
                "WebAuthn.addCredential",
                session=True,
                authenticatorId=fresh_key,
                credential=credential,
            )
            fresh.navigate(base + "/sign-in?next=/account")
            assert "Sign in with a passkey" in fresh.run("document.body.innerText")
            fresh.screenshot(tmp_path / "passkey-sign-in.png")
            press(fresh, "form[data-passkey] button")
            assert fresh.run("location.pathname") == "/account"
            assert "ines" in fresh.run("document.body.innerText")
            fresh.screenshot(tmp_path / "passkey-signed-in.png")

            # One assertion, one sign-in: made by the browser's own API on a fresh sign-in
            # page, posted twice with that browser's cookies.
            fresh.act_and_wait_for_load("document.querySelector('form.inline').submit()")
            form, cookie = assertion(fresh, base)
            assert post(port, "/sign-in/passkey", form, cookie) == (303, "/devices")
            status, body = post(port, "/sign-in/passkey", form, cookie)
            assert status == 401 and "was not accepted" in body

            # Signed for another site (a phishing page's origin put in its client data):
            # refused, though its challenge is this browser's own.
            fresh.call("Network.clearBrowserCookies", session=True)
            form, cookie = assertion(fresh, base)
            credential = json.loads(form["credential"])
            encoded = credential["response"]["clientDataJSON"]
            client_data = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
            client_data["origin"] = "http://portal.example.test"
            credential["response"]["clientDataJSON"] = (
                base64.urlsafe_b64encode(json.dumps(client_data).encode()).decode().rstrip("=")
            )
            forged = {**form, "credential": json.dumps(credential)}
            status, body = post(port, "/sign-in/passkey", forged, cookie)
            assert status == 401 and "was not accepted" in body
        print(f"screenshots saved at {tmp_path}")
