"""What every answer and form of the portal shares: cookies, the security headers, form
bodies, CSRF tokens bound to a cookie, and `next=` targets that stay on this site."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final
from urllib.parse import parse_qs

from httpapi import HttpRequest, HttpResponse

__all__ = [
    "FORM_COOKIE",
    "LANG_COOKIE",
    "SESSION_COOKIE",
    "TRUST_COOKIE",
    "Forms",
    "cookies",
    "expire_cookie",
    "form_fields",
    "local_target",
    "new_token",
    "redirect",
    "secure_headers",
    "set_cookie",
    "token_hash",
]

SESSION_COOKIE: Final = "__Host-session"  # a signed-in session (security)
FORM_COOKIE: Final = "__Host-form"  # binds the anonymous forms' CSRF token (security)
LANG_COOKIE: Final = "__Host-lang"  # the language chosen (preference)
TRUST_COOKIE: Final = "__Host-trust"  # skips the second sign-in step here (security)
MAX_FIELDS: Final = 20

#: No inline script, no frame, nothing from elsewhere: the pages need their own stylesheet
#: and, for passkeys only, their own script.
_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def secure_headers(tls: bool) -> list[tuple[str, str]]:
    headers = [
        ("Content-Security-Policy", _CSP),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("Cache-Control", "no-store"),  # every page may be personal
        ("Cross-Origin-Opener-Policy", "same-origin"),
    ]
    if tls:
        headers.append(("Strict-Transport-Security", "max-age=31536000"))
    return headers


def cookies(request: HttpRequest) -> dict[str, str]:
    """The request's cookies; the first of a repeated name wins (a cookie set for a parent
    domain cannot shadow one of ours that way: ours are `__Host-`)."""
    found: dict[str, str] = {}
    for part in request.headers.get("cookie", "").split(";")[:50]:
        name, sep, value = part.strip().partition("=")
        if sep and name and name not in found:
            found[name] = value
    return found


def set_cookie(name: str, value: str, max_age_s: int) -> tuple[str, str]:
    """A `__Host-` cookie: Secure, for this host only and every path, unreadable by scripts
    (there are none), not sent along with other sites' requests."""
    return (
        "Set-Cookie",
        f"{name}={value}; Max-Age={max_age_s}; Path=/; Secure; HttpOnly; SameSite=Lax",
    )


def expire_cookie(name: str) -> tuple[str, str]:
    return set_cookie(name, "", 0)


def new_token() -> str:
    return secrets.token_urlsafe(32)  # 256 bits


def token_hash(token: str) -> bytes:
    """What the registry keeps of a session cookie: a database copy signs nobody in."""
    return hashlib.sha256(token.encode()).digest()


def form_fields(request: HttpRequest) -> dict[str, str] | None:
    """The fields of a urlencoded form (the first value of each), or None if the body is
    not one."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return None
    try:
        text = request.body.decode("utf-8")
        parsed = parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        return None
    return {name: values[0] for name, values in parsed.items()}


def local_target(target: str | None, default: str) -> str:
    """`next=` only ever leads to a path of this site: not `//elsewhere`, not a scheme, not
    a backslash that a browser reads as a slash."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 33 or ord(c) > 126 for c in target)
        or len(target) > 512
    ):
        return default
    return target


def redirect(location: str, headers: list[tuple[str, str]] | None = None) -> HttpResponse:
    return HttpResponse(303, b"", headers=[("Location", location), *(headers or [])])


class Forms:
    """CSRF tokens: an HMAC, under the portal's own secret, of the cookie the form is bound
    to (the session's, or before sign-in the form cookie's). A token from another browser,
    or from before sign-in or sign-out, does not verify."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def token(self, binding: str) -> str:
        return hmac.new(self._secret, binding.encode(), hashlib.sha256).hexdigest()

    def valid(self, binding: str | None, token: str | None) -> bool:
        if not binding or not token:
            return False
        return hmac.compare_digest(self.token(binding), token)
