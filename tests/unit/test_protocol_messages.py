"""Message validation: bad values are our error when we build them and the peer's when they
arrive, and the name rules keep a device inside its own names."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

import protocol
from protocol import ErrorCode, LocalProtocolError, RemoteProtocolError
from protocol._messages import Hello, Open, decode_body

BAD: list[tuple[type[Any], dict[str, Any], str]] = [
    (protocol.DdnsUpdate, {"name": "nas2"}, "name must be 'nas1'"),
    (protocol.DdnsUpdate, {"name": "_acme-challenge.nas1", "rrtype": "A"}, "only TXT"),
    (protocol.DdnsUpdate, {"values": ("2001:db8::1",)}, "IPv4"),
    (protocol.DdnsUpdate, {"values": ("10.0.0.01",)}, "IP address"),
    # A scope (zone index) names an interface of the sender's host: nobody else can use it.
    (protocol.DdnsUpdate, {"rrtype": "AAAA", "values": ("2001:db8::1%1",)}, "IP address"),
    (protocol.DdnsUpdate, {"rrtype": "AAAA", "values": ("fe80::1%eth0",)}, "IP address"),
    (protocol.DdnsUpdate, {"rrtype": "MX"}, "rrtype"),
    (protocol.DdnsUpdate, {"device": "NAS1", "name": "NAS1"}, "lower-case"),
    (protocol.DdnsUpdate, {"ttl_s": True}, "ttl_s"),
    (protocol.DdnsUpdate, {"ttl_s": 86401}, "ttl_s"),
    (protocol.DdnsUpdate, {"values": ("1.2.3.4",) * 17}, "at most 16"),
    (protocol.Register, {"lan_addresses": ["192.168.1.1"]}, "tuple"),
    (protocol.Register, {"services": ("-web",)}, "hyphen"),
    (protocol.InstallRegister, {"setup_port": 0}, "setup_port"),
    (protocol.InstallRegister, {"cloud_key": ""}, "cloud_key"),
    (protocol.DataPool, {"tokens": ()}, "1 to 16 tokens"),
    (protocol.DataPool, {"tokens": (b"x" * 16,) * 17}, "1 to 16 tokens"),
    (protocol.DataPool, {"tokens": (b"short",)}, "16 bytes"),
    (protocol.DataPool, {"tokens": [b"x" * 16]}, "tuple"),
    (protocol.DataPool, {"data_port": 0}, "data_port"),
    (protocol.Error, {"message": "x" * 257}, "message"),
]

GOOD: dict[type[Any], dict[str, Any]] = {
    protocol.DdnsUpdate: {
        "request_id": 1,
        "device": "nas1",
        "name": "nas1",
        "rrtype": "A",
        "values": ("192.0.2.1",),
    },
    protocol.Register: {"lan_addresses": ("192.168.1.1",), "services": ("web",)},
    protocol.InstallRegister: {
        "request_id": 1,
        "cloud_key": "ABCD",
        "lan_addresses": (),
        "setup_port": 80,
    },
    protocol.DataPool: {"tokens": (b"a" * 16, b"b" * 16), "data_port": 7444},
    protocol.Error: {"error_code": 1, "message": "m"},
}


@pytest.mark.parametrize(("cls", "change", "words"), BAD)
def test_bad_values_are_local_errors(cls: type[Any], change: dict[str, Any], words: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        cls(**(GOOD[cls] | change))
    assert words in str(info.value)
    assert info.value.error_code == ErrorCode.INVALID_REQUEST


@pytest.mark.parametrize("cls", list(GOOD))
def test_good_values_round_trip(cls: type[Any]) -> None:
    from protocol._messages import encode_body

    message = cls(**GOOD[cls])
    assert decode_body(None, encode_body(message)) == message


@pytest.mark.parametrize(
    "wire",
    [
        {"t": "ddns", "i": 1, "d": "nas1", "n": "nas2", "r": "A", "v": ["192.0.2.1"]},
        {"t": "ddns", "i": 1, "d": "nas1", "n": "nas1", "r": "A"},  # values missing
        {"t": "ddns", "i": "1", "d": "nas1", "n": "nas1", "r": "A", "v": []},
        {"t": "nope"},
        {"t": 5},
        {"i": 1},
        {"t": "ack", "i": True},
        {"t": "register", "l": "192.0.2.1"},
        {"t": "register", "l": [["x"]]},
        {"t": "pool", "k": [b"x" * 15], "p": 7444},
        {"t": "pool", "k": ["x" * 16], "p": 7444},
        {"t": "pool", "k": [b"x" * 16]},
    ],
)
def test_bad_values_from_the_peer_are_remote_errors(wire: dict[str, Any]) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_body(None, msgpack.packb(wire))


def test_unknown_keys_are_ignored_for_forward_compatibility() -> None:
    wire = msgpack.packb({"t": "ack", "i": 4, "future": [1, 2]})
    assert decode_body(None, wire) == protocol.Ack(4)
    assert decode_body(Open, msgpack.packb({"s": "web", "zz": 1})) == Open("web")


def test_non_map_bodies_and_non_string_keys_are_remote_errors() -> None:
    for body in (msgpack.packb([1, 2]), msgpack.packb({1: 2}), b""):
        with pytest.raises(RemoteProtocolError):
            decode_body(Hello, body)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "must not be empty"),
        ("a" * 64, "at most 63"),
        ("Nas1", "lower-case"),
        ("-nas", "hyphen"),
        ("nas-", "hyphen"),
        ("nas_1", "only a-z"),
        ("nas.1", "only a-z"),
        ("näs", "only a-z"),
    ],
)
def test_label_validation_messages(name: str, problem: str) -> None:
    with pytest.raises(ValueError) as info:
        protocol.validate_label(name, "device name")
    assert problem in str(info.value)
    assert str(info.value).startswith("device name")


def test_valid_labels() -> None:
    for name in ("a", "nas1", "my-nas-01", "0", "a" * 63):
        assert protocol.validate_label(name) == name
