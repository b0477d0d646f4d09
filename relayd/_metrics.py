"""relayd's metrics: counters and gauges only, labelled with fixed words (privacy rule 8)."""

from __future__ import annotations

from collections import Counter

from httpapi import Metric

from ._agents import Agents
from ._data import DataConnections
from ._https import HttpsIngress
from ._install import InstallSite

__all__ = ["relay_metrics"]


def relay_metrics(
    counts: Counter[str],
    agents: Agents,
    https: HttpsIngress,
    data: DataConnections | None,
    install: InstallSite | None,
) -> list[Metric]:
    events = {k: float(v) for k, v in counts.items() if not k.startswith("bytes_")}
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
        Metric.by("nascloud_relay_events_total", "counter", "Events by kind.", "event", events),
    ]
