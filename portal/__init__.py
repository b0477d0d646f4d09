"""nascloud-portal: where owners help themselves. Accounts (a name and a password, argon2id),
sign-in with server-side sessions, their devices, their profile, the cookie page; English and
French; every page rendered on the server, no script."""

from ._app import Portal
from ._passwords import new_hasher

__all__ = ["Portal", "new_hasher"]
