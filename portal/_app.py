"""The portal's router: every route with its rule (signed in, a form with this browser's
token, a device of the visitor's), checked once before its handler; every answer carries the
security headers. The pages are in `_signin.py` and `_owner.py`, what they share in `_base.py`."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from config.portal import PortalSection
from httpapi import STYLESHEET, STYLESHEET_PATH, HttpRequest, HttpResponse
from registry import Registry

from ._base import (
    _DEVICE_PATH,
    _Rule,
    _Visit,
)
from ._owner import OwnerPages
from ._passkeys import PasskeyPages
from ._passwords import Passwords
from ._text import choose
from ._web import (
    LANG_COOKIE,
    SESSION_COOKIE,
    cookies,
    secure_headers,
    token_hash,
)

__all__ = ["Portal"]


class Portal(PasskeyPages, OwnerPages):
    """The portal: every route, its rule, and the answer's security headers."""

    def __init__(
        self,
        config: PortalSection,
        registry: Registry,
        secret: bytes,
        *,
        passwords: Passwords | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(config, registry, secret, passwords=passwords, clock=clock)
        anyone, owner = _Rule, functools.partial(_Rule, signed_in=True)
        self._routes: dict[tuple[str, str], _Rule] = {
            ("GET", "/"): anyone(self._home),
            ("GET", "/sign-in"): anyone(self._sign_in_page),
            ("POST", "/sign-in"): anyone(self._sign_in, form=True),
            ("GET", "/sign-up"): anyone(self._sign_up_page),
            ("POST", "/sign-up"): anyone(self._sign_up, form=True),
            ("POST", "/sign-in/code"): anyone(self._sign_in_code, form=True),
            ("POST", "/sign-in/passkey"): anyone(self._sign_in_passkey, form=True),
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
            ("GET", "/account/passkeys"): owner(self._passkeys_page),
            ("POST", "/account/passkeys/new"): owner(self._new_passkey, form=True),
            ("POST", "/account/passkeys/add"): owner(self._add_passkey, form=True),
            ("POST", "/account/passkeys/remove"): owner(self._remove_passkey, form=True),
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
            **{
                ("POST", "/" + feature): owner(
                    functools.partial(self._set_feature, feature), form=True, device=True
                )
                for feature in ("link", "ddns")
            },
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
        if parts.path == STYLESHEET_PATH and request.method == "GET":
            return HttpResponse(200, STYLESHEET, "text/css; charset=utf-8")
        if parts.path == "/static/passkey.js" and request.method == "GET":
            return HttpResponse(200, self.script, "text/javascript; charset=utf-8")
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
