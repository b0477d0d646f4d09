"""Fuzz what the portal reads of a request before any page (`portal._web`, `portal._text`).

The input's first four lines are the Cookie header, the Accept-Language header, the
Content-Type header and a `next=` target; the rest is the body. Contract: nothing raises;
cookies are at most 50 names; the language is one of ours; a form is None or at most 20
fields of text; a target that is kept is a path of this site, never `//host` or a scheme.
"""

from __future__ import annotations

from httpapi import HttpRequest
from portal._text import LANGUAGES, choose
from portal._web import cookies, form_fields, local_target


def one_input(data: bytes) -> None:
    parts = data.split(b"\n", 4)
    parts += [b""] * (5 - len(parts))
    cookie, language, content_type, target = (p.decode("latin-1") for p in parts[:4])
    headers = {"cookie": cookie, "accept-language": language, "content-type": content_type}
    request = HttpRequest("POST", "/sign-in", headers, parts[4], "192.0.2.1")
    jar = cookies(request)
    assert len(jar) <= 50 and all(isinstance(v, str) for v in jar.values())
    assert choose(jar.get("__Host-lang"), language) in LANGUAGES
    fields = form_fields(request)
    if fields is not None:
        assert len(fields) <= 20 and all(isinstance(v, str) for v in fields.values())
    kept = local_target(target, "/devices")
    if kept != "/devices":  # kept as given: a path of this site only
        assert kept == target and kept.startswith("/") and not kept.startswith("//"), kept
        assert "\\" not in kept and all(33 <= ord(c) <= 126 for c in kept), kept


def main() -> None:
    from ._atheris import fuzz

    fuzz(one_input)


if __name__ == "__main__":
    main()
