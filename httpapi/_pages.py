"""What every page people see shares, whichever daemon serves it (the portal, relayd's install
site): one stylesheet, served by each at `STYLESHEET_PATH` (so that their CSP says
`style-src 'self'`, never inline)."""

from __future__ import annotations

from importlib.resources import files
from typing import Final

__all__ = ["STYLESHEET", "STYLESHEET_PATH"]

STYLESHEET_PATH: Final = "/static/pages.css"
STYLESHEET: Final = (files("httpapi") / "static" / "pages.css").read_bytes()
