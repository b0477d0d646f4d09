"""The Cloud Install site's pages: plain HTML, no script, every value escaped.

Each page says what the cloud does with the owner's data at that step, in the words of the
policy: directly between browser and NAS on the same network; otherwise relayed, with
connection information kept only; and the owner may stop and set up locally instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from httpapi import HttpResponse

__all__ = [
    "Chrome",
    "found_on_this_network",
    "found_relayed",
    "key_form",
    "message_page",
]


@dataclass(frozen=True, slots=True)
class Chrome:
    """What every page of the site shows around its content: who runs this cloud, and where
    its help and its privacy policy are (so an owner knows whom they give the key to)."""

    operator: str = "nascloud"
    help_url: str | None = None
    privacy_url: str | None = None

    def footer(self) -> str:
        links = [
            f'<a href="{escape(url)}">{label}</a>'
            for url, label in ((self.help_url, "Help"), (self.privacy_url, "Privacy"))
            if url
        ]
        return (
            f'<footer><p class="small">Run by {escape(self.operator)}'
            + ("" if not links else " · " + " · ".join(links))
            + "</p></footer>"
        )


PLAIN = Chrome()

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;"
    "color:#1d2733}h1{font-size:1.5rem}input[type=text]{font-size:1.2rem;padding:.4rem;"
    "width:100%;max-width:25rem;box-sizing:border-box;letter-spacing:.1em;"
    "text-transform:uppercase}button,.button{font-size:1rem;"
    "padding:.5rem 1rem;margin:.3rem .3rem .3rem 0;display:inline-block}"
    "a.button{background:#1d5fbf;color:#fff;text-decoration:none;border-radius:4px}"
    "p.small{font-size:.85rem;color:#4a5868}"
    "p.error{border-left:4px solid #c0392b;background:#c0392b1a;padding:.5rem .75rem}"
    "footer{margin-top:2rem;border-top:1px solid #ccd}"
)
# No script, no third-party anything; forms post to this site only; never framed.
HEADERS = [
    ("Cache-Control", "no-store"),
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'",
    ),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
]
HTML = "text/html; charset=utf-8"


def _page(
    status: int,
    title: str,
    body: str,
    extra_headers: list[tuple[str, str]] | None = None,
    chrome: Chrome = PLAIN,
) -> HttpResponse:
    document = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}{chrome.footer()}</body></html>\n"
    )
    return HttpResponse(status, document.encode(), HTML, HEADERS + (extra_headers or []))


def key_form(
    chrome: Chrome = PLAIN, status: int = 200, problem: str = "", typed: str = ""
) -> HttpResponse:
    """The page where the owner types the cloud key printed on the NAS; after a wrong key,
    the problem as an error and what they typed, to correct rather than type again."""
    notice = f'<p class="error" role="alert">{escape(problem)}</p>' if problem else ""
    return _page(
        status,
        "Set up your new NAS",
        f"{notice}<p>Type the cloud key printed on your NAS (or shown on its screen).</p>"
        '<form method="post" action="/find">'
        '<input type="text" name="cloud_key" id="cloud_key" autocomplete="off" '
        'autocapitalize="characters" spellcheck="false" maxlength="80" required '
        f'placeholder="XXXX-XXXX-XXXX-XXXX" aria-label="Cloud key" value="{escape(typed[:80])}"> '
        '<button type="submit" id="find">Find my NAS</button></form>'
        '<p class="small">A new NAS can be found here for 24 hours after it is switched on; '
        "then the cloud deletes what it reported. Keep the cloud key to yourself: it is what "
        "finds your NAS, and nothing else.</p>",
        chrome=chrome,
    )


def found_on_this_network(chrome: Chrome, lan_urls: tuple[str, ...]) -> HttpResponse:
    """Same network: send the browser straight to the NAS. Every URL here was built from
    addresses the NAS registered, never from the request."""
    links = "".join(f'<li><a href="{escape(url)}">{escape(url)}</a></li>' for url in lan_urls)
    refresh = [("Refresh", f"0; url={lan_urls[0]}")] if lan_urls else []
    return _page(
        200,
        "Your NAS is on this network",
        "<p>Setup goes directly between this browser and your NAS, without the cloud.</p>"
        f"<ul>{links}</ul>",
        refresh,
        chrome,
    )


def found_relayed(chrome: Chrome, session_url: str, token: str) -> HttpResponse:
    """Another network: offer the relayed session, or stopping it."""
    return _page(
        200,
        "Your NAS was found",
        "<p>Your NAS is on another network, so the cloud will carry the setup between this "
        "browser and the NAS. It keeps connection information only (addresses, times, sizes) "
        "for security; what passes through leaves no trace.</p>"
        f'<p><a class="button" id="continue" href="{escape(session_url)}">'
        "Continue to setup</a></p>"
        '<form method="post" action="/stop">'
        f'<input type="hidden" name="session" value="{escape(token)}">'
        '<button type="submit" id="stop">Stop, I will set it up on its own network</button>'
        "</form>"
        '<p class="small">Stopping ends this session, disconnects the NAS from the cloud and '
        "deletes what it reported. Set it up from a computer on the same network as the NAS.</p>",
        chrome=chrome,
    )


def message_page(status: int, title: str, text: str, chrome: Chrome = PLAIN) -> HttpResponse:
    return _page(status, title, f"<p>{escape(text)}</p>", chrome=chrome)
