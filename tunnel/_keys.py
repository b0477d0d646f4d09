"""Ed25519 key files for devices and services: PEM (PKCS #8), readable by their owner only.

Beside the core, not in it: it touches the file system.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import public_key_bytes

__all__ = ["load_key", "load_or_create_key", "public_key_base64", "write_secret_file"]


def load_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return key


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """Read the key, or make one that only this user can read (mode 0600, never replaced)."""
    if path.exists():
        return load_key(path)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_secret_file(path, pem)
    return key


def write_secret_file(path: Path, data: bytes) -> None:
    """Create `path` readable by this user only (mode 0600 from the start); never replace
    an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)


def public_key_base64(key: Ed25519PrivateKey) -> str:
    """The form the registry and ddnsd's `[protocol.services]` take."""
    return base64.b64encode(public_key_bytes(key)).decode()
