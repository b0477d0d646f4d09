"""Fuzz the portal's reading of a passkey answer (`portal._webauthn`), the JSON a browser
posts after a WebAuthn ceremony, through py_webauthn's checks of both ceremonies.

The input is the posted `credential` field. Contract: reading it and checking it as a
sign-in (against a real P-256 key) and as a registration raise nothing but `BAD_ANSWER`: a
hostile answer is refused, never a 500; and nothing the fuzzer makes is ever accepted.
"""

from __future__ import annotations

import webauthn
from cryptography.hazmat.primitives.asymmetric import ec

from portal._webauthn import BAD_ANSWER, registration_answer, sign_in_answer

_POINT = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
#: A COSE_Key (EC2, ES256, P-256), as an authenticator gives one: what a sign-in checks with.
COSE_KEY = (
    b"\xa5\x01\x02\x03\x26\x20\x01\x21\x58\x20"
    + _POINT.x.to_bytes(32, "big")
    + b"\x22\x58\x20"
    + _POINT.y.to_bytes(32, "big")
)
ORIGIN = "http://localhost:8443"


def one_input(data: bytes) -> None:
    raw = data.decode("utf-8", "replace")
    try:
        credential, challenge = sign_in_answer(raw)
        webauthn.verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id="localhost",
            expected_origin=ORIGIN,
            credential_public_key=COSE_KEY,
            credential_current_sign_count=0,
            require_user_verification=True,
        )
    except BAD_ANSWER:
        pass
    else:
        raise AssertionError("a made-up sign-in was accepted")
    try:
        registered, challenge = registration_answer(raw)
        webauthn.verify_registration_response(
            credential=registered,
            expected_challenge=challenge,
            expected_rp_id="localhost",
            expected_origin=ORIGIN,
            require_user_verification=True,
        )
    except BAD_ANSWER:
        pass
    # A registration the fuzzer makes may pass: "none" attestation proves no authenticator,
    # which is why the portal asks for the password first and binds the challenge.


def main() -> None:
    from ._atheris import fuzz

    fuzz(one_input)


if __name__ == "__main__":
    main()
