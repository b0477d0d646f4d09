"""Fuzz relayd's ClientHello reader (`relayd._sni.parse_client_hello`) on raw TCP bytes.

Contract: it never raises; it answers NeedMore, NotTls or ServerName, and a name is the
lower-cased host name, 1 to 253 characters, without the characters it refuses.
"""

from __future__ import annotations

from relayd._sni import NeedMore, NotTls, ServerName, parse_client_hello

LIMITS = (16384, 512)  # the default and config's smallest max_client_hello_bytes


def one_input(data: bytes) -> None:
    for limit in LIMITS:
        result = parse_client_hello(data, limit)
        assert isinstance(result, NeedMore | NotTls | ServerName), result
        if isinstance(result, NotTls):
            assert isinstance(result.why, str) and result.why
        if isinstance(result, ServerName) and result.name is not None:
            name = result.name
            assert isinstance(name, str) and 0 < len(name) <= 253, name
            assert name == name.lower() and not name.endswith("."), name
            assert not any(c in name for c in " /\\\x00"), name


def main() -> None:
    from ._atheris import fuzz

    fuzz(one_input)


if __name__ == "__main__":
    main()
