"""Every text the portal shows, in English and French (the policy's language), and which of the
two a request gets: the preference cookie if set, else the first language of
`Accept-Language` that we have, else English."""

from __future__ import annotations

from typing import Final

from httpapi import choose_language

__all__ = ["LANGUAGES", "choose", "texts"]

LANGUAGES: Final = ("en", "fr")

_EN: Final = {
    "portal": "Owner portal",
    "run_by": "Run by {operator}",
    "help": "Help",
    "privacy": "Privacy",
    "cookies": "Cookies",
    "language": "Language",
    "sign_in": "Sign in",
    "sign_up": "Create an account",
    "sign_out": "Sign out",
    "account_name": "Account name",
    "account_name_hint": "3 to 32 lower-case letters, digits, '.', '_' or '-'.",
    "password": "Password",
    "password_hint": "At least 12 characters.",
    "display_name": "Your name, as you want it shown",
    "email": "E-mail address (optional: only for notices you ask for)",
    "no_account": "No account yet?",
    "have_account": "Already have an account?",
    "bad_sign_in": "That account name and password do not match.",
    "too_many": "Too many attempts. Wait a few minutes, then try again.",
    "name_taken": "That account name is taken, or not allowed. Choose another.",
    "bad_form": "Some fields are not valid: {why}",
    "expired_form": "This form has expired. Please try again.",
    "devices": "Your devices",
    "no_devices": "No device is registered to this account yet.",
    "device": "Device",
    "relay_url": "Through the relay",
    "ddns_name": "DNS name",
    "addresses": "Addresses",
    "access": "Who may connect",
    "access_public": "anyone",
    "access_private": "only you",
    "access_custom": "you and the accounts you listed",
    "last_seen": "Last seen",
    "never": "never",
    "account": "Your account",
    "save": "Save",
    "saved": "Saved.",
    "passkeys": "Passkeys",
    "passkey": "Passkey",
    "passkeys_intro": (
        "A passkey signs you in with your device's screen lock or security key: no password,"
        " no code, and nothing a fake site can use."
    ),
    "no_passkeys": "No passkey yet.",
    "passkey_add": "Add a passkey",
    "passkey_name_hint": "laptop, phone",
    "passkey_reauth": "Your account password, again, before a new way to sign in.",
    "passkey_intro": "Your browser will ask you to confirm with your screen lock or key.",
    "passkey_create": "Create the passkey",
    "passkey_sign_in": "Sign in with a passkey",
    "passkey_failed": "The passkey was not accepted. Try again, or sign in with your password.",
    "passkey_script": "Passkeys need JavaScript in this browser; your password works without.",
    "passkeys_not_offered": (
        "This portal does not offer passkeys (its operator has not set its address)."
    ),
    "remove": "Remove",
    "cookies_intro": "This portal sets only these cookies. None of them tracks you.",
    "cookie": "Cookie",
    "purpose": "Purpose",
    "lifetime": "Lifetime",
    "cookie_session": "Keeps you signed in (security).",
    "cookie_form": "Protects the sign-in forms against forged requests (security).",
    "cookie_lang": "Remembers the language you chose (preference).",
    "until_sign_out": "until you sign out, at most {hours} hours",
    "one_hour": "one hour",
    "one_year": "one year",
    "not_found": "There is no such page.",
    "showing": "Devices {first} to {last} of {total}",
    "access_list": "Accounts that may connect (custom), one account name a line",
    "access_unknown": "No account is named {names}.",
    "unregister": "Unregister this NAS",
    "unregister_intro": (
        "Its names stop answering at once and everything kept about it is deleted. To "
        "confirm, type its name."
    ),
    "unregister_button": "Unregister",
    "unregistered": "{name} is unregistered.",
    "confirm_mismatch": "The name you typed is not this NAS's.",
    "dyndns2": "DynDNS2 passwords (routers, ddclient, inadyn)",
    "tsig_keys": "RFC 2136 keys (nsupdate, certbot, lego)",
    "link_feature": "Link: through the relay",
    "link_on": (
        "On: browsers reach this NAS at its relay address. Turning it off also forgets when"
        " the relay last saw it."
    ),
    "link_off": "Off: the relay refuses this NAS; nobody reaches it through the cloud.",
    "ddns_feature": "DDNS: its addresses under its name",
    "ddns_on": (
        "On: its name answers with the addresses the NAS (or its router) publishes. Turning it"
        " off deletes those addresses and its DynDNS2 passwords at once."
    ),
    "ddns_off": "Off: its name publishes no address and no update is taken.",
    "new_tsig": "Create an RFC 2136 key",
    "for_example": "For example",
    "name_column": "Name",
    "algorithm": "Algorithm",
    "api_tokens": "API tokens (the lookup API)",
    "no_tokens": "None yet.",
    "created": "Created",
    "token_name": "What it is for",
    "token_name_hint": "the router, a backup script",
    "last_used": "Last used",
    "revoke": "Revoke",
    "new_dyndns2": "Create a DynDNS2 password",
    "new_token": "Create an API token",
    "reauth_hint": "Your account password, again: a new secret is shown once.",
    "secret_title": "Your new secret",
    "secret_once": "Copy it now: it is shown this once and never stored.",
    "user_name": "User name",
    "secret": "Secret",
    "revoked": "Revoked.",
    "two_step": "Two-step sign-in",
    "two_step_off": "Off: your password alone signs you in.",
    "two_step_on": "On: signing in asks for a code from your authenticator app.",
    "two_step_setup": (
        "Add this key to an authenticator app (or open the link on your phone), then type the"
        " code it shows."
    ),
    "two_step_key": "Key",
    "two_step_link": "Open in an authenticator app",
    "code": "Code",
    "code_hint": "The six digits your app shows, or one of your recovery codes.",
    "trust": "Trust this computer for 30 days (no code asked here)",
    "turn_on": "Turn on",
    "turn_off": "Turn off",
    "bad_code_totp": "That code is not right, or it was used already.",
    "recovery_title": "Your recovery codes",
    "recovery_intro": (
        "Each works once, instead of a code, if you lose your phone. Keep them somewhere "
        "safe: they are shown this once."
    ),
    "cookie_trust": (
        "Skips the second step of signing in on this computer, as you asked (security)."
    ),
    "thirty_days": "30 days",
    "history": "Connection history",
    "history_intro": (
        "The last connections to your devices, and the updates of their addresses. A "
        "visitor's address is shown masked: it is the visitor's data."
    ),
    "history_off": "This portal does not show connection history.",
    "no_history": "Nothing yet.",
    "when": "When",
    "how": "How",
    "from": "From",
    "bytes": "Bytes in / out",
    "result": "Result",
    "export": "Download all your data",
    "export_intro": "Everything kept about your account and your devices, as a JSON file.",
    "delete_account": "Delete your account",
    "delete_intro": (
        "Your account, your devices and everything kept about them are deleted at once; your "
        "devices' names stop answering. Type your password to confirm."
    ),
    "delete_button": "Delete my account",
    "deleted": "Your account is deleted.",
    "pair": "Add a NAS",
    "pair_intro": (
        "Your NAS shows a pairing code (on its screen, in its setup pages or in its log). "
        "Type it here and choose the name it will have."
    ),
    "pair_code": "Pairing code",
    "device_name": "Name of the NAS",
    "device_name_hint": "Lower-case letters, digits and '-': it becomes {example}.",
    "pair_button": "Add this NAS",
    "bad_code": "That code is not valid, or it has expired. Ask your NAS for a new one.",
    "pair_taken": "That name is taken, or this NAS belongs to an account already.",
    "paired": "{name} is now yours. It connects within a few seconds.",
    "previous": "Previous",
    "next": "Next",
}

_FR: Final = {
    "portal": "Espace propriétaire",
    "run_by": "Service exploité par {operator}",
    "help": "Aide",
    "privacy": "Confidentialité",
    "cookies": "Cookies",
    "language": "Langue",
    "sign_in": "Se connecter",
    "sign_up": "Créer un compte",
    "sign_out": "Se déconnecter",
    "account_name": "Nom du compte",
    "account_name_hint": "3 à 32 lettres minuscules, chiffres, « . », « _ » ou « - ».",
    "password": "Mot de passe",
    "password_hint": "Au moins 12 caractères.",
    "display_name": "Votre nom, tel que vous voulez l'afficher",
    "email": "Adresse e-mail (facultative : seulement pour les avis que vous demandez)",
    "no_account": "Pas encore de compte ?",
    "have_account": "Vous avez déjà un compte ?",
    "bad_sign_in": "Ce nom de compte et ce mot de passe ne correspondent pas.",
    "too_many": "Trop de tentatives. Attendez quelques minutes, puis réessayez.",
    "name_taken": "Ce nom de compte est pris ou n'est pas permis. Choisissez-en un autre.",
    "bad_form": "Certains champs ne sont pas valides : {why}",
    "expired_form": "Ce formulaire a expiré. Veuillez réessayer.",
    "devices": "Vos appareils",
    "no_devices": "Aucun appareil n'est encore enregistré sur ce compte.",
    "device": "Appareil",
    "relay_url": "Par le relais",
    "ddns_name": "Nom DNS",
    "addresses": "Adresses",
    "access": "Qui peut se connecter",
    "access_public": "tout le monde",
    "access_private": "vous seul",
    "access_custom": "vous et les comptes de votre liste",
    "last_seen": "Vu pour la dernière fois",
    "never": "jamais",
    "account": "Votre compte",
    "save": "Enregistrer",
    "saved": "Enregistré.",
    "passkeys": "Clés d'accès",
    "passkey": "Clé d'accès",
    "passkeys_intro": (
        "Une clé d'accès vous connecte avec le verrouillage de votre appareil ou une clé de"
        " sécurité : sans mot de passe, sans code, et rien qu'un faux site puisse utiliser."
    ),
    "no_passkeys": "Aucune clé d'accès pour l'instant.",
    "passkey_add": "Ajouter une clé d'accès",
    "passkey_name_hint": "ordinateur portable, téléphone",
    "passkey_reauth": (
        "Le mot de passe de votre compte, à nouveau, avant un nouveau moyen de connexion."
    ),
    "passkey_intro": (
        "Votre navigateur vous demandera de confirmer avec votre verrouillage ou votre clé."
    ),
    "passkey_create": "Créer la clé d'accès",
    "passkey_sign_in": "Se connecter avec une clé d'accès",
    "passkey_failed": (
        "La clé d'accès n'a pas été acceptée. Réessayez, ou connectez-vous avec votre mot de passe."
    ),
    "passkey_script": (
        "Les clés d'accès demandent JavaScript dans ce navigateur ; votre mot de passe"
        " fonctionne sans."
    ),
    "passkeys_not_offered": (
        "Ce portail ne propose pas de clés d'accès (son opérateur n'a pas indiqué son adresse)."
    ),
    "remove": "Retirer",
    "cookies_intro": "Ce portail ne dépose que ces cookies. Aucun ne vous suit.",
    "cookie": "Cookie",
    "purpose": "Finalité",
    "lifetime": "Durée",
    "cookie_session": "Vous garde connecté (sécurité).",
    "cookie_form": "Protège les formulaires de connexion contre les requêtes forgées (sécurité).",
    "cookie_lang": "Retient la langue que vous avez choisie (préférence).",
    "until_sign_out": "jusqu'à la déconnexion, au plus {hours} heures",
    "one_hour": "une heure",
    "one_year": "un an",
    "not_found": "Cette page n'existe pas.",
    "showing": "Appareils {first} à {last} sur {total}",
    "access_list": "Comptes autorisés (personnalisé), un nom de compte par ligne",
    "access_unknown": "Aucun compte ne s'appelle {names}.",
    "unregister": "Désenregistrer ce NAS",
    "unregister_intro": (
        "Ses noms cessent aussitôt de répondre et tout ce qui est conservé à son sujet est "
        "supprimé. Pour confirmer, saisissez son nom."
    ),
    "unregister_button": "Désenregistrer",
    "unregistered": "{name} est désenregistré.",
    "confirm_mismatch": "Le nom saisi n'est pas celui de ce NAS.",
    "dyndns2": "Mots de passe DynDNS2 (routeurs, ddclient, inadyn)",
    "tsig_keys": "Clés RFC 2136 (nsupdate, certbot, lego)",
    "link_feature": "Link : par le relais",
    "link_on": (
        "Activé : les navigateurs joignent ce NAS à son adresse de relais. Le désactiver"
        " efface aussi quand le relais l'a vu pour la dernière fois."
    ),
    "link_off": "Désactivé : le relais refuse ce NAS ; personne ne le joint par le cloud.",
    "ddns_feature": "DDNS : ses adresses sous son nom",
    "ddns_on": (
        "Activé : son nom répond avec les adresses que le NAS (ou son routeur) publie. Le"
        " désactiver supprime aussitôt ces adresses et ses mots de passe DynDNS2."
    ),
    "ddns_off": "Désactivé : son nom ne publie aucune adresse et aucune mise à jour n'est prise.",
    "new_tsig": "Créer une clé RFC 2136",
    "for_example": "Par exemple",
    "name_column": "Nom",
    "algorithm": "Algorithme",
    "api_tokens": "Jetons d'API (l'API de recherche)",
    "no_tokens": "Aucun pour l'instant.",
    "created": "Créé le",
    "token_name": "À quoi il sert",
    "token_name_hint": "le routeur, un script de sauvegarde",
    "last_used": "Dernière utilisation",
    "revoke": "Révoquer",
    "new_dyndns2": "Créer un mot de passe DynDNS2",
    "new_token": "Créer un jeton d'API",
    "reauth_hint": (
        "Le mot de passe de votre compte, à nouveau : un nouveau secret n'est montré qu'une fois."
    ),
    "secret_title": "Votre nouveau secret",
    "secret_once": (
        "Copiez-le maintenant : il n'est montré que cette fois et n'est jamais conservé."
    ),
    "user_name": "Nom d'utilisateur",
    "secret": "Secret",
    "revoked": "Révoqué.",
    "two_step": "Connexion en deux étapes",
    "two_step_off": "Désactivée : votre mot de passe seul vous connecte.",
    "two_step_on": (
        "Activée : la connexion demande un code de votre application d'authentification."
    ),
    "two_step_setup": (
        "Ajoutez cette clé à une application d'authentification (ou ouvrez le lien sur votre "
        "téléphone), puis saisissez le code qu'elle affiche."
    ),
    "two_step_key": "Clé",
    "two_step_link": "Ouvrir dans une application d'authentification",
    "code": "Code",
    "code_hint": "Les six chiffres de votre application, ou l'un de vos codes de secours.",
    "trust": "Faire confiance à cet ordinateur pendant 30 jours (pas de code demandé ici)",
    "turn_on": "Activer",
    "turn_off": "Désactiver",
    "bad_code_totp": "Ce code n'est pas le bon, ou il a déjà servi.",
    "recovery_title": "Vos codes de secours",
    "recovery_intro": (
        "Chacun sert une fois, à la place d'un code, si vous perdez votre téléphone. Gardez-"
        "les en lieu sûr : ils ne sont montrés que cette fois."
    ),
    "cookie_trust": (
        "Évite la seconde étape de connexion sur cet ordinateur, comme vous l'avez demandé "
        "(sécurité)."
    ),
    "thirty_days": "30 jours",
    "history": "Historique des connexions",
    "history_intro": (
        "Les dernières connexions à vos appareils, et les mises à jour de leurs adresses. "
        "L'adresse d'un visiteur est masquée : c'est une donnée du visiteur."
    ),
    "history_off": "Ce portail n'affiche pas l'historique des connexions.",
    "no_history": "Rien pour l'instant.",
    "when": "Quand",
    "how": "Comment",
    "from": "Depuis",
    "bytes": "Octets reçus / envoyés",
    "result": "Résultat",
    "export": "Télécharger toutes vos données",
    "export_intro": (
        "Tout ce qui est conservé sur votre compte et vos appareils, dans un fichier JSON."
    ),
    "delete_account": "Supprimer votre compte",
    "delete_intro": (
        "Votre compte, vos appareils et tout ce qui les concerne sont supprimés aussitôt ; "
        "les noms de vos appareils cessent de répondre. Saisissez votre mot de passe pour "
        "confirmer."
    ),
    "delete_button": "Supprimer mon compte",
    "deleted": "Votre compte est supprimé.",
    "pair": "Ajouter un NAS",
    "pair_intro": (
        "Votre NAS affiche un code d'association (sur son écran, dans ses pages de "
        "configuration ou dans son journal). Saisissez-le ici et choisissez le nom qu'il portera."
    ),
    "pair_code": "Code d'association",
    "device_name": "Nom du NAS",
    "device_name_hint": "Lettres minuscules, chiffres et « - » : il devient {example}.",
    "pair_button": "Ajouter ce NAS",
    "bad_code": "Ce code n'est pas valide ou a expiré. Demandez-en un nouveau à votre NAS.",
    "pair_taken": "Ce nom est pris, ou ce NAS appartient déjà à un compte.",
    "paired": "{name} est maintenant à vous. Il se connecte dans quelques secondes.",
    "previous": "Précédents",
    "next": "Suivants",
}

_CATALOGS: Final = {"en": _EN, "fr": _FR}


def choose(cookie: str | None, accept_language: str) -> str:
    """The language of a request (one of LANGUAGES)."""
    return choose_language(cookie, accept_language, LANGUAGES)


def texts(language: str) -> dict[str, str]:
    return _CATALOGS[language]
