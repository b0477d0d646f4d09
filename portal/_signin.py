"""Signing up, in (with the second step when it is on) and out."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from httpapi import HttpResponse
from registry import (
    Conflict,
    InvalidValue,
)

from ._base import (
    STEP_S,
    TRUST_COOKIE_S,
    PortalBase,
    _binding,
    _Visit,
    log,
)
from ._passwords import MAX_PASSWORD, MIN_PASSWORD
from ._twostep import (
    matching_step,
    normalize_recovery_code,
)
from ._web import (
    SESSION_COOKIE,
    TRUST_COOKIE,
    expire_cookie,
    local_target,
    new_token,
    redirect,
    set_cookie,
    token_hash,
)

__all__ = ["SignInPages"]


class SignInPages(PortalBase):
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
            passkey=context.pop("passkey", None),  # its request options, when offered
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
