"""protocol/SPEC.md's test vectors, decoded and re-encoded by the implementation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import protocol
from protocol._auth import auth_payload, public_key_bytes, verify_auth
from protocol._frames import HEADER, FrameType, encode_frame
from protocol._messages import (
    Auth,
    AuthOk,
    GoAway,
    Hello,
    Open,
    Ping,
    Reset,
    WindowUpdate,
    decode_body,
    encode_body,
)

SPEC = Path(protocol.__file__).with_name("SPEC.md").read_text()
_BODIES: dict[FrameType, type | None] = {
    FrameType.HELLO: Hello,
    FrameType.AUTH: Auth,
    FrameType.AUTH_OK: AuthOk,
    FrameType.OPEN: Open,
    FrameType.RESET: Reset,
    FrameType.WINDOW: WindowUpdate,
    FrameType.PING: Ping,
    FrameType.GOAWAY: GoAway,
    FrameType.MESSAGE: None,
}
# What the spec's `body:` lines may name; eval sees nothing else.
_NAMES = {
    cls.__name__: cls for cls in (Hello, Auth, AuthOk, Open, Reset, WindowUpdate, Ping, GoAway)
} | {
    name: getattr(protocol, name)
    for name in ("Register", "DdnsUpdate", "InstallRegister", "DataPool", "Ack", "Error")
}


def _blocks(fence: str) -> list[dict[str, str]]:
    blocks = []
    for text in re.findall(rf"```{fence}\n(.*?)```", SPEC, re.S):
        fields: dict[str, str] = {}
        key = ""
        for line in text.splitlines():
            match = re.match(r"([a-z ]+):\s+(.*)", line)
            if match:
                key = match.group(1)
                fields[key] = match.group(2).strip()
            else:
                fields[key] += line.strip()
        blocks.append(fields)
    return blocks


VECTORS = _blocks("vector")


def test_spec_has_a_vector_for_every_frame_type_and_message() -> None:
    frame_names = {v["frame"].split()[0] for v in VECTORS}
    assert frame_names == {t.name for t in FrameType}
    bodies = {v["body"].split("(")[0] for v in VECTORS}
    assert set(_NAMES) <= bodies


@pytest.mark.parametrize("vector", VECTORS, ids=[v["body"][:20] for v in VECTORS])
def test_vector_decodes_and_reencodes(vector: dict[str, str]) -> None:
    wire = bytes.fromhex(vector["hex"].replace(" ", ""))
    name, flags, stream = vector["frame"].split()
    frame_type = FrameType[name]
    assert HEADER.unpack_from(wire) == (
        frame_type,
        int(flags.split("=")[1], 16),
        int(stream.split("=")[1]),
        len(wire) - HEADER.size,
    )
    body_bytes = wire[HEADER.size :]
    if frame_type is FrameType.DATA:
        expected_data = eval(vector["body"], {"__builtins__": {}})
        assert body_bytes == expected_data
        assert encode_frame(frame_type, int(flags.split("=")[1], 16), 1, expected_data) == wire
        return
    decoded: object = decode_body(_BODIES[frame_type], body_bytes)
    assert repr(decoded) == vector["body"]
    expected = eval(vector["body"], {"__builtins__": {}}, _NAMES)
    assert decoded == expected
    assert (
        encode_frame(
            frame_type,
            int(flags.split("=")[1], 16),
            int(stream.split("=")[1]),
            encode_body(expected),
        )
        == wire
    )


def test_auth_vector_signature_is_exact() -> None:
    [vector] = _blocks("auth-vector")
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(vector["seed"]))
    public = public_key_bytes(key)
    assert public.hex() == vector["public key"]
    payload = auth_payload(
        int(vector["version"]),
        vector["kind"],
        vector["server"],
        vector["client"],
        bytes.fromhex(vector["nonce"]),
        public,
    )
    assert payload.hex() == vector["payload"]
    assert key.sign(payload).hex() == vector["signature"]
    assert verify_auth(public, bytes.fromhex(vector["signature"]), payload)


def test_data_frames_through_a_connection_match_the_vectors() -> None:
    from .pairs import open_pair

    client, server = open_pair()
    stream_id = client.open_stream(Open("web"))
    server.receive_data(client.data_to_send())
    client.send_data(stream_id, b"hello")
    client.end_stream(stream_id)
    wire = client.data_to_send()
    data_vectors = [v for v in VECTORS if v["frame"].startswith("DATA")]
    assert wire == b"".join(bytes.fromhex(v["hex"].replace(" ", "")) for v in data_vectors)
