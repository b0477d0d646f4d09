"""The metrics text: exact values, histograms, the standard process metrics, and /healthz."""

from __future__ import annotations

import math
import os
import resource
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from httpapi import (
    LATENCY_BUCKETS_S,
    Histogram,
    HttpRequest,
    Metric,
    metrics_handler,
    process_metrics,
    render,
)


def sample(text: bytes, name: str) -> str:
    [line] = [line for line in text.decode().splitlines() if line.split(" ")[0] == name]
    return line.split(" ", 1)[1]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (1234567, "1234567"),  # `:g` made this 1.23457e+06
        (2**40 + 1, "1099511627777"),
        (1234567.0, "1234567"),
        (0.5, "0.5"),
        (1e-7, "1e-07"),
        (0.1 + 0.2, "0.30000000000000004"),
        (float("inf"), "+Inf"),
        (float("nan"), "NaN"),
        (True, "1"),
    ],
)
def test_values_are_written_exactly(value: float, shown: str) -> None:
    text = render([Metric.single("nascloud_x", "counter", "X.", value)])
    assert sample(text, "nascloud_x") == shown
    if shown not in ("NaN", "+Inf"):
        assert float(shown) == value


def test_process_metrics_describe_this_process() -> None:
    before = time.time()
    text = render(process_metrics())
    assert int(sample(text, "process_resident_memory_bytes")) > 1 << 20
    assert int(sample(text, "process_virtual_memory_bytes")) > int(
        sample(text, "process_resident_memory_bytes")
    )
    fds = int(sample(text, "process_open_fds"))
    assert abs(fds - len(os.listdir("/proc/self/fd"))) <= 2
    assert int(sample(text, "process_max_fds")) == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    cpu = float(sample(text, "process_cpu_seconds_total"))
    assert 0 < cpu <= time.process_time() + 0.1
    started = float(sample(text, "process_start_time_seconds"))
    assert before - 24 * 3600 < started <= before + 1  # this test process started today


async def test_healthz_follows_the_daemons_state() -> None:
    state = "starting"
    handle = metrics_handler(list, lambda: state)

    async def get(target: str) -> tuple[int, bytes]:
        response = await handle(HttpRequest("GET", target, {}, b"", "127.0.0.1"))
        return response.status, response.body

    assert await get("/healthz") == (503, b"starting\n")
    state = "serving"
    assert await get("/healthz") == (200, b"serving\n")
    state = "draining"
    assert await get("/healthz") == (503, b"draining\n")
    status, body = await get("/metrics")
    assert status == 200 and b"process_open_fds " in body
    assert (await get("/other"))[0] == 404


def test_a_histogram_is_written_as_prometheus_reads_it() -> None:
    latency = Histogram("nascloud_x_seconds", "X latency.", (0.5, 1))
    for seconds in (0.25, 0.5, 0.75, 3.0):  # 0.5 is on a bound: it counts as le="0.5"
        latency.observe(seconds)
    assert render([latency.metric()]).decode() == (
        "# HELP nascloud_x_seconds X latency.\n"
        "# TYPE nascloud_x_seconds histogram\n"
        'nascloud_x_seconds_bucket{le="0.5"} 2\n'
        'nascloud_x_seconds_bucket{le="1.0"} 3\n'
        'nascloud_x_seconds_bucket{le="+Inf"} 4\n'
        "nascloud_x_seconds_sum 4.5\n"
        "nascloud_x_seconds_count 4\n"
    )


def test_a_labelled_histogram_shows_every_series_from_the_start() -> None:
    latency = Histogram("nascloud_y_seconds", "Y.", (0.001,), label=("path", ("ready", "opened")))
    latency.observe(0.0001, "ready")
    text = render([latency.metric(), Metric.single("nascloud_z", "gauge", "Z.", 1)]).decode()
    assert text.splitlines()[2:] == [
        'nascloud_y_seconds_bucket{path="opened",le="0.001"} 0',
        'nascloud_y_seconds_bucket{path="opened",le="+Inf"} 0',
        'nascloud_y_seconds_sum{path="opened"} 0',
        'nascloud_y_seconds_count{path="opened"} 0',
        'nascloud_y_seconds_bucket{path="ready",le="0.001"} 1',
        'nascloud_y_seconds_bucket{path="ready",le="+Inf"} 1',
        'nascloud_y_seconds_sum{path="ready"} 0.0001',
        'nascloud_y_seconds_count{path="ready"} 1',
        "# HELP nascloud_z Z.",
        "# TYPE nascloud_z gauge",
        "nascloud_z 1",
    ]
    with pytest.raises(KeyError):
        latency.observe(0.1, "someone@example.net")  # only the words given at creation


@pytest.mark.parametrize(
    ("bounds", "label"),
    [
        ((), None),
        ((1.0, 1.0), None),
        ((2.0, 1.0), None),
        ((1.0, float("inf")), None),
        ((1.0,), ("le", ("a",))),
        ((1.0,), ("path", ())),
        ((1.0,), ("path", ("192.0.2.1:443",))),
    ],
)
def test_a_histogram_refuses_what_prometheus_could_not_read(
    bounds: tuple[float, ...], label: tuple[str, tuple[str, ...]] | None
) -> None:
    with pytest.raises(ValueError, match="nascloud_h"):
        Histogram("nascloud_h", "H.", bounds, label)


def parse_histogram(text: str, name: str) -> tuple[list[tuple[float, int]], float, int]:
    """Buckets (le, cumulative count), sum and count of one unlabelled histogram, read back
    from the exposition by the format's rules rather than by its exact text."""
    buckets: list[tuple[float, int]] = []
    total = count = None
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        if series.startswith(f'{name}_bucket{{le="'):
            buckets.append((float(series.split('"')[1]), int(value)))
        elif series == f"{name}_sum":
            total = float(value)
        elif series == f"{name}_count":
            count = int(value)
    assert total is not None and count is not None
    return buckets, total, count


@given(
    st.lists(
        st.floats(min_value=0, max_value=20, allow_nan=False) | st.sampled_from(LATENCY_BUCKETS_S),
        max_size=200,
    )
)
def test_buckets_count_each_observation_at_or_below_their_bound(values: list[float]) -> None:
    latency = Histogram("nascloud_h_seconds", "H.")
    for v in values:
        latency.observe(v)
    buckets, total, count = parse_histogram(
        render([latency.metric()]).decode(), "nascloud_h_seconds"
    )
    assert [le for le, _ in buckets] == [*LATENCY_BUCKETS_S, math.inf]
    for le, cumulative in buckets:
        assert cumulative == sum(1 for v in values if v <= le)
    assert count == len(values) == latency.count()
    assert total == pytest.approx(math.fsum(values))
