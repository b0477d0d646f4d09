"""What every page of the portal stands on: the visit (a request as the pages see it), a
route's rule, and `PortalBase`: the configuration, the registry, the limits, rendering,
CSRF tokens, the sign-in page redirect, the password asked again, starting a session."""

from __future__ import annotations

import datetime
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any, Final
from urllib.parse import quote

import jinja2

from config.portal import PortalSection
from httpapi import HttpRequest, HttpResponse
from registry import (
    Device,
    Registry,
    Token,
)
from service import SlidingWindow

from ._passwords import MAX_PASSWORD, Passwords
from ._text import texts
from ._web import (
    FORM_COOKIE,
    SESSION_COOKIE,
    Forms,
    expire_cookie,
    form_fields,
    new_token,
    redirect,
    set_cookie,
    token_hash,
)
from ._webauthn import Challenges, RelyingParty

__all__ = ["PortalBase"]

log = logging.getLogger("portal")

#: /devices/<name>, its access form and its unregister form.
_DEVICE_PATH: Final = re.compile(
    r"/devices/([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(/access|/unregister|/dyndns2|/dyndns2/revoke|/tsig|/tsig/revoke|/link|/ddns)?"
)
FORM_COOKIE_S: Final = 3600
DEVICES_PER_PAGE: Final = 50
HISTORY_ROWS: Final = 200
PAIR_TRIES: Final = 10  # per account and per address, per 15 minutes
LANG_COOKIE_S: Final = 365 * 86400
TRUST_COOKIE_S: Final = 30 * 86400  # "trust this computer": the policy's security cookie
STEP_S: Final = 300  # between the password and the code of a two-step sign-in
ATTEMPT_WINDOW_S: Final = 900.0


@dataclass(frozen=True, slots=True)
class _Rule:
    """A route: its handler, and what must hold before it runs (else the sign-in page, the
    expired-form page, or a 404 as if the device did not exist)."""

    handler: Callable[[_Visit], Awaitable[HttpResponse]]
    signed_in: bool = False
    form: bool = False
    device: bool = False


@dataclass(slots=True)
class _Visit:
    """One request, as the pages see it."""

    request: HttpRequest
    path: str
    query: dict[str, str]
    cookies: dict[str, str]
    lang: str
    account_id: str | None = None
    session: str | None = None  # the session cookie's value, when signed in
    subject: str = ""  # the device a /devices/<name> path names
    set_cookies: list[tuple[str, str]] = field(default_factory=list)
    #: What the route's rule checked before its handler ran: the posted form (its CSRF
    #: token this browser's) and the device the path names (the visitor's own).
    form: dict[str, str] = field(default_factory=dict)
    device: Device | None = None

    @property
    def owner(self) -> str:
        assert self.account_id is not None, "a signed-in route's rule checked it"
        return self.account_id

    @property
    def owned(self) -> Device:
        assert self.device is not None, "a device route's rule sets it"
        return self.device

    @property
    def t(self) -> dict[str, str]:
        return texts(self.lang)


class PortalBase:
    def __init__(
        self,
        config: PortalSection,
        registry: Registry,
        secret: bytes,
        *,
        passwords: Passwords | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.registry = registry
        self.forms = Forms(secret)
        self.passwords = passwords or Passwords()
        self.tls = config.cert_file is not None
        self.by_account = SlidingWindow(
            config.sign_in_attempts_per_account, ATTEMPT_WINDOW_S, clock=clock
        )
        self.by_address = SlidingWindow(
            config.sign_in_attempts_per_address, ATTEMPT_WINDOW_S, clock=clock
        )
        self.sign_ups = SlidingWindow(config.sign_ups_per_address_per_hour, 3600.0, clock=clock)
        # Pairing codes tried per account and per address: 40 bits leave nothing to guess.
        self.pair_tries = SlidingWindow(PAIR_TRIES, ATTEMPT_WINDOW_S, clock=clock)
        self.counts: Counter[str] = Counter()
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("portal", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.script = (files("portal") / "static" / "passkey.js").read_bytes()
        #: Passkeys, when the portal knows where browsers open it (they are bound to it).
        self.relying_party = RelyingParty(config.public_url) if config.public_url else None
        self.challenges = Challenges(clock)

    def _page(
        self, visit: _Visit, template: str, status: int, title: str, **context: Any
    ) -> HttpResponse:
        here = visit.path if visit.path.startswith("/") else "/"
        body = self.templates.get_template(template).render(
            lang=visit.lang,
            t=visit.t,
            title=title,
            operator=self.config.operator_name,
            help_url=self.config.help_url,
            privacy_url=self.config.privacy_url,
            signed_in=visit.account_id is not None,
            csrf=self._csrf(visit),
            here=here,
            error=context.pop("error", None),
            notice=context.pop("notice", None),
            **context,
        )
        return HttpResponse(status, body.encode(), "text/html; charset=utf-8")

    def _csrf(self, visit: _Visit) -> str:
        """The token for this visit's forms: bound to the session, or before sign-in to the
        form cookie (made now if the browser has none)."""
        if visit.session is not None:
            return self.forms.token("session:" + visit.session)
        binding = visit.cookies.get(FORM_COOKIE)
        if not binding:
            binding = new_token()
            visit.cookies[FORM_COOKIE] = binding
            visit.set_cookies.append(set_cookie(FORM_COOKIE, binding, FORM_COOKIE_S))
        return self.forms.token("form:" + binding)

    def _form(self, visit: _Visit) -> dict[str, str] | None:
        """The posted form if its CSRF token is this browser's, else None."""
        fields = form_fields(visit.request)
        binding = _binding(visit)
        if fields is None or binding is None:
            return None
        if not self.forms.valid(binding, fields.get("csrf")):
            self.counts["csrf_refused"] += 1
            return None
        return fields

    def _expired(self, visit: _Visit) -> HttpResponse:
        return self._page(visit, "message.html", 403, visit.t["expired_form"])

    def _needs_sign_in(self, visit: _Visit) -> HttpResponse:
        return redirect("/sign-in?next=" + quote(visit.path, safe="/"))

    async def _owned(self, visit: _Visit) -> Device | None:
        """The device the path names, if the visitor owns it (else as if it did not exist)."""
        device = await self.registry.get_device(visit.subject)
        if device is None or device.owner_id != visit.owner:
            return None
        return device

    async def _password_again(self, visit: _Visit, password: str) -> str | None:
        """None if the visitor's account password is right; else why not (an error text)."""

        name = await self.registry.account_name(visit.owner) or ""
        if not self.by_account.allow(name):
            return visit.t["too_many"]
        found = await self.registry.find_sign_in(name) if name else None
        matches, _ = await self.passwords.check(
            found[1] if found else None, password[:MAX_PASSWORD]
        )
        return None if matches else visit.t["bad_sign_in"]

    def _secret_page(
        self,
        visit: _Visit,
        secret: str,
        back: str,
        back_label: str,
        user_name: str = "",
        hint: str = "",
    ) -> HttpResponse:
        return self._page(
            visit,
            "secret.html",
            200,
            visit.t["secret_title"],
            secret=secret,
            user_name=user_name,
            hint=hint,
            back=back,
            back_label=back_label,
        )

    async def _start_session(self, visit: _Visit, account_id: str, target: str) -> HttpResponse:
        """A new session, never one the browser brought (no fixation), and the pre-sign-in
        form cookie gone."""
        if visit.session is not None:
            await self.registry.end_session(token_hash(visit.session))
        token = new_token()
        lifetime = self.config.session_lifetime_s
        await self.registry.create_session(token_hash(token), account_id, lifetime)
        return redirect(
            target,
            [set_cookie(SESSION_COOKIE, token, int(lifetime)), expire_cookie(FORM_COOKIE)],
        )


def _binding(visit: _Visit) -> str | None:
    """The cookie this browser's forms are bound to: its session's, or its form cookie's."""
    if visit.session is not None:
        return "session:" + visit.session
    form = visit.cookies.get(FORM_COOKIE)
    return "form:" + form if form else None


def _label(text: str) -> str:
    """An owner's name for a token or a passkey, made printable and short (never refused: it
    is a label for the owner only; the registry checks it too)."""
    return "".join(c for c in text if c.isprintable()).strip()[:64]


def _listed(tokens: list[Token]) -> list[dict[str, str | None]]:
    return [
        {
            "id": t.token_id,
            "name": t.name,
            "created": _when(t.created_at),
            "used": _when(t.last_used_at),
        }
        for t in tokens
    ]


def _when(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")
