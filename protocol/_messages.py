"""Bodies of the control frames and the application messages, with their msgpack codec.

Every body is a frozen dataclass validated on creation; a bad value raises LocalProtocolError.
`decode_body` turns wire bytes into one of them and raises only RemoteProtocolError.
Knows nothing of connection state, sockets or time (SPEC.md sections 4 and 5).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, Final, TypeAlias, TypeVar

import msgpack

from ._errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from ._names import account_caa, canonical_address, validate_label

__all__ = [
    "PAIRING_CODE_ALPHABET",
    "Ack",
    "AppMessage",
    "Auth",
    "AuthKind",
    "AuthOk",
    "DataPool",
    "DdnsUpdate",
    "Error",
    "GoAway",
    "Hello",
    "InstallRegister",
    "Open",
    "PairCode",
    "PairRequest",
    "Paired",
    "Ping",
    "Register",
    "Reset",
    "WindowUpdate",
]

#: Largest flow-control window and stream id (31 bits, as in HTTP/2).
MAX_WINDOW: Final = 2**31 - 1
MAX_STREAM_ID: Final = 2**31 - 1
NONCE_BYTES: Final = 32
PUBLIC_KEY_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64
DATA_TOKEN_BYTES: Final = 16
MAX_TEXT: Final = 256
MAX_ADDRESSES: Final = 16
MAX_RECORD_VALUES: Final = 16
MAX_TXT_BYTES: Final = 255
MAX_CAPABILITIES: Final = 32
MAX_POOL_TOKENS: Final = 16
ACME_PREFIX: Final = "_acme-challenge."


class AuthKind:
    """Who is authenticating (SPEC.md section 3.2)."""

    DEVICE: Final = "device"
    SERVICE: Final = "service"
    INSTALL: Final = "install"
    ALL: Final = frozenset({DEVICE, SERVICE, INSTALL})


def _fail(message: str) -> LocalProtocolError:
    return LocalProtocolError(message, ErrorCode.INVALID_REQUEST)


def _check_int(value: int, name: str, low: int, high: int) -> None:
    if type(value) is int and low <= value <= high:
        return
    # bool is an int to Python, never to us; IntEnum members (ErrorCode) are fine.
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _fail(f"{name} must be an integer in [{low}, {high}], got {value!r}")


def _check_text(value: str, name: str, max_len: int = MAX_TEXT, empty: bool = True) -> None:
    if not isinstance(value, str) or len(value) > max_len or (not empty and not value):
        raise _fail(f"{name} must be a string of at most {max_len} characters, got {value!r}")


def _check_bytes(value: bytes, name: str, length: int) -> None:
    if not isinstance(value, bytes) or len(value) != length:
        raise _fail(f"{name} must be {length} bytes")


def _check_label(value: str, name: str) -> None:
    try:
        validate_label(value, name)
    except ValueError as exc:
        raise _fail(str(exc)) from None


def _check_address(value: str, name: str, version: int | None = None) -> None:
    found = canonical_address(value)
    if found is None:
        raise _fail(f"{name} must be an IP address, got {value!r}")
    if version is not None and found[0] != version:
        raise _fail(f"{name} must be an IPv{version} address, got {value!r}")
    if found[1] != value:
        raise _fail(f"{name} must be in canonical form ({found[1]}), got {value!r}")


def _check_addresses(values: tuple[str, ...], name: str) -> None:
    if not isinstance(values, tuple) or len(values) > MAX_ADDRESSES:
        raise _fail(f"{name} must be a tuple of at most {MAX_ADDRESSES} addresses")
    for value in values:
        _check_address(value, name)


# -- frame bodies ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """HELLO: versions, capabilities and the receive limits of its sender (SPEC.md 3.1).

    The client offers `versions`; the server answers with the one it chose, its `name` and a
    fresh `nonce` for the client to sign.
    """

    versions: tuple[int, ...]
    capabilities: tuple[str, ...] = ()
    max_frame_bytes: int = 256 * 1024
    stream_window_bytes: int = 1024 * 1024
    connection_window_bytes: int = 16 * 1024 * 1024
    max_streams: int = 256
    name: str = ""
    nonce: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.versions, tuple) or not 1 <= len(self.versions) <= 8:
            raise _fail("versions must be a tuple of 1 to 8 integers")
        for version in self.versions:
            _check_int(version, "version", 1, 255)
        if not isinstance(self.capabilities, tuple) or len(self.capabilities) > MAX_CAPABILITIES:
            raise _fail(f"capabilities must be a tuple of at most {MAX_CAPABILITIES} strings")
        for capability in self.capabilities:
            _check_text(capability, "capability", 32, empty=False)
        _check_int(self.max_frame_bytes, "max_frame_bytes", 16 * 1024, 16 * 1024 * 1024 - 1)
        _check_int(self.stream_window_bytes, "stream_window_bytes", 1, MAX_WINDOW)
        _check_int(self.connection_window_bytes, "connection_window_bytes", 1, MAX_WINDOW)
        _check_int(self.max_streams, "max_streams", 0, 2**20)
        _check_text(self.name, "name", 253)
        if not isinstance(self.nonce, bytes) or len(self.nonce) not in (0, NONCE_BYTES):
            raise _fail(f"nonce must be empty or {NONCE_BYTES} bytes")


@dataclass(frozen=True, slots=True)
class Auth:
    """AUTH: the client's name and its Ed25519 signature over the handshake (SPEC.md 3.2)."""

    kind: str
    name: str
    public_key: bytes
    signature: bytes

    def __post_init__(self) -> None:
        if self.kind not in AuthKind.ALL:
            raise _fail(f"kind must be one of {sorted(AuthKind.ALL)}, got {self.kind!r}")
        _check_label(self.name, "name")
        _check_bytes(self.public_key, "public_key", PUBLIC_KEY_BYTES)
        _check_bytes(self.signature, "signature", SIGNATURE_BYTES)


@dataclass(frozen=True, slots=True)
class AuthOk:
    """AUTH_OK: the server accepted the client; `name` is the principal it authenticated."""

    name: str

    def __post_init__(self) -> None:
        _check_label(self.name, "name")


@dataclass(frozen=True, slots=True)
class Open:
    """OPEN: a new stream to `service`, with the browser's address when the opener knows it.

    With `data_token` and `data_port` the opener asks for the stream's bytes to travel on a
    data connection of their own instead of in DATA frames (SPEC.md 7.3).
    """

    service: str
    client_address: str | None = None
    client_port: int = 0
    data_token: bytes | None = None
    data_port: int | None = None

    def __post_init__(self) -> None:
        _check_label(self.service, "service")
        if self.client_address is not None:
            _check_address(self.client_address, "client_address")
        _check_int(self.client_port, "client_port", 0, 65535)
        if (self.data_token is None) != (self.data_port is None):
            raise _fail("data_token and data_port go together")
        if self.data_token is not None and self.data_port is not None:
            _check_bytes(self.data_token, "data_token", DATA_TOKEN_BYTES)
            _check_int(self.data_port, "data_port", 1, 65535)


@dataclass(frozen=True, slots=True)
class Reset:
    """RESET: the stream is abandoned, with a reason."""

    error_code: int

    def __post_init__(self) -> None:
        _check_int(self.error_code, "error_code", 0, 2**16 - 1)


@dataclass(frozen=True, slots=True)
class WindowUpdate:
    """WINDOW: `increment` more bytes of credit, for a stream or (stream 0) the connection."""

    increment: int

    def __post_init__(self) -> None:
        _check_int(self.increment, "increment", 1, MAX_WINDOW)


@dataclass(frozen=True, slots=True)
class Ping:
    """PING: 8 opaque bytes that the peer echoes with the ACK flag set."""

    opaque: bytes

    def __post_init__(self) -> None:
        _check_bytes(self.opaque, "opaque", 8)


@dataclass(frozen=True, slots=True)
class GoAway:
    """GOAWAY: no new streams; streams up to `last_stream_id` opened by the peer still finish."""

    last_stream_id: int
    error_code: int = ErrorCode.NO_ERROR
    message: str = ""

    def __post_init__(self) -> None:
        _check_int(self.last_stream_id, "last_stream_id", 0, MAX_STREAM_ID)
        _check_int(self.error_code, "error_code", 0, 2**16 - 1)
        _check_text(self.message, "message")


# -- application messages (MESSAGE frames, SPEC.md section 5) ------------------------------


@dataclass(frozen=True, slots=True)
class Register:
    """The device is up: the LAN addresses it knows and the services it exposes."""

    TYPE: ClassVar[str] = "register"
    lan_addresses: tuple[str, ...] = ()
    services: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_addresses(self.lan_addresses, "lan_addresses")
        if not isinstance(self.services, tuple) or len(self.services) > 32:
            raise _fail("services must be a tuple of at most 32 names")
        for service in self.services:
            _check_label(service, "service")


_RRTYPES: Final = frozenset({"A", "AAAA", "TXT", "CAA"})


@dataclass(frozen=True, slots=True)
class DdnsUpdate:
    """Replace one RRset of a device's names; empty `values` deletes it.

    `name` is the device name or ``_acme-challenge.<device>`` (TXT only): a device can never
    name another device's records. CAA at the device name is its ACME account's record only,
    `0 issue "<ca>; accounturi=<url>"` (RFC 8657), published for its names in both zones.
    `observed_address` is what the relay saw the device connect from, added by the relay when
    it forwards the update.
    """

    TYPE: ClassVar[str] = "ddns"
    request_id: int
    device: str
    name: str
    rrtype: str
    values: tuple[str, ...]
    ttl_s: int = 60
    observed_address: str | None = None

    def __post_init__(self) -> None:
        _check_int(self.request_id, "request_id", 0, 2**32 - 1)
        _check_label(self.device, "device")
        if self.rrtype not in _RRTYPES:
            raise _fail(f"rrtype must be one of {sorted(_RRTYPES)}, got {self.rrtype!r}")
        if self.name != self.device:
            if self.name != ACME_PREFIX + self.device:
                raise _fail(
                    f"name must be {self.device!r} or {ACME_PREFIX + self.device!r}, "
                    f"got {self.name!r}"
                )
            if self.rrtype != "TXT":
                raise _fail(f"only TXT records may be set at {ACME_PREFIX}<device>")
        if not isinstance(self.values, tuple) or len(self.values) > MAX_RECORD_VALUES:
            raise _fail(f"values must be a tuple of at most {MAX_RECORD_VALUES} strings")
        for value in self.values:
            if self.rrtype == "TXT":
                if not isinstance(value, str) or len(value.encode()) > MAX_TXT_BYTES:
                    raise _fail(f"TXT values must be strings of at most {MAX_TXT_BYTES} bytes")
            elif self.rrtype == "CAA":
                try:
                    account_caa(value)
                except ValueError as exc:
                    raise _fail(str(exc)) from None
            else:
                _check_address(value, "value", 4 if self.rrtype == "A" else 6)
        _check_int(self.ttl_s, "ttl_s", 0, 86400)
        if self.observed_address is not None:
            _check_address(self.observed_address, "observed_address")


@dataclass(frozen=True, slots=True)
class InstallRegister:
    """An uninitialised NAS asks to be found by its cloud key (install mode only)."""

    TYPE: ClassVar[str] = "install"
    request_id: int
    cloud_key: str
    lan_addresses: tuple[str, ...]
    setup_port: int
    # Absent: "https". The scheme of the setup UI on the NAS's own network.
    setup_scheme: str | None = None
    # Absent: the relay's maximum (24 hours). What remains of the NAS's install window: a NAS
    # that reconnects does not get a longer one.
    lifetime_s: int | None = None

    def __post_init__(self) -> None:
        _check_int(self.request_id, "request_id", 0, 2**32 - 1)
        _check_text(self.cloud_key, "cloud_key", 64, empty=False)
        _check_addresses(self.lan_addresses, "lan_addresses")
        _check_int(self.setup_port, "setup_port", 1, 65535)
        if self.setup_scheme is not None and self.setup_scheme not in ("http", "https"):
            raise _fail(f"setup_scheme must be 'http' or 'https', got {self.setup_scheme!r}")
        if self.lifetime_s is not None:
            _check_int(self.lifetime_s, "lifetime_s", 1, 86400)


#: A pairing code: Crockford's base32 (no I, L, O or U), two groups of four, 40 bits.
PAIRING_CODE_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


@dataclass(frozen=True, slots=True)
class PairRequest:
    """A NAS with no device identity, on an install-kind tunnel authenticated with its own
    device key, asks for a pairing code for that key (SPEC.md 6.5)."""

    TYPE: ClassVar[str] = "pair"
    request_id: int

    def __post_init__(self) -> None:
        _check_int(self.request_id, "request_id", 0, 2**32 - 1)


@dataclass(frozen=True, slots=True)
class PairCode:
    """The relay's answer to PairRequest: the code the owner types at `url`, how long it
    lives; the relay then says Paired once an account has taken it (RFC 8628's shape)."""

    TYPE: ClassVar[str] = "paircode"
    request_id: int
    code: str
    url: str
    expires_in_s: int

    def __post_init__(self) -> None:
        _check_int(self.request_id, "request_id", 0, 2**32 - 1)
        if (
            not isinstance(self.code, str)
            or len(self.code) != 9
            or self.code[4] != "-"
            or any(c not in PAIRING_CODE_ALPHABET for c in self.code[:4] + self.code[5:])
        ):
            raise _fail("code must be XXXX-XXXX in Crockford's base32")
        _check_text(self.url, "url", empty=False)
        if not self.url.startswith(("https://", "http://")):
            raise _fail("url must be an http(s) URL")
        _check_int(self.expires_in_s, "expires_in_s", 1, 3600)


@dataclass(frozen=True, slots=True)
class Paired:
    """The relay to a pairing NAS: an owner took its code; it is now the device `device`."""

    TYPE: ClassVar[str] = "paired"
    device: str

    def __post_init__(self) -> None:
        _check_label(self.device, "device")


@dataclass(frozen=True, slots=True)
class DataPool:
    """Relay to agent: open one ready data connection for each token, to `data_port`, and keep
    it until an OPEN names its token (SPEC.md 7.3.1)."""

    TYPE: ClassVar[str] = "pool"
    tokens: tuple[bytes, ...]
    data_port: int

    def __post_init__(self) -> None:
        if not isinstance(self.tokens, tuple) or not 1 <= len(self.tokens) <= MAX_POOL_TOKENS:
            raise _fail(f"tokens must be a tuple of 1 to {MAX_POOL_TOKENS} tokens")
        for token in self.tokens:
            _check_bytes(token, "token", DATA_TOKEN_BYTES)
        _check_int(self.data_port, "data_port", 1, 65535)


@dataclass(frozen=True, slots=True)
class Ack:
    """The request `request_id` succeeded."""

    TYPE: ClassVar[str] = "ack"
    request_id: int

    def __post_init__(self) -> None:
        _check_int(self.request_id, "request_id", 0, 2**32 - 1)


@dataclass(frozen=True, slots=True)
class Error:
    """The request `request_id` failed (or, with no id, something the peer did)."""

    TYPE: ClassVar[str] = "error"
    error_code: int
    message: str = ""
    request_id: int | None = field(default=None)

    def __post_init__(self) -> None:
        _check_int(self.error_code, "error_code", 0, 2**16 - 1)
        _check_text(self.message, "message")
        if self.request_id is not None:
            _check_int(self.request_id, "request_id", 0, 2**32 - 1)


AppMessage: TypeAlias = (
    Register
    | DdnsUpdate
    | InstallRegister
    | PairRequest
    | PairCode
    | Paired
    | DataPool
    | Ack
    | Error
)
Body: TypeAlias = Hello | Auth | AuthOk | Open | Reset | WindowUpdate | Ping | GoAway | AppMessage

# -- codec: one table of (class, wire key, attribute, decoder) -------------------------------

_Decoder = Callable[[Any], Any]


def _tuple(value: Any) -> Any:
    # msgpack arrays arrive as lists; the dataclasses validate the elements.
    if not isinstance(value, list):
        raise _fail("expected an array")
    return tuple(value)


def _same(value: Any) -> Any:
    return value


# Per class: wire key -> (attribute, decoder). Short keys keep control frames small (SPEC.md 4).
_FIELDS: Final[dict[type[Any], dict[str, tuple[str, _Decoder]]]] = {
    Hello: {
        "v": ("versions", _tuple),
        "c": ("capabilities", _tuple),
        "f": ("max_frame_bytes", _same),
        "w": ("stream_window_bytes", _same),
        "W": ("connection_window_bytes", _same),
        "s": ("max_streams", _same),
        "n": ("name", _same),
        "r": ("nonce", _same),
    },
    Auth: {
        "k": ("kind", _same),
        "n": ("name", _same),
        "p": ("public_key", _same),
        "g": ("signature", _same),
    },
    AuthOk: {"n": ("name", _same)},
    Open: {
        "s": ("service", _same),
        "a": ("client_address", _same),
        "p": ("client_port", _same),
        "d": ("data_token", _same),
        "dp": ("data_port", _same),
    },
    Reset: {"c": ("error_code", _same)},
    WindowUpdate: {"n": ("increment", _same)},
    Ping: {"o": ("opaque", _same)},
    GoAway: {"l": ("last_stream_id", _same), "c": ("error_code", _same), "m": ("message", _same)},
    Register: {"l": ("lan_addresses", _tuple), "s": ("services", _tuple)},
    DdnsUpdate: {
        "i": ("request_id", _same),
        "d": ("device", _same),
        "n": ("name", _same),
        "r": ("rrtype", _same),
        "v": ("values", _tuple),
        "ttl": ("ttl_s", _same),
        "o": ("observed_address", _same),
    },
    InstallRegister: {
        "i": ("request_id", _same),
        "k": ("cloud_key", _same),
        "l": ("lan_addresses", _tuple),
        "p": ("setup_port", _same),
        "s": ("setup_scheme", _same),
        "x": ("lifetime_s", _same),
    },
    PairRequest: {"i": ("request_id", _same)},
    PairCode: {
        "i": ("request_id", _same),
        "c": ("code", _same),
        "u": ("url", _same),
        "x": ("expires_in_s", _same),
    },
    Paired: {"d": ("device", _same)},
    DataPool: {"k": ("tokens", _tuple), "p": ("data_port", _same)},
    Ack: {"i": ("request_id", _same)},
    Error: {"c": ("error_code", _same), "m": ("message", _same), "i": ("request_id", _same)},
}
_APP_TYPES: Final[dict[str, type[Any]]] = {
    cls.TYPE: cls
    for cls in (
        Register,
        DdnsUpdate,
        InstallRegister,
        PairRequest,
        PairCode,
        Paired,
        DataPool,
        Ack,
        Error,
    )
}
_packb = msgpack.Packer(use_bin_type=True).pack


def _compile(cls: type[Any]) -> tuple[Callable[[Any], bytes], Callable[[dict[str, Any]], Any]]:
    """Build the encoder and decoder of `cls` from its row of `_FIELDS`.

    Generated once at import, so the hot path is a dict display and a constructor call
    instead of a loop over the table (three times faster; see bench/RESULTS.md).
    """
    defaults = {f.name: f.default for f in fields(cls)}
    app_type = getattr(cls, "TYPE", None)
    always = [f'"t": {app_type!r}'] if app_type else []
    optional = []
    decode_args = []
    namespace: dict[str, Any] = {"cls": cls, "_packb": _packb}
    for key, (attr, decoder) in _FIELDS[cls].items():
        default = defaults[attr]
        always.append(f"{key!r}: m.{attr}")
        if default is None:
            optional.append((key, attr))
        if decoder is _same:
            read = f"w[{key!r}]" if default is MISSING else f"w.get({key!r}, _d_{attr})"
        else:
            namespace[f"_f_{attr}"] = decoder
            read = (
                f"_f_{attr}(w[{key!r}])"
                if default is MISSING
                else f"(_f_{attr}(w[{key!r}]) if {key!r} in w else _d_{attr})"
            )
        if default is not MISSING:
            namespace[f"_d_{attr}"] = default
        decode_args.append(f"{attr}={read}")
    encode_lines = [f"    w = {{{', '.join(always)}}}"]
    for key, attr in optional:
        encode_lines.append(f"    if m.{attr} is None:\n        del w[{key!r}]")
    source = (
        "def encode(m):\n" + "\n".join(encode_lines) + "\n    return _packb(w)\n"
        f"def decode(w):\n    return cls({', '.join(decode_args)})\n"
    )
    exec(source, namespace)  # the source is built from the literal table above, never input
    return namespace["encode"], namespace["decode"]


_CODECS: Final = {cls: _compile(cls) for cls in _FIELDS}
_ENCODERS: Final = {cls: codec[0] for cls, codec in _CODECS.items()}
_DECODERS: Final = {cls: codec[1] for cls, codec in _CODECS.items()}


def encode_body(body: Body) -> bytes:
    """msgpack-encode a body; optional fields left at None are omitted."""
    return _ENCODERS[type(body)](body)


_T = TypeVar("_T")


def decode_body(cls: type[_T] | None, data: bytes) -> _T:
    """Decode a control body of class `cls` (None: an application message, by its "t" key).

    Unknown keys are ignored so that later versions can add fields (SPEC.md 4).
    """
    try:
        wire = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for malformed input
        raise RemoteProtocolError(f"malformed control body: {type(exc).__name__}") from None
    if type(wire) is not dict:
        raise RemoteProtocolError("control body is not a map")
    if cls is None:
        kind = wire.get("t")
        found = _APP_TYPES.get(kind) if type(kind) is str else None
        if found is None:
            raise RemoteProtocolError(f"unknown message type {str(kind)[:32]!r}")
        cls = found
    assert cls is not None
    try:
        decoded: _T = _DECODERS[cls](wire)
    except KeyError as exc:
        raise RemoteProtocolError(f"invalid {cls.__name__}: missing key {exc}") from None
    except (LocalProtocolError, TypeError) as exc:
        raise RemoteProtocolError(f"invalid {cls.__name__}: {exc}") from None
    return decoded
