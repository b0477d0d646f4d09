"""Fuzz the portal's reading of a passkey answer (`portal._webauthn`), the JSON a browser
posts after a WebAuthn ceremony, through py_webauthn's checks of both ceremonies.

An input starting with `{` or `[` is the posted `credential` field as it is. Any other input
replaces one binary field of a real answer (made by a soft P-256 authenticator for
http://localhost:8443): its first byte picks the field (the registration's attestation object
or client data, the sign-in's authenticator data, client data or signature), the rest is the
field's bytes, so that the CBOR and authenticator-data parsers are reached, not only JSON.
Contract: reading and checking raise nothing but `BAD_ANSWER` (a hostile answer is refused,
never a 500), and a sign-in made up by the fuzzer is never accepted.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from typing import Any

import cbor2
import webauthn
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from portal._webauthn import BAD_ANSWER, registration_answer, sign_in_answer

ORIGIN = "http://localhost:8443"
_TARGET_KEY = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
#: The key a sign-in is checked against (COSE_Key: EC2, ES256, P-256); the soft
#: authenticator signs with another, so no answer of it passes.
COSE_KEY = cbor2.dumps(
    {
        1: 2,
        3: -7,
        -1: 1,
        -2: _TARGET_KEY.x.to_bytes(32, "big"),
        -3: _TARGET_KEY.y.to_bytes(32, "big"),
    }
)
#: (ceremony, response field) of each field an input may replace.
FIELDS = (
    ("create", "attestationObject"),
    ("create", "clientDataJSON"),
    ("get", "authenticatorData"),
    ("get", "clientDataJSON"),
    ("get", "signature"),
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def soft_answers() -> tuple[dict[str, Any], dict[str, Any]]:
    """A browser's two answers as `toJSON()` writes them: a registration with "none"
    attestation (valid), and a sign-in signed by that new key."""
    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.public_key().public_numbers()
    cose = {
        1: 2,
        3: -7,
        -1: 1,
        -2: numbers.x.to_bytes(32, "big"),
        -3: numbers.y.to_bytes(32, "big"),
    }
    rp_hash = hashlib.sha256(b"localhost").digest()
    credential_id = bytes(range(16))

    def client_data(kind: str) -> bytes:
        challenge = _b64(bytes(32))
        return json.dumps({"type": kind, "challenge": challenge, "origin": ORIGIN}).encode()

    registered = (
        rp_hash
        + b"\x45"  # user present, user verified, attested credential data
        + (0).to_bytes(4, "big")
        + bytes(16)  # AAGUID
        + len(credential_id).to_bytes(2, "big")
        + credential_id
        + cbor2.dumps(cose)
    )
    create = {
        "id": _b64(credential_id),
        "rawId": _b64(credential_id),
        "type": "public-key",
        "response": {
            "clientDataJSON": _b64(client_data("webauthn.create")),
            "attestationObject": _b64(
                cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": registered})
            ),
            "transports": ["internal"],
        },
        "clientExtensionResults": {},
        "authenticatorAttachment": "platform",
    }
    signed = rp_hash + b"\x05" + (1).to_bytes(4, "big")
    get_data = client_data("webauthn.get")
    signature = key.sign(signed + hashlib.sha256(get_data).digest(), ec.ECDSA(hashes.SHA256()))
    get = {
        "id": _b64(credential_id),
        "rawId": _b64(credential_id),
        "type": "public-key",
        "response": {
            "clientDataJSON": _b64(get_data),
            "authenticatorData": _b64(signed),
            "signature": _b64(signature),
            "userHandle": _b64(b"acc_0123456789abcdef"),
        },
        "clientExtensionResults": {},
    }
    return create, get


def template_fields(create: dict[str, Any], get: dict[str, Any]) -> list[bytes]:
    """Each field of FIELDS, decoded, in order: seeds for the field-replacing inputs."""
    answers = {"create": create, "get": get}
    return [_unb64(answers[ceremony]["response"][name]) for ceremony, name in FIELDS]


_CREATE, _GET = soft_answers()


def _answer(data: bytes) -> str:
    if data[:1] in (b"{", b"["):
        return data.decode("utf-8", "replace")
    if not data:
        return ""
    ceremony, name = FIELDS[data[0] % len(FIELDS)]
    answer = copy.deepcopy(_CREATE if ceremony == "create" else _GET)
    answer["response"][name] = _b64(data[1:])
    return json.dumps(answer)


def one_input(data: bytes) -> None:
    raw = _answer(data)
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
    # A registration may pass: "none" attestation proves no particular authenticator, which
    # is why the portal asks for the password first and binds each challenge to a browser.


def main() -> None:
    from ._atheris import fuzz

    fuzz(one_input)


if __name__ == "__main__":
    main()
