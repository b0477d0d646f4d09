"""Which of the languages a site has a request gets: its preference cookie if it names one,
else the first of `Accept-Language` (RFC 9110 12.5.4, by quality, then order) that the site
has, else the site's first."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["choose_language"]


def choose_language(cookie: str | None, accept_language: str, languages: Sequence[str]) -> str:
    if cookie is not None and cookie in languages:
        return cookie
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(accept_language.split(",")[:20]):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        primary = tag.strip().lower().split("-")[0]
        if primary in languages and quality > 0:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else languages[0]
