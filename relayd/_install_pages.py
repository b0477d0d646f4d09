"""The Cloud Install site's pages: plain HTML, no script, every value escaped, in the
portal's look (the stylesheet they share, `httpapi.STYLESHEET`).

Each page says what the cloud does with the owner's data at that step, in the words of the
policy: directly between browser and NAS on the same network; otherwise relayed, with
connection information kept only; and the owner may stop and set up locally instead.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from html import escape
from typing import Final

from httpapi import STYLESHEET, STYLESHEET_PATH, HttpResponse

__all__ = [
    "LANGUAGES",
    "Chrome",
    "found_on_this_network",
    "found_relayed",
    "key_form",
    "message_page",
    "said",
    "stylesheet",
    "wrong_key",
]


LANGUAGES: Final = ("en", "fr")  # the first when the browser asks for none of them

_TEXTS: Final[dict[str, dict[str, str]]] = {
    "en": {
        "key_title": "Set up your new NAS",
        "key_intro": "Type the cloud key printed on your NAS (or shown on its screen).",
        "key_label": "Cloud key",
        "key_button": "Find my NAS",
        "key_small": (
            "A new NAS can be found here for 24 hours after it is switched on; then the cloud "
            "deletes what it reported. Keep the cloud key to yourself: it is what finds your "
            "NAS, and nothing else."
        ),
        "wrong_key": (
            "No new NAS is waiting under this key. Check the key on the NAS; a NAS can be "
            "found for 24 hours after it is switched on."
        ),
        "here_title": "Your NAS is on this network",
        "here_text": "Setup goes directly between this browser and your NAS, without the cloud.",
        "found_title": "Your NAS was found",
        "found_text": (
            "Your NAS is on another network, so the cloud will carry the setup between this "
            "browser and the NAS. It keeps connection information only (addresses, times, "
            "sizes) for security; what passes through leaves no trace."
        ),
        "continue": "Continue to setup",
        "stop": "Stop, I will set it up on its own network",
        "stop_small": (
            "Stopping ends this session, disconnects the NAS from the cloud and deletes what "
            "it reported. Set it up from a computer on the same network as the NAS."
        ),
        "stopped_title": "Setup through the cloud is stopped",
        "stopped_text": (
            "The NAS is disconnected from the cloud and what it reported is deleted. Set it up "
            "from a computer on the same network as the NAS."
        ),
        "no_session_title": "No such setup session",
        "no_session_text": "This setup session does not exist or has ended.",
        "too_many_title": "Too many tries",
        "too_many_text": "Too many cloud keys were tried from here; wait a minute.",
        "run_by": "Run by {operator}",
        "site_name": "Cloud Install",
        "help": "Help",
        "privacy": "Privacy",
    },
    "fr": {
        "key_title": "Configurer votre nouveau NAS",
        "key_intro": "Saisissez la clé cloud imprimée sur votre NAS (ou affichée sur son écran).",
        "key_label": "Clé cloud",
        "key_button": "Trouver mon NAS",
        "key_small": (
            "Un nouveau NAS peut être trouvé ici pendant 24 heures après sa mise en marche ; "
            "le cloud supprime ensuite ce qu'il a signalé. Gardez la clé cloud pour vous : "
            "elle sert à trouver votre NAS, et à rien d'autre."
        ),
        "wrong_key": (
            "Aucun nouveau NAS n'attend sous cette clé. Vérifiez la clé sur le NAS ; un NAS "
            "peut être trouvé pendant 24 heures après sa mise en marche."
        ),
        "here_title": "Votre NAS est sur ce réseau",
        "here_text": (
            "La configuration se fait directement entre ce navigateur et votre NAS, sans le cloud."
        ),
        "found_title": "Votre NAS a été trouvé",
        "found_text": (
            "Votre NAS est sur un autre réseau : le cloud relaiera la configuration entre ce "
            "navigateur et le NAS. Il ne conserve que les informations de connexion (adresses, "
            "heures, tailles), pour la sécurité ; ce qui passe ne laisse aucune trace."
        ),
        "continue": "Continuer vers la configuration",
        "stop": "Arrêter, je le configurerai sur son propre réseau",
        "stop_small": (
            "Arrêter met fin à cette session, déconnecte le NAS du cloud et supprime ce qu'il a "
            "signalé. Configurez-le depuis un ordinateur sur le même réseau que le NAS."
        ),
        "stopped_title": "La configuration par le cloud est arrêtée",
        "stopped_text": (
            "Le NAS est déconnecté du cloud et ce qu'il a signalé est supprimé. Configurez-le "
            "depuis un ordinateur sur le même réseau que le NAS."
        ),
        "no_session_title": "Cette session de configuration n'existe pas",
        "no_session_text": "Cette session de configuration n'existe pas ou est terminée.",
        "too_many_title": "Trop d'essais",
        "too_many_text": "Trop de clés cloud ont été essayées d'ici ; attendez une minute.",
        "run_by": "Service exploité par {operator}",
        "site_name": "Installation par le cloud",
        "help": "Aide",
        "privacy": "Confidentialité",
    },
}


@dataclass(frozen=True, slots=True)
class Chrome:
    """What every page of the site shows around its content, in the visitor's language: who
    runs this cloud, and where its help and its privacy policy are (so an owner knows whom
    they give the key to)."""

    operator: str = "nascloud"
    help_url: str | None = None
    privacy_url: str | None = None
    lang: str = "en"

    def speaking(self, lang: str) -> Chrome:
        return dataclasses.replace(self, lang=lang if lang in _TEXTS else "en")

    def t(self, key: str) -> str:
        return _TEXTS[self.lang][key]

    def header(self) -> str:
        """The portal's header: the site's name and who runs it."""
        return (
            f'<header><p class="brand">{escape(self.t("site_name"))} <span class="operator">'
            f"{escape(self.t('run_by').format(operator=self.operator))}</span></p></header>"
        )

    def footer(self) -> str:
        """Where the operator's help and privacy policy are (none: no footer)."""
        links = [
            f'<a href="{escape(url)}">{self.t(label)}</a>'
            for url, label in ((self.help_url, "help"), (self.privacy_url, "privacy"))
            if url
        ]
        return f"<footer>{''.join(links)}</footer>" if links else ""


PLAIN = Chrome()

# No script, no third-party anything; forms post to this site only; never framed.
HEADERS = [
    ("Cache-Control", "no-store"),
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'self'; form-action 'self'; "
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
        f'<!doctype html><html lang="{chrome.lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{escape(title)}</title><link rel="stylesheet" href="{STYLESHEET_PATH}"></head>'
        f"<body>{chrome.header()}<main><h1>{escape(title)}</h1>{body}</main>"
        f"{chrome.footer()}</body></html>\n"
    )
    return HttpResponse(status, document.encode(), HTML, HEADERS + (extra_headers or []))


def key_form(
    chrome: Chrome = PLAIN, status: int = 200, problem: str = "", typed: str = ""
) -> HttpResponse:
    """The page where the owner types the cloud key printed on the NAS; after a wrong key,
    the problem as an error and what they typed, to correct rather than type again."""
    notice = f'<p class="error" role="alert">{escape(problem)}</p>' if problem else ""
    t = chrome.t
    return _page(
        status,
        t("key_title"),
        f"{notice}<p>{escape(t('key_intro'))}</p>"
        '<form method="post" action="/find">'
        f"<label>{escape(t('key_label'))}"
        '<input type="text" name="cloud_key" id="cloud_key" class="key" autocomplete="off" '
        'autocapitalize="characters" spellcheck="false" maxlength="80" required '
        f'placeholder="XXXX-XXXX-XXXX-XXXX" value="{escape(typed[:80])}"></label>'
        f'<button type="submit" id="find">{escape(t("key_button"))}</button></form>'
        f'<p class="small">{escape(t("key_small"))}</p>',
        chrome=chrome,
    )


def wrong_key(chrome: Chrome, typed: str) -> HttpResponse:
    """A key under which no NAS waits: one answer however close it was."""
    return key_form(chrome, 404, chrome.t("wrong_key"), typed)


def found_on_this_network(chrome: Chrome, lan_urls: tuple[str, ...]) -> HttpResponse:
    """Same network: send the browser straight to the NAS. Every URL here was built from
    addresses the NAS registered, never from the request."""
    links = "".join(f'<li><a href="{escape(url)}">{escape(url)}</a></li>' for url in lan_urls)
    refresh = [("Refresh", f"0; url={lan_urls[0]}")] if lan_urls else []
    return _page(
        200,
        chrome.t("here_title"),
        f"<p>{escape(chrome.t('here_text'))}</p><ul>{links}</ul>",
        refresh,
        chrome,
    )


def found_relayed(chrome: Chrome, session_url: str, token: str) -> HttpResponse:
    """Another network: offer the relayed session, or stopping it."""
    t = chrome.t
    return _page(
        200,
        t("found_title"),
        f"<p>{escape(t('found_text'))}</p>"
        f'<p><a class="button" id="continue" href="{escape(session_url)}">'
        f"{escape(t('continue'))}</a></p>"
        '<form method="post" action="/stop">'
        f'<input type="hidden" name="session" value="{escape(token)}">'
        f'<button type="submit" id="stop">{escape(t("stop"))}</button>'
        "</form>"
        f'<p class="small">{escape(t("stop_small"))}</p>',
        chrome=chrome,
    )


def said(chrome: Chrome, status: int, what: str) -> HttpResponse:
    """A page of one message of the site's, in the visitor's language (`what`_title and
    `what`_text in the texts)."""
    return message_page(status, chrome.t(what + "_title"), chrome.t(what + "_text"), chrome)


def message_page(status: int, title: str, text: str, chrome: Chrome = PLAIN) -> HttpResponse:
    return _page(status, title, f"<p>{escape(text)}</p>", chrome=chrome)


def stylesheet() -> HttpResponse:
    return HttpResponse(200, STYLESHEET, "text/css; charset=utf-8", HEADERS)
