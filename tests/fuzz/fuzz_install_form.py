"""Fuzz the install site's form reader (`relayd._install._form`).

The first line of the input is the Content-Type header, the rest the body. Contract: it
returns None (not a form, or a malformed one) or at most 8 fields of text, never raises.
"""

from __future__ import annotations

from httpapi import HttpRequest
from relayd._install import _form


def one_input(data: bytes) -> None:
    content_type, _, body = data.partition(b"\n")
    headers = {"content-type": content_type.decode("latin-1")}
    fields = _form(HttpRequest("POST", "/", headers, body, "192.0.2.1"))
    if fields is None:
        return
    assert isinstance(fields, dict) and len(fields) <= 8, fields
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items()), fields


def main() -> None:
    from ._atheris import fuzz

    fuzz(one_input)


if __name__ == "__main__":
    main()
