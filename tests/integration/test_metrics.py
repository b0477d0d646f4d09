"""Metrics are counters, gauges and histograms only: they move with traffic and name no one
(privacy rule 8)."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import dns.message
import dns.query

from tests.ddnsd_harness import running_ddnsd

from .ddnsd_updates import http_update
from .test_link import LINK_ZONE, Link, link

__all__ = ["link"]

IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
IPV6 = re.compile(r"\b[0-9a-f]{1,4}(?::[0-9a-f]{0,4}){2,7}\b", re.I)


def scrape(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return str(response.read().decode())


def value(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no {line_start} in:\n{text}")


def assert_names_no_one(text: str, *names: str) -> None:
    samples = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    assert not IPV4.search(samples), samples
    assert not IPV6.search(samples), samples
    assert "@" not in samples
    for name in names:
        assert name not in samples, name
    for line in text.splitlines():
        if line.startswith("# TYPE"):
            assert line.split()[-1] in ("counter", "gauge", "histogram")


def test_ddnsd_metrics(tmp_path: Path) -> None:
    with running_ddnsd(tmp_path) as daemon:
        assert http_update(daemon, "nas1", "198.51.100.9") == "good 198.51.100.9"
        for name in ("nas1.dyn.test", "nosuch.dyn.test", "example.com"):
            dns.query.udp(
                dns.message.make_query(name, "A"), "127.0.0.1", port=daemon.dns_port, timeout=5
            )
        text = scrape(daemon.metrics)
        assert value(text, "nascloud_dns_queries_total") >= 3
        assert value(text, 'nascloud_dns_responses_total{rcode="nxdomain"}') >= 1
        assert value(text, 'nascloud_dns_responses_total{rcode="refused"}') >= 1
        assert value(text, 'nascloud_ddns_updates_total{outcome="dyndns2_good"}') == 1
        assert value(text, "nascloud_dns_devices") == 2
        assert value(text, "process_resident_memory_bytes") > 1 << 20
        assert value(text, 'nascloud_dns_notify_total{event="sent"}') == 0  # no secondary listed
        assert "# TYPE nascloud_dns_transfers_total counter" in text
        assert value(text, "nascloud_dns_answer_seconds_count") >= 3  # the three queries
        assert_names_no_one(text, "nas1", "nas2", "dyn.test", daemon.tokens["nas1"])
        with urllib.request.urlopen(f"http://{daemon.metrics}/healthz", timeout=10) as r:
            assert (r.status, r.read()) == (200, b"serving\n")
        # Its own addresses are logged as they are; clients' stay masked.
        assert f"127.0.0.1:{daemon.dns_port}" in daemon.log()


def test_relay_metrics(link: Link) -> None:
    assert link.curl(f"https://nas1.{LINK_ZONE}:{link.https_port}/").returncode == 0
    listening = json.loads((link.directory / "relay-state" / "listening.json").read_text())
    text = scrape(listening["metrics"][0])
    assert value(text, "nascloud_relay_tunnels") == 2
    assert value(text, 'nascloud_relay_bytes_total{direction="to_browsers"}') > 0
    assert value(text, 'nascloud_relay_browser_connections_total{result="passed"}') >= 1
    assert value(text, "nascloud_relay_tunnels_opened_total") == 2
    assert value(text, 'nascloud_relay_tunnels_refused_total{reason="handshake"}') == 0
    assert value(text, "nascloud_relay_unnamed_events_total") == 0
    assert "nascloud_relay_events_total" not in text
    # The browser connection's latency, from the accept to its ClientHello at the NAS's side.
    assert value(text, "nascloud_relay_browser_connect_seconds_count") == value(
        text, 'nascloud_relay_browser_connections_total{result="passed"}'
    )
    assert value(text, 'nascloud_relay_browser_connect_seconds_bucket{le="+Inf"}') == value(
        text, "nascloud_relay_browser_connect_seconds_count"
    )
    assert 0 < value(text, "nascloud_relay_browser_connect_seconds_sum") < 10
    assert value(text, "process_open_fds") > 5
    assert_names_no_one(text, "nas1", "nas2", LINK_ZONE)
    with urllib.request.urlopen(f"http://{listening['metrics'][0]}/healthz", timeout=10) as r:
        assert (r.status, r.read()) == (200, b"serving\n")
    # The relay's own addresses are logged as they are (only others' are personal data).
    log = (link.directory / "relayd.log").read_text()
    assert f"'https': ['127.0.0.1:{link.https_port}']" in log
