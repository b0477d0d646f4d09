"""The records that sign an owner in besides the password: passkeys (WebAuthn) and two-step
sign-in (TOTP, recovery codes, trusted computers). Part of `Registry`'s facade."""

from __future__ import annotations

import hashlib

from ._core import RegistryCore
from ._models import Conflict, InvalidValue, Passkey, check_label

__all__ = ["SignInRecords"]


class SignInRecords(RegistryCore):
    # -- passkeys (WebAuthn) ---------------------------------------------------------------------

    async def add_passkey(
        self,
        account_id: str,
        credential_id: bytes,
        public_key: bytes,
        sign_count: int,
        name: str = "",
    ) -> Passkey:
        """An account's new passkey, checked by the caller (the portal, with py_webauthn).
        Conflict if that credential is already an account's."""
        if not 1 <= len(credential_id) <= 1023:  # WebAuthn: at most 1023 bytes
            raise InvalidValue("a credential id is 1 to 1023 bytes")
        passkey = Passkey(
            credential_id,
            account_id,
            public_key,
            sign_count,
            check_label(name),
            self._clock(),
        )
        if not await self._run(self.backend.insert_passkey, passkey):
            raise Conflict("that passkey is already registered")
        return passkey

    async def passkeys_of(self, account_id: str) -> list[Passkey]:
        return await self._run(self.backend.passkeys_of, account_id)

    async def find_passkey(self, credential_id: bytes) -> Passkey | None:
        return await self._run(self.backend.find_passkey, credential_id)

    async def passkey_used(self, credential_id: bytes, sign_count: int) -> None:
        await self._run(self.backend.passkey_used, credential_id, sign_count, self._clock())

    async def remove_passkey(self, account_id: str, credential_id: bytes) -> bool:
        return await self._run(self.backend.delete_passkey, account_id, credential_id)

    # -- two-step sign-in (TOTP, recovery codes, trusted computers) -----------------------------

    async def set_totp(self, account_id: str, secret: bytes, recovery_codes: list[str]) -> None:
        """Turn two-step sign-in on (or renew it) with this secret; the recovery codes are
        kept by their hash only."""
        hashes = [hashlib.sha256(code.encode()).digest() for code in recovery_codes]
        await self._run(self.backend.set_totp, account_id, secret, self._clock(), hashes)

    async def totp_of(self, account_id: str) -> tuple[bytes, int] | None:
        """(secret, last time step used), or None if two-step sign-in is off."""
        return await self._run(self.backend.totp_of, account_id)

    async def use_totp_step(self, account_id: str, step: int) -> bool:
        """Mark a code's time step used: False if it was used already (a replay)."""
        return await self._run(self.backend.advance_totp, account_id, step)

    async def use_recovery_code(self, account_id: str, code: str) -> bool:
        code_hash = hashlib.sha256(code.encode()).digest()
        return await self._run(self.backend.take_recovery_code, account_id, code_hash)

    async def turn_totp_off(self, account_id: str) -> None:
        await self._run(self.backend.delete_totp, account_id)

    async def trust_computer(self, token_hash: bytes, account_id: str, lifetime_s: float) -> None:
        await self._run(
            self.backend.insert_trusted, token_hash, account_id, self._clock() + lifetime_s
        )

    async def is_trusted(self, token_hash: bytes, account_id: str) -> bool:
        return await self._run(self.backend.trusted, token_hash, account_id, self._clock())
