"""Passkeys (WebAuthn Level 3, checked by py_webauthn): an owner registers one after the
password again, and signs in with it on any browser without password or second step (a
passkey with user verification is both factors).

The ceremonies need the browser's `navigator.credentials`, so these pages load the portal's
one script, `/static/passkey.js`; every other page, and signing in with a password, works
without it. Each challenge is random, single use, five minutes long and bound to one browser
(its session, or before sign-in its form cookie) and one purpose, kept in this process only.
"""

from __future__ import annotations

from typing import Any

import webauthn
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from httpapi import HttpResponse
from registry import Conflict, InvalidValue, Passkey

from ._base import _binding, _label, _Visit, _when, log
from ._signin import SignInPages
from ._web import local_target, redirect
from ._webauthn import BAD_ANSWER, registration_answer, sign_in_answer

__all__ = ["PasskeyPages"]


class PasskeyPages(SignInPages):
    # -- registering one, signed in ----------------------------------------------------------

    async def _passkeys_page(self, visit: _Visit, **context: Any) -> HttpResponse:
        status = context.pop("status", 200)
        if visit.query.get("saved") and "error" not in context:
            context["notice"] = visit.t["saved"]
        keys = await self.registry.passkeys_of(visit.owner)
        return self._page(
            visit,
            "passkeys.html",
            status,
            visit.t["passkeys"],
            offered=self.relying_party is not None,
            passkeys=[_listed(k) for k in keys],
            **context,
        )

    async def _new_passkey(self, visit: _Visit) -> HttpResponse:
        """After the password again: the creation options, for the script to hand to the
        browser, and the form it posts the new credential with."""
        party = self.relying_party
        if party is None:
            return await self._passkeys_page(visit, status=404, error=visit.t["not_found"])
        problem = await self._password_again(visit, visit.form.get("password", ""))
        if problem is not None:
            return await self._passkeys_page(visit, status=401, error=problem)
        challenge = self.challenges.new("create:" + str(_binding(visit)), visit.request.client)
        if challenge is None:
            return await self._passkeys_page(visit, status=429, error=visit.t["too_many"])
        account = await self.registry.get_account(visit.owner)
        name = await self.registry.account_name(visit.owner) or account.account_id
        existing = await self.registry.passkeys_of(visit.owner)
        options = webauthn.generate_registration_options(
            rp_id=party.rp_id,
            rp_name=self.config.operator_name,
            user_id=account.account_id.encode(),  # random, names nobody
            user_name=name,
            user_display_name=account.display_name,
            challenge=challenge,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                user_verification=UserVerificationRequirement.REQUIRED,
            ),
            exclude_credentials=[
                PublicKeyCredentialDescriptor(id=k.credential_id) for k in existing
            ],
        )
        return self._page(
            visit,
            "passkey_ceremony.html",
            200,
            visit.t["passkey_add"],
            ceremony="create",
            action="/account/passkeys/add",
            options=webauthn.options_to_json(options),
            button=visit.t["passkey_create"],
            name=visit.form.get("name", "")[:64],
            next="",
        )

    async def _add_passkey(self, visit: _Visit) -> HttpResponse:
        party = self.relying_party
        if party is None:
            return await self._passkeys_page(visit, status=404, error=visit.t["not_found"])
        try:
            credential, challenge = registration_answer(visit.form.get("credential", ""))
            if not self.challenges.take(challenge, "create:" + str(_binding(visit))):
                raise ValueError("not a challenge of this browser's, or expired")
            verified = webauthn.verify_registration_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=party.rp_id,
                expected_origin=party.origin,
                require_user_verification=True,
            )
        except BAD_ANSWER as exc:
            # The class only: the message may quote what the browser sent.
            log.info("a passkey for account %s was refused: %s", visit.owner, type(exc).__name__)
            return await self._passkeys_page(visit, status=400, error=visit.t["passkey_failed"])
        try:
            await self.registry.add_passkey(
                visit.owner,
                verified.credential_id,
                verified.credential_public_key,
                verified.sign_count,
                _label(visit.form.get("name", "")),
            )
        except (Conflict, InvalidValue):
            return await self._passkeys_page(visit, status=409, error=visit.t["passkey_failed"])
        log.info("account %s added a passkey", visit.owner)
        return redirect("/account/passkeys?saved=1")

    async def _remove_passkey(self, visit: _Visit) -> HttpResponse:
        try:
            credential_id = base64url_to_bytes(visit.form.get("credential_id", ""))
        except ValueError:
            credential_id = b""
        if credential_id and await self.registry.remove_passkey(visit.owner, credential_id):
            log.info("account %s removed a passkey", visit.owner)
        return redirect("/account/passkeys?saved=1")

    # -- signing in with one ---------------------------------------------------------------

    async def _sign_in_page(self, visit: _Visit, **context: Any) -> HttpResponse:
        """The sign-in page, offering a passkey too when the portal knows its public URL: the
        request options (any of the account's passkeys: the browser asks which) under a
        challenge for this browser."""
        party = self.relying_party
        if party is not None:
            self._csrf(visit)  # the form cookie the challenge is bound to, made now if none
            challenge = self.challenges.new("get:" + str(_binding(visit)), visit.request.client)
            if challenge is not None:  # else this address holds too many: password only
                options = webauthn.generate_authentication_options(
                    rp_id=party.rp_id,
                    challenge=challenge,
                    user_verification=UserVerificationRequirement.REQUIRED,
                )
                context["passkey"] = webauthn.options_to_json(options)
        return await super()._sign_in_page(visit, **context)

    async def _sign_in_passkey(self, visit: _Visit) -> HttpResponse:
        party = self.relying_party
        target = local_target(visit.form.get("next"), "/devices")
        if party is None:
            return self._page(visit, "message.html", 404, visit.t["not_found"])
        if not self.by_address.allow(visit.request.client):
            self.counts["sign_in_limited"] += 1
            return await self._sign_in_page(
                visit, status=429, error=visit.t["too_many"], next=target
            )
        if not visit.form.get("credential"):  # the script did not run
            return await self._sign_in_page(
                visit, status=400, error=visit.t["passkey_script"], next=target
            )
        try:
            credential, challenge = sign_in_answer(visit.form["credential"])
            if not self.challenges.take(challenge, "get:" + str(_binding(visit))):
                raise ValueError("not a challenge of this browser's, or expired")
            passkey = await self.registry.find_passkey(credential.raw_id)
            if passkey is None:
                raise ValueError("no such passkey")
            verified = webauthn.verify_authentication_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=party.rp_id,
                expected_origin=party.origin,
                credential_public_key=passkey.public_key,
                credential_current_sign_count=passkey.sign_count,
                require_user_verification=True,
            )
        except BAD_ANSWER as exc:
            log.info("a passkey sign-in was refused: %s", type(exc).__name__)
            self.counts["sign_in_refused"] += 1
            return await self._sign_in_page(
                visit, status=401, error=visit.t["passkey_failed"], next=target
            )
        await self.registry.passkey_used(passkey.credential_id, verified.new_sign_count)
        self.counts["sign_in"] += 1
        self.counts["sign_in_passkey"] += 1
        return await self._start_session(visit, passkey.account_id, target)


def _listed(passkey: Passkey) -> dict[str, str | None]:
    return {
        "id": bytes_to_base64url(passkey.credential_id),
        "name": passkey.name,
        "created": _when(passkey.created_at),
        "used": _when(passkey.last_used_at),
    }
