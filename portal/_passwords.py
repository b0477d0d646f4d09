"""Passwords, hashed with argon2id at the cost OWASP recommends (19 MiB, 2 passes, one lane),
in worker threads (a hash takes tens of milliseconds: the event loop does not wait), at most
two at once (each holds 19 MiB). An unknown account name is checked against a hash of
nothing, so the answer takes as long as for a known one."""

from __future__ import annotations

from typing import Final

import trio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["MAX_PASSWORD", "MIN_PASSWORD", "Passwords", "new_hasher"]

MIN_PASSWORD: Final = 12
MAX_PASSWORD: Final = 1024  # characters: more only costs the server


def new_hasher() -> PasswordHasher:
    """argon2id, 19 MiB, 2 passes, 1 lane (OWASP's first choice)."""
    return PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


class Passwords:
    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or new_hasher()
        self._limiter = trio.CapacityLimiter(2)
        self._nobody = self.hasher.hash("not a password: the hash of no account")

    async def hash(self, password: str) -> str:
        return await trio.to_thread.run_sync(self.hasher.hash, password, limiter=self._limiter)

    async def check(self, stored: str | None, password: str) -> tuple[bool, bool]:
        """(the password matches, the stored hash wants renewing at today's cost)."""

        def verify() -> tuple[bool, bool]:
            try:
                self.hasher.verify(self._nobody if stored is None else stored, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False, False
            if stored is None:
                return False, False
            return True, self.hasher.check_needs_rehash(stored)

        return await trio.to_thread.run_sync(verify, limiter=self._limiter)
