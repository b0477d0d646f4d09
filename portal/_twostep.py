"""Two-step sign-in: TOTP (RFC 6238: SHA-1, 6 digits, 30-second steps, the step before and
after accepted for clock drift) with cryptography's implementation, and one-time recovery
codes. A code's step is recorded when used, so a code seen over a shoulder or a proxy cannot
be played again."""

from __future__ import annotations

import base64
import hmac
import os
import secrets
import time
from typing import Final

from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP

__all__ = [
    "matching_step",
    "new_recovery_codes",
    "new_secret",
    "normalize_recovery_code",
    "provisioning",
]

STEP_S: Final = 30
DIGITS: Final = 6
RECOVERY_CODES: Final = 10
_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32


def new_secret() -> bytes:
    return os.urandom(20)  # 160 bits, as RFC 4226 recommends


def _totp(secret: bytes) -> TOTP:
    # SHA-1: what RFC 6238 and every authenticator app use (HMAC-SHA-1 is not broken).
    return TOTP(secret, DIGITS, SHA1(), STEP_S, enforce_key_length=True)


def provisioning(secret: bytes, account_name: str, issuer: str) -> tuple[str, str]:
    """(the key to type into an authenticator app, in groups of four; the otpauth:// URI)."""
    key = base64.b32encode(secret).decode().rstrip("=")
    grouped = " ".join(key[i : i + 4] for i in range(0, len(key), 4))
    return grouped, _totp(secret).get_provisioning_uri(account_name, issuer)


def matching_step(secret: bytes, code: str, now: float | None = None) -> int | None:
    """The time step whose code `code` is (now, one before or one after), or None."""
    digits = "".join(c for c in code if c.isdigit())
    if len(digits) != DIGITS:
        return None
    moment = time.time() if now is None else now
    totp = _totp(secret)
    found = None
    for drift in (-1, 0, 1):  # all three compared: no early exit to time
        at = moment + drift * STEP_S
        if hmac.compare_digest(totp.generate(at), digits.encode()):
            found = int(at // STEP_S)
    return found


def new_recovery_codes() -> list[str]:
    """Ten codes of 50 bits each, `XXXXX-XXXXX`."""
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(_ALPHABET) for _ in range(10))
        codes.append(raw[:5] + "-" + raw[5:])
    return codes


def normalize_recovery_code(code: str) -> str:
    cleaned = "".join(c for c in code.upper() if c.isalnum()).translate(str.maketrans("OIL", "011"))
    return cleaned[:5] + "-" + cleaned[5:] if len(cleaned) == 10 else cleaned
