"""relayd's counters: each part's key feeds a counter named for what it counts, every label
value is a fixed word shown from the start, and no key is left out."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from httpapi import render
from relayd._metrics import EVENTS, event_metrics

RELAYD = Path(__file__).parents[2] / "relayd"


def test_every_key_the_parts_count_feeds_a_named_counter() -> None:
    keys = set()
    for source in RELAYD.glob("*.py"):
        keys |= set(re.findall(r'counts\["([a-z_]+)"\]', source.read_text()))
    assert keys - {"bytes_from_browsers", "bytes_to_browsers"} <= set(EVENTS)
    assert "https_connections" in keys and "tunnel_up" in keys  # the scan reads the sources
    # relayd/_http.py counts its answers by status: each one it can give has its label.
    http = (RELAYD / "_http.py").read_text()
    assert 'self.counts[f"http_{response.status}"]' in http
    statuses = set(re.findall(r"HttpResponse\(\s*(\d{3})", http)) | {"308"}
    assert {f"http_{s}" for s in statuses} <= set(EVENTS)


def test_counters_start_at_zero_and_sum_their_keys() -> None:
    text = render(event_metrics(Counter())).decode()
    assert 'nascloud_relay_browser_connections_total{result="passed"} 0' in text
    assert 'nascloud_relay_http_responses_total{code="431"} 0' in text
    assert "nascloud_relay_unnamed_events_total 0" in text
    counts = Counter(
        https_connections=3, https_refused=2, tunnel_up=1234567, http_308=5, bytes_to_browsers=9
    )
    lines = render(event_metrics(counts)).decode().splitlines()
    assert 'nascloud_relay_browser_connections_total{result="passed"} 3' in lines
    assert 'nascloud_relay_browser_connections_total{result="refused"} 2' in lines
    assert "nascloud_relay_tunnels_opened_total 1234567" in lines
    assert 'nascloud_relay_http_responses_total{code="308"} 5' in lines
    assert "nascloud_relay_unnamed_events_total 0" in lines  # bytes have their own counter
    assert not any(line.startswith("nascloud_relay_events_total") for line in lines)


def test_a_refusal_by_the_nas_is_one_result_of_a_connection_passed_on() -> None:
    counts = Counter(https_connections=4, https_refused=3, https_refused_by_nas=2)
    lines = render(event_metrics(counts)).decode().splitlines()
    assert 'nascloud_relay_browser_connections_total{result="passed"} 4' in lines
    assert 'nascloud_relay_browser_connections_total{result="refused"} 1' in lines
    assert "nascloud_relay_browser_connections_refused_by_nas_total 2" in lines


def test_a_key_no_counter_is_named_for_is_not_lost() -> None:
    lines = render(event_metrics(Counter(something_new=2))).decode().splitlines()
    assert "nascloud_relay_unnamed_events_total 2" in lines
    assert not any("something_new" in line for line in lines)


def test_each_counter_is_described_once() -> None:
    text = render(event_metrics(Counter())).decode()
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(names) == len(set(names))
    assert all(n.endswith("_total") for n in names)
    assert {name for name, _ in EVENTS.values()} <= set(names)
