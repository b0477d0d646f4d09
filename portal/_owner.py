"""The owner's pages: their devices (access, Link, secrets, unregistering), pairing a NAS,
the connection history, the account (two-step sign-in, API tokens, export, erasure), and
the cookie and language pages."""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

from httpapi import HttpResponse
from registry import (
    AccessLogKeys,
    AccessMode,
    AccessRecord,
    Conflict,
    InvalidValue,
    NotFound,
    TokenKind,
    mask_address,
)

from ._base import (
    _DEVICE_PATH,
    DEVICES_PER_PAGE,
    HISTORY_ROWS,
    LANG_COOKIE_S,
    PortalBase,
    _label,
    _listed,
    _Visit,
    _when,
    log,
)
from ._text import LANGUAGES
from ._twostep import (
    matching_step,
    new_recovery_codes,
    new_secret,
    provisioning,
)
from ._web import (
    FORM_COOKIE,
    LANG_COOKIE,
    SESSION_COOKIE,
    TRUST_COOKIE,
    expire_cookie,
    local_target,
    redirect,
    set_cookie,
)

__all__ = ["OwnerPages"]


class OwnerPages(PortalBase):
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
            ddns=not await self.registry.feature_off(device.name, "ddns"),
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

    async def _new_dyndns2(self, visit: _Visit) -> HttpResponse:
        device = visit.owned
        fields = visit.form
        problem = await self._password_again(visit, fields.get("password", ""))
        if problem is not None:
            return await self._device_page(visit, status=401, error=problem)
        try:
            token, secret = await self.registry.create_token(
                TokenKind.DYNDNS2, device_name=device.name, name=_label(visit.form.get("name", ""))
            )
        except Conflict:  # DDNS is off: no password until it is on
            return await self._device_page(visit, status=409, error=visit.t["ddns_off"])
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

    async def _set_feature(self, feature: str, visit: _Visit) -> HttpResponse:
        """A feature of the device on or off ("link": reaching it through the relay; "ddns":
        its published addresses). Off deletes the feature's data at once (the registry does
        it in the switch's transaction); ddnsd and relayd follow within two seconds."""
        device = visit.owned
        on = visit.form.get(feature) == "on"
        await self.registry.set_feature(device.name, feature, on)
        log.info(
            "account %s turned %s %s for %s",
            visit.owner,
            feature,
            "on" if on else "off",
            device.name,
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
        token, secret = await self.registry.create_token(
            TokenKind.API, account_id=visit.owner, name=_label(visit.form.get("name", ""))
        )
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
