"""Handshake authentication: what is signed, signing it, and checking it (SPEC.md 3.2).

The signed bytes bind the protocol version, the kind of principal, both names and the server's
fresh nonce, so a signature is good for one connection to one server only. Uses Ed25519 from
`cryptography`; the caller supplies the nonce (this module draws no randomness).
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["auth_payload", "public_key_bytes", "sign_auth", "verify_auth"]

_CONTEXT = b"nascloud-auth/1\x00"


def auth_payload(
    version: int, kind: str, server_name: str, client_name: str, nonce: bytes, public_key: bytes
) -> bytes:
    """The exact bytes the client signs. Fields are length-prefixed so none can run into another."""
    parts = [kind.encode(), server_name.encode(), client_name.encode(), nonce, public_key]
    out = bytearray(_CONTEXT)
    out.append(version)
    for part in parts:
        out += len(part).to_bytes(2, "big")
        out += part
    return bytes(out)


def public_key_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The raw 32-byte form of a key's public half."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def sign_auth(key: Ed25519PrivateKey, payload: bytes) -> bytes:
    return key.sign(payload)


def verify_auth(public_key: bytes, signature: bytes, payload: bytes) -> bool:
    """True if `signature` over `payload` verifies with the raw Ed25519 `public_key`."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, payload)
    except (InvalidSignature, ValueError):
        return False
    return True
