"""What the portal keeps for WebAuthn between a page and the browser's answer: its identity
as a relying party, and the open challenges (random, single use, five minutes, each bound to
one browser and one purpose), in this process only."""

from __future__ import annotations

import json
import os
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit

from webauthn.helpers import (
    base64url_to_bytes,
    parse_authentication_credential_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import AuthenticationCredential, RegistrationCredential

__all__ = ["BAD_ANSWER", "Challenges", "RelyingParty", "registration_answer", "sign_in_answer"]

#: What a hostile or broken answer raises in parsing and checking (deep JSON: RecursionError);
#: anything else is a bug (`tests/fuzz/fuzz_passkey_answer.py` holds it).
BAD_ANSWER: Final = (WebAuthnException, ValueError, TypeError, KeyError, RecursionError)
CHALLENGE_S: Final = 300.0
MAX_OPEN_CHALLENGES: Final = 10_000  # the oldest go first: a flood of page views costs 1 MiB
#: Open challenges one client address may hold: past it, that address is offered no passkey
#: until one is taken or expires, so that one flooding address cannot push out the others'.
PER_ADDRESS: Final = 50


class Challenges:
    """Open WebAuthn challenges: made for one browser and purpose, taken once."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        #: challenge -> (what it is bound to, until when, the address it was made for);
        #: in the order made, which is the order they expire in.
        self._open: OrderedDict[bytes, tuple[str, float, str]] = OrderedDict()
        self._per_address: Counter[str] = Counter()

    def new(self, bound: str, address: str) -> bytes | None:
        """A challenge for `bound`, made for a client at `address`; None if that address
        holds PER_ADDRESS open ones already."""
        now = self._clock()
        while self._open and next(iter(self._open.values()))[1] <= now:
            self._close(next(iter(self._open)))  # expired
        if self._per_address[address] >= PER_ADDRESS:
            return None
        challenge = os.urandom(32)
        self._open[challenge] = (bound, now + CHALLENGE_S, address)
        self._per_address[address] += 1
        while len(self._open) > MAX_OPEN_CHALLENGES:
            self._close(next(iter(self._open)))
        return challenge

    def take(self, challenge: bytes, bound: str) -> bool:
        """Whether `challenge` is open for `bound`; it is closed either way."""
        found = self._close(challenge)
        return found is not None and found[0] == bound and found[1] > self._clock()

    def _close(self, challenge: bytes) -> tuple[str, float, str] | None:
        found = self._open.pop(challenge, None)
        if found is not None:
            self._per_address[found[2]] -= 1
            if not self._per_address[found[2]]:
                del self._per_address[found[2]]
        return found


class RelyingParty:
    """The portal as WebAuthn sees it: its origin and its host (the relying party id)."""

    def __init__(self, public_url: str) -> None:
        parts = urlsplit(public_url)
        assert parts.hostname is not None, "the configuration checked it"
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.rp_id = parts.hostname


def registration_answer(raw: str) -> tuple[RegistrationCredential, bytes]:
    """A new passkey as the browser posted it (`PublicKeyCredential.toJSON()`), and the
    challenge it answers; raises one of BAD_ANSWER for anything else."""
    credential = parse_registration_credential_json(raw)
    return credential, _client_challenge(credential.response.client_data_json)


def sign_in_answer(raw: str) -> tuple[AuthenticationCredential, bytes]:
    """A passkey's sign-in as the browser posted it, and the challenge it answers."""
    credential = parse_authentication_credential_json(raw)
    return credential, _client_challenge(credential.response.client_data_json)


def _client_challenge(client_data_json: bytes) -> bytes:
    """The challenge the browser signed, read from its client data (checked again by the
    verification): which open challenge the answer is for."""
    data = json.loads(client_data_json)
    if not isinstance(data, dict) or not isinstance(data.get("challenge"), str):
        raise ValueError("no challenge in the client data")
    return base64url_to_bytes(data["challenge"])
