"""The handshake's rules (SPEC.md 3): our HELLO, the version and capabilities agreed, what a
client signs and what a server checks, and `Handshake`, one connection's secrets and pending AUTH.

It must not know frames, streams or the connection's states: `_connection` hands it decoded
bodies and queues what it returns. The server's nonce comes from the caller.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ._auth import auth_payload, public_key_bytes, sign_auth, verify_auth
from ._errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from ._messages import NONCE_BYTES, Auth, AuthKind, AuthOk, Hello
from ._names import validate_label

__all__ = [
    "DATA_CONNECTIONS",
    "DATA_POOL",
    "SUPPORTED_VERSIONS",
    "Credentials",
    "Handshake",
    "Settings",
    "answer_client_hello",
    "answer_server_hello",
    "auth_verifies",
]

SUPPORTED_VERSIONS: Final = (1,)
#: Capability: streams may carry their bytes on data connections (SPEC.md 7.3).
DATA_CONNECTIONS: Final = "data-connections"
#: Capability: the relay may ask for data connections made ahead of need (SPEC.md 7.3.1).
DATA_POOL: Final = "data-pool"


@dataclass(frozen=True, slots=True)
class Settings:
    """Our receive-side limits and offers, sent in HELLO (SPEC.md 3.1)."""

    max_frame_bytes: int = 256 * 1024
    # 2 MiB: a stream carried in the tunnel moves at most a window per round trip of its
    # WINDOW credit (about 3 ms here through both processes); 1 MiB held one stream to
    # 2.7 Gbit/s, 2 to 8 MiB gave 3.3 to 3.9 (bench/RESULTS.md). Eight stalled readers, not
    # four, are needed to fill the connection's window.
    stream_window_bytes: int = 2 * 1024 * 1024
    connection_window_bytes: int = 16 * 1024 * 1024
    max_streams: int = 256
    capabilities: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        # Building the HELLO once validates every limit with the wire rules.
        self.hello((1,))

    def hello(self, versions: tuple[int, ...], name: str = "", nonce: bytes = b"") -> Hello:
        return Hello(
            versions=versions,
            capabilities=tuple(sorted(self.capabilities)),
            max_frame_bytes=self.max_frame_bytes,
            stream_window_bytes=self.stream_window_bytes,
            connection_window_bytes=self.connection_window_bytes,
            max_streams=self.max_streams,
            name=name,
            nonce=nonce,
        )


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a client proves: its kind, its name and the Ed25519 key registered for it."""

    kind: str
    name: str
    private_key: Ed25519PrivateKey

    def __post_init__(self) -> None:
        if self.kind not in AuthKind.ALL:
            raise LocalProtocolError(f"unknown credential kind {self.kind!r}")
        try:
            validate_label(self.name, "client name")
        except ValueError as exc:
            raise LocalProtocolError(str(exc)) from None


def answer_client_hello(
    hello: Hello, settings: Settings, server_name: str, nonce: bytes
) -> tuple[int, frozenset[str], Hello]:
    """Server: the version and capabilities agreed with the client's HELLO, and our HELLO."""
    common = set(hello.versions) & set(SUPPORTED_VERSIONS)
    if not common:
        raise RemoteProtocolError(
            f"no common protocol version (offered {list(hello.versions)}, "
            f"supported {list(SUPPORTED_VERSIONS)})",
            ErrorCode.UNSUPPORTED_VERSION,
        )
    version = max(common)
    capabilities = frozenset(hello.capabilities) & settings.capabilities
    return version, capabilities, settings.hello((version,), server_name, nonce)


def answer_server_hello(
    hello: Hello, settings: Settings, server_name: str, credentials: Credentials
) -> tuple[int, frozenset[str], Auth]:
    """Client: check the server's HELLO; the version and capabilities agreed, and our AUTH."""
    if len(hello.versions) != 1 or hello.versions[0] not in SUPPORTED_VERSIONS:
        raise RemoteProtocolError(
            f"server chose version(s) {list(hello.versions)}, which we did not offer",
            ErrorCode.UNSUPPORTED_VERSION,
        )
    if len(hello.nonce) != NONCE_BYTES:
        raise RemoteProtocolError("server HELLO carries no nonce")
    if hello.name != server_name:
        raise RemoteProtocolError(
            f"server calls itself {hello.name[:64]!r}, expected {server_name!r}",
            ErrorCode.AUTHENTICATION_FAILED,
        )
    version = hello.versions[0]
    capabilities = frozenset(hello.capabilities) & settings.capabilities
    public_key = public_key_bytes(credentials.private_key)
    payload = auth_payload(
        version, credentials.kind, server_name, credentials.name, hello.nonce, public_key
    )
    auth = Auth(
        kind=credentials.kind,
        name=credentials.name,
        public_key=public_key,
        signature=sign_auth(credentials.private_key, payload),
    )
    return version, capabilities, auth


def auth_verifies(
    auth: Auth, registered_key: bytes, version: int, server_name: str, nonce: bytes
) -> bool:
    """Server: True if `auth` is signed, over this connection's nonce, by the registered key."""
    payload = auth_payload(version, auth.kind, server_name, auth.name, nonce, auth.public_key)
    return hmac.compare_digest(registered_key, auth.public_key) and verify_auth(
        auth.public_key, auth.signature, payload
    )


class Handshake:
    """What one connection's handshake proves or checks: the client's credentials, or the
    server's single-use nonce, the kinds it accepts and the AUTH awaiting the application's
    verdict. The connection asks it for answers and keeps the states itself (`_state`).
    """

    __slots__ = ("_accepted_kinds", "_credentials", "_nonce", "pending_auth")

    def __init__(
        self, credentials: Credentials | None, nonce: bytes, accepted_kinds: frozenset[str]
    ) -> None:
        self._credentials = credentials
        self._nonce = nonce
        self._accepted_kinds = accepted_kinds
        self.pending_auth: Auth | None = None

    def answer_hello(
        self, hello: Hello, settings: Settings, server_name: str
    ) -> tuple[int, frozenset[str], Hello | Auth]:
        """The version and capabilities agreed with the peer's HELLO, and our answer: the
        server's HELLO, or (with credentials, as a client) our AUTH."""
        if self._credentials is None:
            return answer_client_hello(hello, settings, server_name, self._nonce)
        return answer_server_hello(hello, settings, server_name, self._credentials)

    def receive_auth(self, auth: Auth) -> None:
        """Server: hold `auth` for the application's verdict, if its kind is accepted here."""
        if auth.kind not in self._accepted_kinds:
            raise RemoteProtocolError(
                f"{auth.kind} clients are not accepted here", ErrorCode.AUTHENTICATION_FAILED
            )
        self.pending_auth = auth

    def verify(self, auth: Auth, registered_key: bytes, version: int, server_name: str) -> bool:
        """Server: True if `auth` is signed by the registered key over our nonce. The nonce is
        single-use: a second verification on this connection cannot succeed."""
        nonce = self._nonce
        self._nonce = b""
        return auth_verifies(auth, registered_key, version, server_name, nonce)

    def check_auth_ok(self, ok: AuthOk) -> Credentials:
        """Client: the server's AUTH_OK must name us; returns the credentials it accepted."""
        credentials = self._credentials
        assert credentials is not None
        if ok.name != credentials.name:
            raise RemoteProtocolError(f"server authenticated {ok.name!r}, not {credentials.name!r}")
        return credentials
