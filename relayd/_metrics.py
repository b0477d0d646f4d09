"""relayd's metrics: gauges, counters named for what they count, and the browser-connection
latency histogram, labelled with fixed words only (privacy rule 8).

The parts count into one `Counter[str]` by short keys; `EVENTS` says which counter each key
feeds. Every counter is shown with all its label values from the start, at zero.
"""

from __future__ import annotations

from collections import Counter
from typing import Final

from httpapi import Metric

from ._agents import Agents
from ._data import DataConnections
from ._https import HttpsIngress
from ._install import InstallSite

__all__ = ["EVENTS", "event_metrics", "relay_metrics"]

# name: (help, label or None)
_COUNTERS: Final[dict[str, tuple[str, str | None]]] = {
    "nascloud_relay_tunnels_opened_total": (
        "Agent tunnels that came up (a reconnection included).",
        None,
    ),
    "nascloud_relay_tunnels_refused_total": (
        "Agent tunnels refused: too many from one address, or a handshake refused, broken or "
        "too slow.",
        "reason",
    ),
    "nascloud_relay_tunnels_closed_total": (
        "Agent tunnels the relay closed: replaced by the device's new tunnel, or the device "
        "deleted.",
        "reason",
    ),
    "nascloud_relay_tunnel_errors_total": (
        "Agent tunnels ended by an unexpected error in the relay (a bug; logged).",
        None,
    ),
    "nascloud_relay_agent_registrations_total": ("Register messages from agents.", None),
    "nascloud_relay_ddns_updates_total": (
        "DDNS updates from agents: forwarded to ddnsd, refused (another device's names) or "
        "over the tunnel's limit.",
        "result",
    ),
    "nascloud_relay_browser_connections_total": (
        "Browsers' HTTPS connections: passed on to the NAS's agent, refused (no such name or "
        "device, no tunnel, a stream refused), over the device's limit, or no data connection "
        "from the agent in time.",
        "result",
    ),
    "nascloud_relay_browser_connections_refused_by_nas_total": (
        "Browser connections passed on that the agent then refused (it could not reach the "
        "NAS's service).",
        None,
    ),
    "nascloud_relay_ready_data_connections_used_total": (
        "Browser connections that took a data connection the agent kept ready.",
        None,
    ),
    "nascloud_relay_data_connections_refused_total": (
        "Agents' data connections with an unknown, late or missing token.",
        None,
    ),
    "nascloud_relay_http_responses_total": (
        "Answers to browsers' plain HTTP, by status code.",
        "code",
    ),
    "nascloud_relay_install_registrations_total": (
        "Install tunnels of uninitialised NAS: registered, or refused.",
        "result",
    ),
    "nascloud_relay_install_tunnels_closed_total": (
        "Install tunnels the relay closed: replaced by the same NAS's new one, or past their "
        "lifetime.",
        "reason",
    ),
    "nascloud_relay_install_rate_limited_total": (
        "Cloud-key attempts (lookups, registrations) refused by the rate limits.",
        None,
    ),
    "nascloud_relay_install_lookups_total": (
        "Cloud-key lookups on the install site: a NAS found, or none.",
        "result",
    ),
    "nascloud_relay_install_sessions_started_total": ("Install sessions started.", None),
    "nascloud_relay_install_sessions_stopped_total": ("Install sessions stopped.", None),
    "nascloud_relay_install_unknown_session_requests_total": (
        "Requests for an install session that does not exist (ended, or never was).",
        None,
    ),
    "nascloud_relay_install_tls_failures_total": (
        "Install-site TLS handshakes that failed or timed out.",
        None,
    ),
    "nascloud_relay_pairings_total": (
        "Pairing: codes given to NAS, NAS paired, codes expired, requests refused.",
        "event",
    ),
    "nascloud_relay_install_without_certificate_total": (
        "Install-site connections closed because relayd's own certificate is not issued yet.",
        None,
    ),
    "nascloud_relay_unnamed_events_total": (
        "Events counted under a key no counter is named for (a bug: should stay 0).",
        None,
    ),
}

# The parts' keys: (counter, label value or "").
EVENTS: Final[dict[str, tuple[str, str]]] = {
    "tunnel_up": ("nascloud_relay_tunnels_opened_total", ""),
    "tunnel_refused_limit": ("nascloud_relay_tunnels_refused_total", "address_limit"),
    "tunnel_refused": ("nascloud_relay_tunnels_refused_total", "handshake"),
    "tunnel_replaced": ("nascloud_relay_tunnels_closed_total", "replaced"),
    "tunnel_closed_deleted": ("nascloud_relay_tunnels_closed_total", "device_deleted"),
    "tunnel_closed_link_off": ("nascloud_relay_tunnels_closed_total", "link_off"),
    "tunnel_error": ("nascloud_relay_tunnel_errors_total", ""),
    "register": ("nascloud_relay_agent_registrations_total", ""),
    "ddns_forwarded": ("nascloud_relay_ddns_updates_total", "forwarded"),
    "ddns_refused": ("nascloud_relay_ddns_updates_total", "refused"),
    "ddns_rate_limited": ("nascloud_relay_ddns_updates_total", "rate_limited"),
    "https_connections": ("nascloud_relay_browser_connections_total", "passed"),
    "https_refused": ("nascloud_relay_browser_connections_total", "refused"),
    "https_refused_limit": ("nascloud_relay_browser_connections_total", "device_limit"),
    "https_no_data_connection": (
        "nascloud_relay_browser_connections_total",
        "no_data_connection",
    ),
    "https_refused_by_nas": ("nascloud_relay_browser_connections_refused_by_nas_total", ""),
    "https_ready_data_connection": ("nascloud_relay_ready_data_connections_used_total", ""),
    "data_connection_refused": ("nascloud_relay_data_connections_refused_total", ""),
    **{
        f"http_{code}": ("nascloud_relay_http_responses_total", str(code))
        for code in (308, 400, 404, 408, 431)  # every answer relayd/_http.py gives
    },
    "install_registered": ("nascloud_relay_install_registrations_total", "registered"),
    "install_refused": ("nascloud_relay_install_registrations_total", "refused"),
    "install_replaced": ("nascloud_relay_install_tunnels_closed_total", "replaced"),
    "install_expired": ("nascloud_relay_install_tunnels_closed_total", "expired"),
    "install_rate_limited": ("nascloud_relay_install_rate_limited_total", ""),
    "install_lookup_found": ("nascloud_relay_install_lookups_total", "found"),
    "install_lookup_missed": ("nascloud_relay_install_lookups_total", "missed"),
    "install_sessions": ("nascloud_relay_install_sessions_started_total", ""),
    "install_stopped": ("nascloud_relay_install_sessions_stopped_total", ""),
    "install_session_unknown": ("nascloud_relay_install_unknown_session_requests_total", ""),
    "install_tls_failed": ("nascloud_relay_install_tls_failures_total", ""),
    "install_no_certificate": ("nascloud_relay_install_without_certificate_total", ""),
    "pairing_codes": ("nascloud_relay_pairings_total", "code_given"),
    "paired": ("nascloud_relay_pairings_total", "paired"),
    "pairing_expired": ("nascloud_relay_pairings_total", "expired"),
    "pairing_refused": ("nascloud_relay_pairings_total", "refused"),
}
_BYTES: Final = ("bytes_from_browsers", "bytes_to_browsers")


def event_metrics(counts: Counter[str]) -> list[Metric]:
    """One counter per thing counted, with every label value it can take."""
    values: dict[str, dict[str, float]] = {name: {} for name in _COUNTERS}
    for name, word in EVENTS.values():
        values[name][word] = 0
    unnamed = 0
    for key, n in counts.items():
        if key in EVENTS:
            name, word = EVENTS[key]
            values[name][word] += n
        elif key not in _BYTES:
            unnamed += n
    values["nascloud_relay_unnamed_events_total"][""] = unnamed
    # relayd/_https.py counts a refusal by the NAS under both keys, in the same step (no await
    # between): one result per connection, and the difference never goes down.
    values["nascloud_relay_browser_connections_total"]["refused"] -= counts["https_refused_by_nas"]
    metrics = []
    for name, (help_text, label) in _COUNTERS.items():
        if label is None:
            metrics.append(Metric.single(name, "counter", help_text, values[name][""]))
        else:
            metrics.append(Metric.by(name, "counter", help_text, label, values[name]))
    return metrics


def relay_metrics(
    counts: Counter[str],
    agents: Agents,
    https: HttpsIngress,
    data: DataConnections | None,
    install: InstallSite | None,
) -> list[Metric]:
    pools = data.pools if data is not None else None
    return [
        Metric.single("nascloud_relay_tunnels", "gauge", "Agent tunnels up.", len(agents.tunnels)),
        Metric.single(
            "nascloud_relay_browser_connections",
            "gauge",
            "Browser connections open.",
            sum(https.active.values()),
        ),
        Metric.by(
            "nascloud_relay_bytes_total",
            "counter",
            "Passed-through bytes.",
            "direction",
            {
                "from_browsers": counts["bytes_from_browsers"],
                "to_browsers": counts["bytes_to_browsers"],
            },
        ),
        Metric.single(
            "nascloud_relay_ready_data_connections",
            "gauge",
            "Data connections agents keep ready for browsers to come.",
            pools.ready_count() if pools else 0,
        ),
        Metric.single(
            "nascloud_relay_install_tunnels",
            "gauge",
            "Install tunnels of uninitialised NAS up.",
            len(install.installs) if install else 0,
        ),
        Metric.single(
            "nascloud_relay_install_sessions",
            "gauge",
            "Relayed install sessions open.",
            len(install.sessions) if install else 0,
        ),
        https.connect_seconds.metric(),
        *event_metrics(counts),
    ]
