"""The owner portal as a real process on loopback: sign up, the owner's devices, sign out and
in again, languages, the security headers on every answer; and what a hostile visitor tries
(forms without or with another browser's CSRF token, a session cookie planted before sign-in
or kept after sign-out, guessing passwords, markup in fields, `next=` off the site, oversized
forms)."""

from __future__ import annotations

import base64
import http.client
import json
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import trio
from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP

from registry import PostgresBackend, Registry, SQLiteBackend, TokenKind
from tests.integration.test_link import BIN
from tests.postgres import PostgresServer

PASSWORD = "correct horse battery staple"


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: str


@dataclass
class Browser:
    """Cookies kept as a browser keeps them, requests as a browser sends them."""

    port: int
    jar: dict[str, str] = field(default_factory=dict)
    language: str = "en"
    source: str = "127.0.0.1"

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None, body: bytes | None = None
    ) -> Answer:
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=30, source_address=(self.source, 0)
        )
        headers = {"Accept-Language": self.language}
        if self.jar:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        if form is not None or body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        payload = body if body is not None else (urlencode(form).encode() if form else None)
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        answer = Answer(response.status, response.headers, response.read().decode())
        connection.close()
        for value in answer.headers.get_all("Set-Cookie") or []:
            pair, _, attributes = value.partition(";")
            name, _, cookie = pair.partition("=")
            if "Max-Age=0" in attributes:
                self.jar.pop(name, None)
            else:
                self.jar[name] = cookie
        return answer

    def csrf(self, path: str) -> str:
        match = re.search(r'name="csrf" value="([0-9a-f]+)"', self.request("GET", path).body)
        assert match, path
        return match.group(1)

    def sign_up(self, name: str, display_name: str = "") -> Answer:
        form = {"csrf": self.csrf("/sign-up"), "account_name": name, "password": PASSWORD}
        return self.request("POST", "/sign-up", {**form, "display_name": display_name})

    def sign_in(self, name: str, password: str = PASSWORD, next_: str = "") -> Answer:
        form = {"csrf": self.csrf("/sign-in"), "account_name": name, "password": password}
        return self.request("POST", "/sign-in", {**form, "next": next_})


@dataclass
class Running:
    directory: Path
    port: int
    registry: Path | str  # the SQLite file, or the PostgreSQL database's URI

    def browser(self, language: str = "en") -> Browser:
        return Browser(self.port, language=language)


@pytest.fixture(params=["sqlite", "postgresql"])
def portal(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Running]:
    """The portal on each engine: a SQLite file, or a database of the session's PostgreSQL."""
    url = None
    if request.param == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database()
    with running_portal(tmp_path, registry_url=url) as running:
        yield running


@contextmanager
def running_portal(
    tmp_path: Path,
    attempts_per_account: int = 5,
    extra: str = "",
    port: int = 0,
    registry_url: str | None = None,
) -> Iterator[Running]:
    """nascloud-portal on `port` (0: one of its choosing), on a new registry in `tmp_path`
    (or in the empty PostgreSQL database at `registry_url`); `extra` lines go in its
    [portal] table."""
    location: Path | str = registry_url or tmp_path / "registry.sqlite3"
    if registry_url is None:
        SQLiteBackend(tmp_path / "registry.sqlite3").close()  # made and migrated
    else:
        PostgresBackend(registry_url).close()
        extra += f'\nregistry_url = "{registry_url}"'

    (tmp_path / "portal.toml").write_text(
        f"""
[portal]
listen = ["127.0.0.1:{port}"]
operator_name = "Example <NAS> Cloud"
zone = "dyn.test"
link_zone = "link.test"
state_dir = "state"
registry = "registry.sqlite3"
sign_in_attempts_per_account = {attempts_per_account}
sign_ups_per_address_per_hour = 50
privacy_url = "https://example.test/privacy"
{extra}
"""
    )
    with (tmp_path / "portal.log").open("ab") as log:
        process = subprocess.Popen(
            [str(BIN / "nascloud-portal"), "--config", str(tmp_path / "portal.toml")],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    listening = tmp_path / "state" / "listening.json"
    deadline = time.monotonic() + 30
    while not listening.exists():
        assert process.poll() is None, (tmp_path / "portal.log").read_text()
        assert time.monotonic() < deadline, "the portal did not start"
        time.sleep(0.05)
    port = int(json.loads(listening.read_text())["portal"][0].rsplit(":", 1)[1])
    try:
        yield Running(tmp_path, port, location)
    finally:
        process.terminate()
        assert process.wait(timeout=20) == 0, (tmp_path / "portal.log").read_text()[-2000:]
    assert "correct horse" not in (tmp_path / "portal.log").read_text()


def _enrol(location: Path | str, owner_name: str, device: str) -> None:
    async def enrol() -> None:
        registry = Registry.open(location, create=False)
        found = await registry.find_sign_in(owner_name)
        assert found is not None
        await registry.enrol_device(found[0], device, bytes(32))
        await registry.aclose()

    trio.run(enrol)


def test_an_owner_signs_up_sees_their_devices_signs_out_and_in(portal: Running) -> None:
    alice = portal.browser()
    first = alice.request("GET", "/")
    assert (first.status, first.headers["Location"]) == (303, "/sign-in")
    signed_up = alice.sign_up("alice", "Alice")
    assert (signed_up.status, signed_up.headers["Location"]) == (303, "/devices")
    set_cookies = signed_up.headers.get_all("Set-Cookie") or []
    cookie = next(v for v in set_cookies if "__Host-session" in v)
    for attribute in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert attribute in cookie
    assert "Domain" not in cookie
    assert "No device is registered" in alice.request("GET", "/devices").body
    _enrol(portal.registry, "alice", "nas1")
    page = alice.request("GET", "/devices").body
    assert "https://nas1.link.test/" in page and "nas1.dyn.test" in page
    assert "Example &lt;NAS&gt; Cloud" in page  # the operator named, escaped
    assert "does not show connection history" in alice.request("GET", "/history").body
    out = alice.request("POST", "/sign-out", {"csrf": alice.csrf("/devices")})
    assert (out.status, out.headers["Location"]) == (303, "/sign-in")
    assert alice.request("GET", "/devices").headers["Location"] == "/sign-in?next=/devices"
    back = alice.sign_in("alice", next_="/account")
    assert (back.status, back.headers["Location"]) == (303, "/account")
    account = alice.request("GET", "/account").body
    assert "<strong>alice</strong>" in account


def test_many_devices_come_fifty_a_page(portal: Running) -> None:
    owner = portal.browser()
    owner.sign_up("ivan")

    async def enrol_many() -> None:
        registry = Registry.open(portal.registry, create=False)
        found = await registry.find_sign_in("ivan")
        assert found is not None
        for i in range(60):
            await registry.enrol_device(found[0], f"box{i:02d}", bytes([i]) * 32)
        await registry.aclose()

    trio.run(enrol_many)
    first = owner.request("GET", "/devices").body
    assert first.count("<h2>") == 50 and "Devices 1 to 50 of 60" in first
    assert 'href="/devices?page=2" rel="next"' in first and "box49" in first
    second = owner.request("GET", "/devices?page=2").body
    assert second.count("<h2>") == 10 and "box59" in second and 'rel="prev"' in second
    assert owner.request("GET", "/devices?page=99").body.count("<h2>") == 10
    assert owner.request("GET", "/devices?page=x").body.count("<h2>") == 50


def test_every_answer_carries_the_security_headers(portal: Running) -> None:
    browser = portal.browser()
    for method, path in (("GET", "/sign-in"), ("GET", "/nowhere"), ("GET", "/static/pages.css")):
        answer = browser.request(method, path)
        csp = answer.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp, path
        assert answer.headers["Cache-Control"] == "no-store"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert "Strict-Transport-Security" not in answer.headers  # plain HTTP here
    assert browser.request("GET", "/nowhere").status == 404
    assert browser.request("PUT", "/sign-in").status == 405


def test_french_from_accept_language_and_from_the_preference(portal: Running) -> None:
    french = portal.browser(language="fr-FR,fr;q=0.9,en;q=0.5")
    page = french.request("GET", "/sign-in").body
    assert '<html lang="fr">' in page and "Se connecter" in page
    english = portal.browser(language="fr")
    chosen = english.request("GET", "/language?set=en&next=/cookies")
    assert chosen.headers["Location"] == "/cookies"
    cookies = english.request("GET", "/cookies").body
    assert (
        '<html lang="en">' in cookies and "__Host-lang" in cookies and "__Host-session" in cookies
    )


def test_forms_without_this_browsers_token_are_refused(portal: Running) -> None:
    mallory, alice = portal.browser(), portal.browser()
    alice.sign_up("alice2")
    # No token at all, and a token of another browser: nothing changes.
    assert alice.request("POST", "/account", {"display_name": "pwned"}).status == 403
    foreign = mallory.csrf("/sign-in")
    form = {"csrf": foreign, "display_name": "pwned", "email": ""}
    assert alice.request("POST", "/account", form).status == 403
    assert alice.request("POST", "/sign-out", {"csrf": foreign}).status == 403
    assert "pwned" not in alice.request("GET", "/account").body
    # A sign-in form posted with no form cookie (a cross-site post): refused.
    blank = portal.browser()
    assert blank.request("POST", "/sign-in", {"account_name": "alice2"}).status == 403


def test_no_session_fixation_and_none_after_sign_out(portal: Running) -> None:
    owner = portal.browser()
    owner.sign_up("carol")
    planted = "attacker-chose-this-value"
    victim = portal.browser()
    victim.jar["__Host-session"] = planted
    assert victim.sign_in("carol").status == 303
    assert victim.jar["__Host-session"] != planted
    stolen = dict(victim.jar)
    victim.request("POST", "/sign-out", {"csrf": victim.csrf("/devices")})
    thief = portal.browser()
    thief.jar.update(stolen)
    assert thief.request("GET", "/devices").status == 303  # to the sign-in page


def test_guessing_is_limited_and_tells_nothing_of_which_accounts_exist(portal: Running) -> None:
    portal.browser().sign_up("dave")
    guesser = portal.browser()
    wrong = guesser.sign_in("dave", "not the password")
    missing = guesser.sign_in("nobody-here", "not the password")
    assert wrong.status == missing.status == 401
    assert _message(wrong.body) == _message(missing.body)
    for _ in range(4):  # five wrong ones in all
        guesser.sign_in("dave", "still not it")
    # Five tries per account per 15 minutes: the sixth is refused, the right password too.
    limited = guesser.sign_in("dave")
    assert limited.status == 429 and "__Host-session" not in guesser.jar


def test_markup_is_shown_as_text_and_next_stays_on_the_site(portal: Running) -> None:
    eve = portal.browser()
    eve.sign_up("eve", '<script>alert("x")</script>')
    body = eve.request("GET", "/account").body
    assert "<script>" not in body and "&lt;script&gt;" in body
    eve.request("POST", "/sign-out", {"csrf": eve.csrf("/account")})
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:x"):
        answer = eve.sign_in("eve", next_=target)
        assert answer.headers["Location"] == "/devices", target
        eve.request("POST", "/sign-out", {"csrf": eve.csrf("/devices")})
    assert eve.request("GET", "/language?set=fr&next=//evil.example").headers["Location"] == "/"


def test_oversized_and_malformed_forms(portal: Running) -> None:
    browser = portal.browser()
    csrf = browser.csrf("/sign-up")
    huge = urlencode({"csrf": csrf, "account_name": "x", "password": "p" * 20000}).encode()
    assert browser.request("POST", "/sign-up", body=huge).status == 413
    many = "&".join(f"f{i}=1" for i in range(50)).encode()
    assert browser.request("POST", "/sign-up", body=many).status == 403
    short = {"csrf": csrf, "account_name": "frank", "password": "short"}
    assert browser.request("POST", "/sign-up", short).status == 400
    taken = portal.browser()
    taken.sign_up("grace")
    again = portal.browser().sign_up("grace")
    assert again.status == 409 and 'value="grace"' in again.body  # what was typed is kept


def _message(body: str) -> str:
    match = re.search(r'<p class="error" role="alert">(.*?)</p>', body)
    assert match
    return match.group(1)


def _registry_call(location: Path | str, call: str, *args: object, **kwargs: object) -> Any:
    async def run() -> object:
        registry = Registry.open(location, create=False)
        try:
            return await getattr(registry, call)(*args, **kwargs)
        finally:
            await registry.aclose()

    return trio.run(run)


def test_an_owner_chooses_who_connects_and_unregisters(portal: Running) -> None:
    owner, friend, stranger = portal.browser(), portal.browser(), portal.browser()
    owner.sign_up("judy")
    friend.sign_up("karl")
    stranger.sign_up("mallory")
    _enrol(portal.registry, "judy", "nas8")
    page = owner.request("GET", "/devices/nas8")
    assert page.status == 200 and "only you" in page.body
    # Another account sees no such device, whether it exists or not.
    assert stranger.request("GET", "/devices/nas8").status == 404
    assert stranger.request("GET", "/devices/nas9").status == 404
    form = {"csrf": stranger.csrf("/devices"), "mode": "public", "accounts": ""}
    assert stranger.request("POST", "/devices/nas8/access", form).status == 404
    csrf = owner.csrf("/devices/nas8")
    unknown = {"csrf": csrf, "mode": "custom", "accounts": "karl\nnobody-at-all"}
    refused = owner.request("POST", "/devices/nas8/access", unknown)
    assert refused.status == 400 and "nobody-at-all" in refused.body
    listed = {"csrf": csrf, "mode": "custom", "accounts": "karl"}
    saved = owner.request("POST", "/devices/nas8/access", listed)
    assert saved.headers["Location"] == "/devices/nas8?saved=1"
    device = _registry_call(portal.registry, "get_device", "nas8")
    karl = _registry_call(portal.registry, "find_sign_in", "karl")
    assert device.access_mode.value == "custom"
    assert device.access_list == (karl[0],)
    assert "karl" in owner.request("GET", "/devices/nas8").body
    wrong = {"csrf": csrf, "confirm": "nas7"}
    assert owner.request("POST", "/devices/nas8/unregister", wrong).status == 400
    gone = owner.request("POST", "/devices/nas8/unregister", {"csrf": csrf, "confirm": "nas8"})
    assert gone.headers["Location"] == "/devices?unregistered=nas8"
    assert "nas8 is unregistered" in owner.request("GET", "/devices?unregistered=nas8").body
    assert _registry_call(portal.registry, "get_device", "nas8") is None


def test_an_owner_downloads_their_data_and_deletes_their_account(portal: Running) -> None:
    owner = portal.browser()
    owner.sign_up("lena", "Lena")
    _enrol(portal.registry, "lena", "nas6")
    export = owner.request("GET", "/account/export")
    assert export.status == 200 and "attachment" in export.headers["Content-Disposition"]
    data = json.loads(export.body)
    assert data["account"]["account_name"] == "lena"
    assert [d["name"] for d in data["devices"]] == ["nas6"]
    csrf = owner.csrf("/account")
    wrong = owner.request("POST", "/account/delete", {"csrf": csrf, "password": "not mine"})
    assert wrong.status == 401
    assert _registry_call(portal.registry, "find_sign_in", "lena") is not None
    done = owner.request("POST", "/account/delete", {"csrf": csrf, "password": PASSWORD})
    assert done.headers["Location"] == "/sign-in?deleted=1"
    assert "Your account is deleted" in owner.request("GET", "/sign-in?deleted=1").body
    assert _registry_call(portal.registry, "find_sign_in", "lena") is None
    assert _registry_call(portal.registry, "get_device", "nas6") is None
    assert owner.request("GET", "/devices").status == 303  # no session left


def test_secrets_are_made_after_the_password_shown_once_and_revoked(portal: Running) -> None:
    owner = portal.browser()
    owner.sign_up("mona")
    _enrol(portal.registry, "mona", "nas4")
    csrf = owner.csrf("/devices/nas4")
    refused = owner.request("POST", "/devices/nas4/dyndns2", {"csrf": csrf, "password": "no"})
    assert refused.status == 401 and 'id="secret"' not in refused.body
    made = owner.request("POST", "/devices/nas4/dyndns2", {"csrf": csrf, "password": PASSWORD})
    secret = re.search(r'<code id="secret">([^<]+)</code>', made.body)
    assert made.status == 200 and secret and "nas4.dyn.test" in made.body
    token = _registry_call(portal.registry, "verify_token", TokenKind.DYNDNS2, secret.group(1))
    assert token is not None and token.device_name == "nas4"
    page = owner.request("GET", "/devices/nas4").body
    assert token.token_id in page and secret.group(1) not in page
    owner.request(
        "POST",
        "/devices/nas4/dyndns2/revoke",
        {"csrf": csrf, "token_id": token.token_id},
    )
    assert (
        _registry_call(portal.registry, "verify_token", TokenKind.DYNDNS2, secret.group(1)) is None
    )
    api = owner.request(
        "POST",
        "/account/tokens",
        {"csrf": csrf, "password": PASSWORD, "name": "backup <script>"},
    )
    api_secret = re.search(r'<code id="secret">([^<]+)</code>', api.body)
    assert api_secret
    listed = owner.request("GET", "/account").body
    assert "backup &lt;script&gt;" in listed and ">never<" in listed  # named, not used yet
    found = _registry_call(portal.registry, "verify_token", TokenKind.API, api_secret.group(1))
    assert found is not None and found.name == "backup <script>"
    listed = owner.request("GET", "/account").body
    assert "backup &lt;script&gt;" in listed and ">never<" not in listed  # now used
    # Someone else's token id is not this account's to revoke.
    other = portal.browser()
    other.sign_up("nora")
    other_csrf = other.csrf("/account")
    other.request(
        "POST", "/account/tokens/revoke", {"csrf": other_csrf, "token_id": found.token_id}
    )
    assert _registry_call(portal.registry, "verify_token", TokenKind.API, api_secret.group(1))


def _totp_code(key: str, at: float) -> str:
    secret = base64.b32decode(key.replace(" ", "") + "=" * (-len(key.replace(" ", "")) % 8))
    return TOTP(secret, 6, SHA1(), 30).generate(at).decode()


def test_two_step_sign_in_with_totp_recovery_codes_and_a_trusted_computer(
    tmp_path: Path,
) -> None:
    with running_portal(tmp_path, attempts_per_account=50) as portal:
        _two_step_journey(portal)


def _two_step_journey(portal: Running) -> None:
    owner = portal.browser()
    owner.sign_up("oscar")
    setup = owner.request("GET", "/account/two-step").body
    key = re.search(r'<code id="totp-key">([A-Z2-7 ]+)</code>', setup)
    sealed = re.search(r'name="secret" value="([^"]+)"', setup)
    assert key and sealed and "otpauth://totp/" in setup
    csrf = owner.csrf("/account")
    now = time.time()
    form = {"csrf": csrf, "secret": sealed.group(1), "password": PASSWORD}
    wrong = owner.request("POST", "/account/two-step", {**form, "code": "000000"})
    assert wrong.status == 401 and key.group(1) in wrong.body  # the same key, to try again
    on = owner.request("POST", "/account/two-step", {**form, "code": _totp_code(key.group(1), now)})
    recovery = re.findall(r"<li><code>([0-9A-Z]{5}-[0-9A-Z]{5})</code></li>", on.body)
    assert on.status == 200 and len(recovery) == 10
    owner.request("POST", "/sign-out", {"csrf": owner.csrf("/account")})
    # The password is not enough any more; the code used to turn it on is spent.
    first = owner.sign_in("oscar")
    assert first.status == 200 and "__Host-session" not in owner.jar
    step = re.search(r'name="step" value="([^"]+)"', first.body)
    assert step
    code_form = {"csrf": owner.csrf("/sign-in"), "step": step.group(1)}
    replayed = {**code_form, "code": _totp_code(key.group(1), now)}
    assert owner.request("POST", "/sign-in/code", replayed).status == 401
    # The step passed in this browser is worth nothing in another.
    other = portal.browser()
    stolen = {"csrf": other.csrf("/sign-in"), "step": step.group(1), "code": "123456"}
    assert other.request("POST", "/sign-in/code", stolen).status == 403
    later = {**code_form, "code": _totp_code(key.group(1), now + 30), "trust": "1"}
    signed = owner.request("POST", "/sign-in/code", later)
    assert signed.status == 303 and "__Host-session" in owner.jar and "__Host-trust" in owner.jar
    owner.request("POST", "/sign-out", {"csrf": owner.csrf("/devices")})
    # This computer is trusted: the password alone, for 30 days.
    assert owner.sign_in("oscar").status == 303
    # A new computer: a recovery code works once.
    phone_lost = portal.browser()
    page = phone_lost.sign_in("oscar")
    step = re.search(r'name="step" value="([^"]+)"', page.body)
    assert step
    use = {"csrf": phone_lost.csrf("/sign-in"), "step": step.group(1), "code": recovery[0].lower()}
    assert phone_lost.request("POST", "/sign-in/code", use).status == 303
    again = portal.browser()
    page = again.sign_in("oscar")
    step = re.search(r'name="step" value="([^"]+)"', page.body)
    assert step
    reuse = {"csrf": again.csrf("/sign-in"), "step": step.group(1), "code": recovery[0]}
    assert again.request("POST", "/sign-in/code", reuse).status == 401
    # Off again, with the password: the password alone signs in anywhere.
    off = {"csrf": owner.csrf("/account"), "password": PASSWORD}
    assert owner.request("POST", "/account/two-step/off", off).status == 200
    assert portal.browser().sign_in("oscar").status == 303


def test_a_refused_sign_in_posted_with_a_query_still_answers(portal: Running) -> None:
    """A form posted to /sign-in?next=... (not what the page sends): the refusal is a page,
    never an error of the server."""
    browser = portal.browser()
    form = {"csrf": browser.csrf("/sign-in"), "account_name": "x", "password": "y", "next": "/a"}
    answer = browser.request("POST", "/sign-in?next=/b", form)
    assert answer.status == 401 and 'name="next" value="/a"' in answer.body


def test_an_rfc2136_key_for_a_device_shown_once_and_revoked(portal: Running) -> None:
    owner = portal.browser()
    owner.sign_up("paula")
    _enrol(portal.registry, "paula", "nas3")
    csrf = owner.csrf("/devices/nas3")
    made = owner.request("POST", "/devices/nas3/tsig", {"csrf": csrf, "password": PASSWORD})
    found = re.search(r'<code id="secret">hmac-sha256:([^:<]+):([^<]+)</code>', made.body)
    assert made.status == 200 and found and "nsupdate -y" in made.body
    name, secret = found.groups()
    assert name.startswith("nas3-") and name.endswith(".dyn.test")
    key = _registry_call(portal.registry, "find_tsig_key", name)
    assert key.device_name == "nas3" and base64.b64encode(key.secret).decode() == secret
    page = owner.request("GET", "/devices/nas3").body
    assert name in page and secret not in page
    owner.request("POST", "/devices/nas3/tsig/revoke", {"csrf": csrf, "token_id": name})
    assert _registry_call(portal.registry, "find_tsig_key", name) is None


def test_ddns_off_deletes_its_passwords_and_makes_none(portal: Running) -> None:
    owner = portal.browser()
    owner.sign_up("pia")
    _enrol(portal.registry, "pia", "nas8")
    csrf = owner.csrf("/devices/nas8")
    owner.request("POST", "/devices/nas8/dyndns2", {"csrf": csrf, "password": PASSWORD})
    assert _registry_call(portal.registry, "list_tokens", device_name="nas8") != []
    page = owner.request("GET", "/devices/nas8").body
    assert "deletes those addresses and its DynDNS2 passwords" in page
    off = owner.request("POST", "/devices/nas8/ddns", {"csrf": csrf, "ddns": "off"})
    assert off.status == 303
    assert _registry_call(portal.registry, "feature_off", "nas8", "ddns")
    assert _registry_call(portal.registry, "list_tokens", device_name="nas8") == []
    page = owner.request("GET", "/devices/nas8").body
    assert "publishes no address" in page and "Create a DynDNS2 password" not in page
    refused = owner.request("POST", "/devices/nas8/dyndns2", {"csrf": csrf, "password": PASSWORD})
    assert refused.status == 409 and 'id="secret"' not in refused.body
    owner.request("POST", "/devices/nas8/ddns", {"csrf": csrf, "ddns": "on"})
    assert not _registry_call(portal.registry, "feature_off", "nas8", "ddns")
    assert "Create a DynDNS2 password" in owner.request("GET", "/devices/nas8").body


def test_passkey_answers_that_are_missing_malformed_or_unasked_for(tmp_path: Path) -> None:
    with running_portal(tmp_path, extra='public_url = "http://localhost:8443"') as portal:
        visitor = portal.browser()
        csrf = visitor.csrf("/sign-in")
        assert 'data-passkey="get"' in visitor.request("GET", "/sign-in").body
        script = visitor.request("GET", "/static/passkey.js")
        assert script.status == 200 and "navigator.credentials" in script.body
        for credential, status in (
            ("", 400),  # the script did not run
            ("{", 401),
            ('{"id": "AAAA", "rawId": "AAAA", "type": "public-key"}', 401),
            (json.dumps({"id": "AA", "rawId": "AA", "response": {"clientDataJSON": "e30"}}), 401),
            ("[" * 5000, 401),
        ):
            answer = visitor.request(
                "POST", "/sign-in/passkey", {"csrf": csrf, "credential": credential}
            )
            assert answer.status == status, (credential[:40], answer.body[:300])
            assert "__Host-session" not in visitor.jar
        owner = portal.browser()
        owner.sign_up("quentin")
        csrf = owner.csrf("/account/passkeys")
        refused = owner.request(
            "POST", "/account/passkeys/new", {"csrf": csrf, "password": "wrong password!"}
        )
        assert refused.status == 401 and "data-passkey" not in refused.body
        offered = owner.request(
            "POST", "/account/passkeys/new", {"csrf": csrf, "password": PASSWORD, "name": "k"}
        )
        options = re.search(r'data-options="([^"]+)"', offered.body)
        assert offered.status == 200 and options
        created = json.loads(options.group(1).replace("&#34;", '"').replace("&quot;", '"'))
        assert created["rp"]["id"] == "localhost"
        assert created["authenticatorSelection"]["residentKey"] == "required"
        assert created["authenticatorSelection"]["userVerification"] == "required"
        bad = owner.request(
            "POST", "/account/passkeys/add", {"csrf": csrf, "credential": '{"id": 1}'}
        )
        assert bad.status == 400
        assert _registry_call(portal.registry, "passkeys_of", _account_id(portal, "quentin")) == []


def test_no_passkeys_without_a_public_url(portal: Running) -> None:
    visitor = portal.browser()
    assert "data-passkey" not in visitor.request("GET", "/sign-in").body
    csrf = visitor.csrf("/sign-in")
    answer = visitor.request("POST", "/sign-in/passkey", {"csrf": csrf, "credential": "{}"})
    assert answer.status == 404


def _account_id(portal: Running, name: str) -> str:
    found = _registry_call(portal.registry, "find_sign_in", name)
    assert found is not None
    return str(found[0])
