"""The portal's pages: sign-up, sign-in and sign-out, the owner's devices, their account and
the cookie page. Every answer carries the security headers; every form a CSRF token; every
personal page needs a live session, looked up by the hash of its cookie."""

from __future__ import annotations

import base64
import datetime
import functools
import json
import logging
import re
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any, Final
from urllib.parse import parse_qs, quote, urlsplit

import jinja2

from config.portal import PortalSection
from httpapi import HttpRequest, HttpResponse
from registry import (
    AccessLogKeys,
    AccessMode,
    AccessRecord,
    Conflict,
    Device,
    InvalidValue,
    NotFound,
    Registry,
    Token,
    TokenKind,
    mask_address,
)
from service import SlidingWindow

from ._passwords import MAX_PASSWORD, MIN_PASSWORD, Passwords
from ._text import LANGUAGES, choose, texts
from ._twostep import (
    matching_step,
    new_recovery_codes,
    new_secret,
    normalize_recovery_code,
    provisioning,
)
from ._web import (
    FORM_COOKIE,
    LANG_COOKIE,
    SESSION_COOKIE,
    TRUST_COOKIE,
    Forms,
    cookies,
    expire_cookie,
    form_fields,
    local_target,
    new_token,
    redirect,
    secure_headers,
    set_cookie,
    token_hash,
)

__all__ = ["Portal"]

log = logging.getLogger("portal")

#: /devices/<name>, its access form and its unregister form.
_DEVICE_PATH: Final = re.compile(
    r"/devices/([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(/access|/unregister|/dyndns2|/dyndns2/revoke|/tsig|/tsig/revoke|/link)?"
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


class Portal:
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
        self.css = (files("portal") / "static" / "portal.css").read_bytes()
        anyone, owner = _Rule, functools.partial(_Rule, signed_in=True)
        self._routes: dict[tuple[str, str], _Rule] = {
            ("GET", "/"): anyone(self._home),
            ("GET", "/sign-in"): anyone(self._sign_in_page),
            ("POST", "/sign-in"): anyone(self._sign_in, form=True),
            ("GET", "/sign-up"): anyone(self._sign_up_page),
            ("POST", "/sign-up"): anyone(self._sign_up, form=True),
            ("POST", "/sign-in/code"): anyone(self._sign_in_code, form=True),
            ("POST", "/sign-out"): anyone(self._sign_out),
            ("GET", "/devices"): owner(self._devices),
            ("GET", "/pair"): owner(self._pair_page),
            ("POST", "/pair"): owner(self._pair, form=True),
            ("GET", "/history"): owner(self._history),
            ("GET", "/account"): owner(self._account_page),
            ("POST", "/account"): owner(self._account, form=True),
            ("GET", "/account/export"): owner(self._export),
            ("POST", "/account/delete"): owner(self._delete_account, form=True),
            ("POST", "/account/tokens"): owner(self._new_api_token, form=True),
            ("POST", "/account/tokens/revoke"): owner(self._revoke_api_token, form=True),
            ("GET", "/account/two-step"): owner(self._two_step_page),
            ("POST", "/account/two-step"): owner(self._two_step_on, form=True),
            ("POST", "/account/two-step/off"): owner(self._two_step_off, form=True),
            ("GET", "/cookies"): anyone(self._cookies),
            ("GET", "/language"): anyone(self._language),
        }
        # /devices/<name> and the forms under it, by what follows the name.
        self._device_routes: dict[tuple[str, str], _Rule] = {
            ("GET", ""): owner(self._device_page, device=True),
            ("POST", "/access"): owner(self._device_access, form=True, device=True),
            ("POST", "/unregister"): owner(self._unregister, form=True, device=True),
            ("POST", "/dyndns2"): owner(self._new_dyndns2, form=True, device=True),
            ("POST", "/dyndns2/revoke"): owner(self._revoke_dyndns2, form=True, device=True),
            ("POST", "/link"): owner(self._set_link, form=True, device=True),
            ("POST", "/tsig"): owner(self._new_tsig_key, form=True, device=True),
            ("POST", "/tsig/revoke"): owner(self._revoke_tsig_key, form=True, device=True),
        }

    async def handle(self, request: HttpRequest) -> HttpResponse:
        response = await self._route(request)
        self.counts[f"http_{response.status}"] += 1
        return HttpResponse(
            response.status,
            response.body,
            response.content_type,
            [*secure_headers(self.tls), *response.headers],
        )

    async def _route(self, request: HttpRequest) -> HttpResponse:
        parts = urlsplit(request.target)
        if parts.path == "/static/portal.css" and request.method == "GET":
            return HttpResponse(200, self.css, "text/css; charset=utf-8")
        jar = cookies(request)
        query = {k: v[0] for k, v in parse_qs(parts.query, max_num_fields=10).items()}
        lang = choose(jar.get(LANG_COOKIE), request.headers.get("accept-language", ""))
        visit = _Visit(request, parts.path, query, jar, lang)
        token = jar.get(SESSION_COOKIE)
        if token:
            visit.account_id = await self.registry.session_account(token_hash(token))
            visit.session = token if visit.account_id else None
        rule = self._routes.get((request.method, parts.path))
        device_path = _DEVICE_PATH.fullmatch(parts.path)
        if rule is None and device_path is not None:
            visit.subject = device_path.group(1)
            rule = self._device_routes.get((request.method, device_path.group(2) or ""))
        if rule is None:
            known = any(path == parts.path for _, path in self._routes)
            status = 405 if known else 404
            return self._page(visit, "message.html", status, visit.t["not_found"])
        response = await self._checked(rule, visit)
        if visit.set_cookies:
            response.headers.extend(visit.set_cookies)
        return response

    async def _checked(self, rule: _Rule, visit: _Visit) -> HttpResponse:
        """Run the rule's handler once what it needs holds."""
        if rule.signed_in and visit.account_id is None:
            return self._needs_sign_in(visit)
        if rule.device:
            visit.device = await self._owned(visit)
            if visit.device is None:
                return self._page(visit, "message.html", 404, visit.t["not_found"])
        if rule.form:
            fields = self._form(visit)
            if fields is None:
                return self._expired(visit)
            visit.form = fields
        return await rule.handler(visit)

    # -- rendering ---------------------------------------------------------------------------

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

    # -- signing in and out ------------------------------------------------------------------

    async def _home(self, visit: _Visit) -> HttpResponse:
        return redirect("/devices" if visit.account_id else "/sign-in")

    async def _sign_in_page(self, visit: _Visit, **context: Any) -> HttpResponse:
        status = context.pop("status", 200)
        if visit.query.get("deleted") and "error" not in context:
            context["notice"] = visit.t["deleted"]
        return self._page(
            visit,
            "sign_in.html",
            status,
            visit.t["sign_in"],
            next=local_target(context.pop("next", None) or visit.query.get("next"), "/devices"),
            account_name=context.pop("account_name", ""),
            **context,
        )

    async def _sign_in(self, visit: _Visit) -> HttpResponse:
        fields = visit.form
        name = fields.get("account_name", "").strip().lower()[:64]
        password = fields.get("password", "")[:MAX_PASSWORD]
        target = local_target(fields.get("next"), "/devices")
        address = visit.request.client
        # Both limits count every attempt, before any check: guessing costs the same
        # whether the account exists or not.
        if not (self.by_account.allow(name) & self.by_address.allow(address)):
            self.counts["sign_in_limited"] += 1
            return await self._sign_in_page(
                visit, status=429, error=visit.t["too_many"], account_name=name, next=target
            )
        found = await self.registry.find_sign_in(name) if name else None
        matches, renew = await self.passwords.check(found[1] if found else None, password)
        if found is None or not matches:
            self.counts["sign_in_refused"] += 1
            return await self._sign_in_page(
                visit, status=401, error=visit.t["bad_sign_in"], account_name=name, next=target
            )
        account_id = found[0]
        if renew:
            await self.registry.update_password_hash(
                account_id, await self.passwords.hash(password)
            )
        if await self.registry.totp_of(account_id) is not None:
            trust = visit.cookies.get(TRUST_COOKIE)
            if not (trust and await self.registry.is_trusted(token_hash(trust), account_id)):
                return self._code_page(visit, self._step(visit, account_id, target))
        self.counts["sign_in"] += 1
        return await self._start_session(visit, account_id, target)

    # -- the second step ---------------------------------------------------------------------

    def _step(self, visit: _Visit, account_id: str, target: str) -> str:
        """What carries a passed password step to the code form: the account, until when,
        where to go after, under a MAC bound to this browser's form cookie."""
        payload = base64.urlsafe_b64encode(
            json.dumps([account_id, int(time.time()) + STEP_S, target]).encode()
        ).decode()
        return payload + "." + self.forms.token(f"step:{_binding(visit)}:{payload}")

    def _passed_step(self, visit: _Visit, step: str) -> tuple[str, str] | None:
        """(account id, target) of a step this browser passed, still fresh; else None."""
        payload, _, mac = step.partition(".")
        binding = _binding(visit)
        if binding is None or not self.forms.valid(f"step:{binding}:{payload}", mac):
            return None
        try:
            account_id, until, target = json.loads(base64.urlsafe_b64decode(payload))
        except (ValueError, TypeError):
            return None
        if not isinstance(account_id, str) or not isinstance(until, int) or until < time.time():
            return None
        return account_id, local_target(target, "/devices")

    def _code_page(self, visit: _Visit, step: str, **context: Any) -> HttpResponse:
        status = context.pop("status", 200)
        return self._page(
            visit, "sign_in_code.html", status, visit.t["two_step"], step=step, **context
        )

    async def _sign_in_code(self, visit: _Visit) -> HttpResponse:
        fields = visit.form
        passed = self._passed_step(visit, fields.get("step", ""))
        if passed is None:
            return self._expired(visit)
        account_id, target = passed
        if not self.by_account.allow("code:" + account_id):
            return self._code_page(visit, fields["step"], status=429, error=visit.t["too_many"])
        totp = await self.registry.totp_of(account_id)
        code = fields.get("code", "")[:32]
        accepted = totp is None  # turned off meanwhile: the password was enough
        if totp is not None:
            step = matching_step(totp[0], code)
            if step is not None:
                accepted = await self.registry.use_totp_step(account_id, step)
            elif any(c.isalpha() for c in code):
                recovery = normalize_recovery_code(code)
                accepted = await self.registry.use_recovery_code(account_id, recovery)
        if not accepted:
            self.counts["sign_in_refused"] += 1
            return self._code_page(
                visit, fields["step"], status=401, error=visit.t["bad_code_totp"]
            )
        self.counts["sign_in"] += 1
        response = await self._start_session(visit, account_id, target)
        if fields.get("trust") == "1":
            token = new_token()
            await self.registry.trust_computer(token_hash(token), account_id, TRUST_COOKIE_S)
            response.headers.append(set_cookie(TRUST_COOKIE, token, TRUST_COOKIE_S))
        return response

    async def _two_step_page(self, visit: _Visit, **context: Any) -> HttpResponse:
        status = context.pop("status", 200)
        if await self.registry.totp_of(visit.owner) is not None:
            return self._page(
                visit, "two_step.html", status, visit.t["two_step"], enabled=True, **context
            )
        # Asked again after a wrong code: the same key, the one the app may hold already.
        secret = context.pop("secret", None) or new_secret()
        name = await self.registry.account_name(visit.owner) or visit.owner
        key, uri = provisioning(secret, name, self.config.operator_name)
        sealed = base64.urlsafe_b64encode(secret).decode()
        sealed += "." + self.forms.token(f"totp:{visit.session}:{sealed}")
        return self._page(
            visit,
            "two_step.html",
            status,
            visit.t["two_step"],
            enabled=False,
            key=key,
            uri=uri,
            secret=sealed,
            **context,
        )

    async def _two_step_on(self, visit: _Visit) -> HttpResponse:
        fields = visit.form
        sealed, _, mac = fields.get("secret", "").partition(".")
        if not self.forms.valid(f"totp:{visit.session}:{sealed}", mac):
            return self._expired(visit)
        secret = base64.urlsafe_b64decode(sealed)
        problem = await self._password_again(visit, fields.get("password", ""))
        step = matching_step(secret, fields.get("code", "")) if problem is None else None
        if problem is None and step is None:
            problem = visit.t["bad_code_totp"]
        if problem is not None or step is None:
            return await self._two_step_page(visit, status=401, error=problem, secret=secret)
        codes = new_recovery_codes()
        await self.registry.set_totp(visit.owner, secret, codes)
        await self.registry.use_totp_step(visit.owner, step)  # this code is spent
        log.info("account %s turned two-step sign-in on", visit.owner)
        return self._page(visit, "recovery.html", 200, visit.t["recovery_title"], codes=codes)

    async def _two_step_off(self, visit: _Visit) -> HttpResponse:
        fields = visit.form
        problem = await self._password_again(visit, fields.get("password", ""))
        if problem is not None:
            return await self._two_step_page(visit, status=401, error=problem)
        await self.registry.turn_totp_off(visit.owner)
        log.info("account %s turned two-step sign-in off", visit.owner)
        return await self._account_page(visit, notice=visit.t["saved"])

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

    async def _sign_out(self, visit: _Visit) -> HttpResponse:
        if visit.session is None:
            return redirect("/sign-in")
        if self._form(visit) is None:
            return self._expired(visit)
        await self.registry.end_session(token_hash(visit.session))
        return redirect("/sign-in", [expire_cookie(SESSION_COOKIE)])

    async def _sign_up_page(self, visit: _Visit, **context: Any) -> HttpResponse:
        status = context.pop("status", 200)
        values = {key: context.pop(key, "") for key in ("account_name", "display_name", "email")}
        return self._page(visit, "sign_up.html", status, visit.t["sign_up"], **values, **context)

    async def _sign_up(self, visit: _Visit) -> HttpResponse:
        fields = visit.form
        name = fields.get("account_name", "").strip().lower()[:64]
        password = fields.get("password", "")
        display = fields.get("display_name", "").strip()[:200] or name
        email = fields.get("email", "").strip()[:300]
        again = {"account_name": name, "display_name": display, "email": email}
        if not self.sign_ups.allow(visit.request.client):
            return await self._sign_up_page(visit, status=429, error=visit.t["too_many"], **again)
        if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            why = visit.t["password_hint"]
            error = visit.t["bad_form"].format(why=why)
            return await self._sign_up_page(visit, status=400, error=error, **again)
        try:
            account = await self.registry.create_owner(
                name, await self.passwords.hash(password), display, email or None
            )
        except Conflict:
            return await self._sign_up_page(visit, status=409, error=visit.t["name_taken"], **again)
        except InvalidValue as exc:
            error = visit.t["bad_form"].format(why=str(exc))
            return await self._sign_up_page(visit, status=400, error=error, **again)
        self.counts["sign_up"] += 1
        log.info("account %s signed up", account.account_id)
        return await self._start_session(visit, account.account_id, "/devices")

    # -- the owner's pages ---------------------------------------------------------------------

    async def _devices(self, visit: _Visit) -> HttpResponse:
        t = visit.t
        addresses_of: dict[str, list[str]] = {}
        for rrset in await self.registry.list_rrsets_of_owner(visit.owner):
            if rrset.owner == rrset.device_name and rrset.rrtype in ("A", "AAAA"):
                addresses_of.setdefault(rrset.device_name, []).extend(rrset.values)
        devices = await self.registry.list_devices(visit.owner)
        pages = max(1, -(-len(devices) // DEVICES_PER_PAGE))
        try:
            page = min(max(1, int(visit.query.get("page", "1"))), pages)
        except ValueError:
            page = 1
        first = (page - 1) * DEVICES_PER_PAGE
        shown = []
        for device in devices[first : first + DEVICES_PER_PAGE]:
            addresses = addresses_of.get(device.name, [])
            shown.append(
                {
                    "name": device.name,
                    "relay_url": f"https://{device.name}.{self.config.link_zone}/",
                    "ddns_name": f"{device.name}.{self.config.zone}",
                    "addresses": addresses,
                    "access": t[f"access_{device.access_mode.value}"],
                    "last_seen": _when(device.last_seen_at),
                }
            )
        just = visit.query.get("paired", "")
        notice = t["paired"].format(name=just) if any(d.name == just for d in devices) else None
        gone = visit.query.get("unregistered", "")
        if _DEVICE_PATH.fullmatch("/devices/" + gone) and not any(d.name == gone for d in devices):
            notice = t["unregistered"].format(name=gone)
        return self._page(
            visit,
            "devices.html",
            200,
            t["devices"],
            notice=notice,
            devices=shown,
            page=page,
            pages=pages,
            showing=t["showing"].format(
                first=first + 1, last=first + len(shown), total=len(devices)
            ),
        )

    async def _pair_page(self, visit: _Visit, **context: Any) -> HttpResponse:
        status = context.pop("status", 200)
        return self._page(
            visit,
            "pair.html",
            status,
            visit.t["pair"],
            code=context.pop("code", visit.query.get("code", "")[:12]),
            name=context.pop("name", ""),
            example=f"my-nas.{self.config.zone}",
            **context,
        )

    async def _pair(self, visit: _Visit) -> HttpResponse:
        fields = visit.form
        code = fields.get("code", "").strip()[:32]
        name = fields.get("name", "").strip().lower()[:64]
        again = {"code": code, "name": name}
        allowed = self.pair_tries.allow("account:" + visit.owner)
        if not (allowed & self.pair_tries.allow("address:" + visit.request.client)):
            return await self._pair_page(visit, status=429, error=visit.t["too_many"], **again)
        try:
            device = await self.registry.complete_pairing(code, visit.owner, name)
        except NotFound:
            self.counts["pair_refused"] += 1
            return await self._pair_page(visit, status=404, error=visit.t["bad_code"], **again)
        except Conflict:
            self.counts["pair_refused"] += 1
            return await self._pair_page(visit, status=409, error=visit.t["pair_taken"], **again)
        except InvalidValue as exc:
            error = visit.t["bad_form"].format(why=str(exc))
            return await self._pair_page(visit, status=400, error=error, **again)
        self.counts["paired"] += 1
        log.info("account %s paired device %s", visit.owner, device.name)
        return redirect("/devices?paired=" + device.name)

    async def _owned(self, visit: _Visit) -> Device | None:
        """The device the path names, if the visitor owns it (else as if it did not exist)."""
        device = await self.registry.get_device(visit.subject)
        if device is None or device.owner_id != visit.owner:
            return None
        return device

    async def _device_page(self, visit: _Visit, **context: Any) -> HttpResponse:
        device = visit.owned
        status = context.pop("status", 200)
        names = [await self.registry.account_name(a) or a for a in device.access_list]
        if visit.query.get("saved"):
            context.setdefault("notice", visit.t["saved"])
        shown = {
            "name": device.name,
            "relay_url": f"https://{device.name}.{self.config.link_zone}/",
            "ddns_name": f"{device.name}.{self.config.zone}",
            "mode": context.pop("mode", device.access_mode.value),
            "accounts": context.pop("accounts", names),
        }
        tokens = await self.registry.list_tokens(device_name=device.name)
        keys = [
            {"id": k.key_name, "created": k.algorithm}
            for k in await self.registry.list_tsig_keys(device.name)
        ]
        return self._page(
            visit,
            "device.html",
            status,
            device.name,
            device=shown,
            tokens=_listed(tokens),
            keys=keys,
            link=not await self.registry.feature_off(device.name, "link"),
            **context,
        )

    async def _device_access(self, visit: _Visit) -> HttpResponse:
        device = visit.owned
        fields = visit.form
        try:
            mode = AccessMode(fields.get("mode", ""))
        except ValueError:
            mode = device.access_mode
        names = list(dict.fromkeys(n.strip().lower() for n in fields.get("accounts", "").split()))[
            :100
        ]
        ids: list[str] = []
        unknown: list[str] = []
        for name in names if mode is AccessMode.CUSTOM else []:
            found = await self.registry.find_sign_in(name)
            if found is None:
                unknown.append(name)
            else:
                ids.append(found[0])
        if unknown:
            error = visit.t["access_unknown"].format(names=", ".join(unknown))
            return await self._device_page(
                visit, status=400, error=error, mode=mode.value, accounts=names
            )
        await self.registry.set_access(device.name, mode, tuple(ids))
        log.info("account %s set the access of %s to %s", visit.owner, device.name, mode.value)
        return redirect(f"/devices/{device.name}?saved=1")

    async def _unregister(self, visit: _Visit) -> HttpResponse:
        device = visit.owned
        fields = visit.form
        if fields.get("confirm", "").strip().lower() != device.name:
            return await self._device_page(visit, status=400, error=visit.t["confirm_mismatch"])
        await self.registry.delete_device(device.name)
        log.info("account %s unregistered %s", visit.owner, device.name)
        return redirect("/devices?unregistered=" + device.name)

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

    async def _new_dyndns2(self, visit: _Visit) -> HttpResponse:
        device = visit.owned
        fields = visit.form
        problem = await self._password_again(visit, fields.get("password", ""))
        if problem is not None:
            return await self._device_page(visit, status=401, error=problem)
        token, secret = await self.registry.create_token(TokenKind.DYNDNS2, device_name=device.name)
        log.info("account %s created DynDNS2 password %s", visit.owner, token.token_id)
        user = f"{device.name}.{self.config.zone}"
        return self._secret_page(visit, secret, f"/devices/{device.name}", device.name, user)

    async def _revoke_dyndns2(self, visit: _Visit) -> HttpResponse:
        device = visit.owned
        fields = visit.form
        mine = {t.token_id for t in await self.registry.list_tokens(device_name=device.name)}
        if fields.get("token_id") in mine:
            await self.registry.revoke_token(fields["token_id"])
        return redirect(f"/devices/{device.name}?saved=1")

    async def _set_link(self, visit: _Visit) -> HttpResponse:
        """Reaching the device through the relay, on or off; off, the relay closes its
        tunnel within seconds and refuses it until it is on again."""
        device = visit.owned
        on = visit.form.get("link") == "on"
        await self.registry.set_feature(device.name, "link", on)
        log.info(
            "account %s turned Link %s for %s", visit.owner, "on" if on else "off", device.name
        )
        return redirect(f"/devices/{device.name}?saved=1")

    async def _new_tsig_key(self, visit: _Visit) -> HttpResponse:
        """An RFC 2136 key (nsupdate, certbot, lego) for the device's own names; its secret
        is shown this once (ddnsd keeps it: HMAC needs it)."""
        device = visit.owned
        problem = await self._password_again(visit, visit.form.get("password", ""))
        if problem is not None:
            return await self._device_page(visit, status=401, error=problem)
        name = f"{device.name}-{secrets.token_hex(3)}.{self.config.zone}"
        key = await self.registry.create_tsig_key(device.name, name)
        log.info("account %s created TSIG key %s", visit.owner, key.key_name)
        secret = base64.b64encode(key.secret).decode()
        return self._secret_page(
            visit,
            f"{key.algorithm}:{key.key_name}:{secret}",
            f"/devices/{device.name}",
            device.name,
            hint=f"nsupdate -y {key.algorithm}:{key.key_name}:{secret}",
        )

    async def _revoke_tsig_key(self, visit: _Visit) -> HttpResponse:
        device = visit.owned
        mine = {k.key_name for k in await self.registry.list_tsig_keys(device.name)}
        if visit.form.get("token_id") in mine:
            await self.registry.revoke_tsig_key(device.name, visit.form["token_id"])
        return redirect(f"/devices/{device.name}?saved=1")

    async def _new_api_token(self, visit: _Visit) -> HttpResponse:
        fields = visit.form
        problem = await self._password_again(visit, fields.get("password", ""))
        if problem is not None:
            return await self._account_page(visit, status=401, error=problem)
        token, secret = await self.registry.create_token(TokenKind.API, account_id=visit.owner)
        log.info("account %s created API token %s", visit.owner, token.token_id)
        return self._secret_page(visit, secret, "/account", visit.t["account"])

    async def _revoke_api_token(self, visit: _Visit) -> HttpResponse:
        fields = visit.form
        mine = {t.token_id for t in await self.registry.list_tokens(account_id=visit.owner)}
        if fields.get("token_id") in mine:
            await self.registry.revoke_token(fields["token_id"])
        return await self._account_page(visit, notice=visit.t["revoked"])

    async def _history(self, visit: _Visit) -> HttpResponse:
        """The owner's devices' connection records, newest first, the visitor's address
        masked (`a.b.c.0/24`): the owner sees who, not exactly who."""
        files = self.config.access_log_key_files
        shown: list[dict[str, str | None]] = []
        if files:
            keys = [AccessLogKeys(path) for path in files]  # read again: keys come monthly
            names = [d.name for d in await self.registry.list_devices(visit.owner)]
            records = await self.registry.read_access(keys, names) if names else []
            readable = [r for r in records if isinstance(r, AccessRecord)]
            readable.sort(key=lambda r: r.started_at, reverse=True)
            shown = [
                {
                    "when": _when(r.started_at),
                    "device": r.device,
                    "ingress": r.ingress,
                    "source": mask_address(r.client_address),
                    "bytes": f"{r.bytes_in} / {r.bytes_out}",
                    "result": r.result,
                }
                for r in readable[:HISTORY_ROWS]
            ]
        return self._page(
            visit, "history.html", 200, visit.t["history"], offered=bool(files), records=shown
        )

    async def _export(self, visit: _Visit) -> HttpResponse:
        """The right of access: what `nascloud account export` gives, as a download (the
        access log's records need the daemons' keys, which the portal does not hold)."""
        data = await self.registry.export_account(visit.owner)
        body = json.dumps(data, indent=2, ensure_ascii=False).encode()
        disposition = ("Content-Disposition", 'attachment; filename="nascloud-account.json"')
        return HttpResponse(200, body, "application/json; charset=utf-8", [disposition])

    async def _delete_account(self, visit: _Visit) -> HttpResponse:
        """The right to erasure, after the password again (a session left open is not
        enough to delete an account)."""
        fields = visit.form
        problem = await self._password_again(visit, fields.get("password", ""))
        if problem is not None:
            return await self._account_page(visit, status=401, error=problem)
        gone = await self.registry.delete_account(visit.owner)
        log.info("account %s deleted itself and %d devices", visit.owner, len(gone))
        return redirect("/sign-in?deleted=1", [expire_cookie(SESSION_COOKIE)])

    async def _account_page(self, visit: _Visit, **context: Any) -> HttpResponse:
        status = context.pop("status", 200)
        try:
            account = await self.registry.get_account(visit.owner)
        except NotFound:
            return self._needs_sign_in(visit)
        return self._page(
            visit,
            "account.html",
            status,
            visit.t["account"],
            account_name=await self.registry.account_name(visit.owner) or "",
            tokens=_listed(await self.registry.list_tokens(account_id=visit.owner)),
            two_step=await self.registry.totp_of(visit.owner) is not None,
            display_name=context.pop("display_name", account.display_name),
            email=context.pop("email", account.email),
            **context,
        )

    async def _account(self, visit: _Visit) -> HttpResponse:
        fields = visit.form
        display = fields.get("display_name", "").strip()[:200]
        email = fields.get("email", "").strip()[:300]
        try:
            await self.registry.correct_account(visit.owner, email=email, display_name=display)
        except InvalidValue as exc:
            error = visit.t["bad_form"].format(why=str(exc))
            return await self._account_page(
                visit, status=400, error=error, display_name=display, email=email
            )
        return await self._account_page(visit, notice=visit.t["saved"])

    async def _cookies(self, visit: _Visit) -> HttpResponse:
        t = visit.t
        hours = int(self.config.session_lifetime_s // 3600)
        listed = [
            {
                "name": SESSION_COOKIE,
                "purpose": t["cookie_session"],
                "lifetime": t["until_sign_out"].format(hours=hours),
            },
            {"name": FORM_COOKIE, "purpose": t["cookie_form"], "lifetime": t["one_hour"]},
            {"name": TRUST_COOKIE, "purpose": t["cookie_trust"], "lifetime": t["thirty_days"]},
            {"name": LANG_COOKIE, "purpose": t["cookie_lang"], "lifetime": t["one_year"]},
        ]
        return self._page(visit, "cookies.html", 200, t["cookies"], cookie_list=listed)

    async def _language(self, visit: _Visit) -> HttpResponse:
        """A preference, not an action on anything: a link, so that it works with no
        session and no form."""
        chosen = visit.query.get("set", "")
        target = local_target(visit.query.get("next"), "/")
        if chosen not in LANGUAGES:
            return redirect(target)
        return redirect(target, [set_cookie(LANG_COOKIE, chosen, LANG_COOKIE_S)])


def _binding(visit: _Visit) -> str | None:
    """The cookie this browser's forms are bound to: its session's, or its form cookie's."""
    if visit.session is not None:
        return "session:" + visit.session
    form = visit.cookies.get(FORM_COOKIE)
    return "form:" + form if form else None


def _listed(tokens: list[Token]) -> list[dict[str, str | None]]:
    return [{"id": t.token_id, "created": _when(t.created_at)} for t in tokens]


def _when(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")
