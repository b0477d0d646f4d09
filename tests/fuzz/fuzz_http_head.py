"""Fuzz httpapi's request-head parser (`httpapi.parse_head`), which serves DynDNS2, lookups,
metrics and the install site.

Contract: it returns a head or raises HttpError with a 4xx/5xx status (400, 413, 431, 501,
505); a returned head has a token method, a printable target, lower-case header names and
a content length within the bound.
"""

from __future__ import annotations

import re

from httpapi import parse_head
from httpapi._server import HttpError

MAX_BODY_BYTES = 65536
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def one_input(data: bytes) -> None:
    try:
        head = parse_head(data, MAX_BODY_BYTES)
    except HttpError as exc:
        assert exc.status in (400, 413, 431, 501, 505), exc.status
        return
    assert _TOKEN.fullmatch(head.method), head.method
    assert head.target and all("\x21" <= c <= "\x7e" for c in head.target), head.target
    assert head.version in (b"HTTP/1.0", b"HTTP/1.1")
    assert all(name == name.lower() and _TOKEN.fullmatch(name) for name in head.headers)
    assert 0 <= head.content_length <= MAX_BODY_BYTES, head.content_length
    assert isinstance(head.keep_alive, bool)


def main() -> None:
    from ._atheris import fuzz

    fuzz(one_input)


if __name__ == "__main__":
    main()
