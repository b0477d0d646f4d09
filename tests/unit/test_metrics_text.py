"""The metrics text: exact values, the standard process metrics, and /healthz."""

from __future__ import annotations

import os
import resource
import time

import pytest

from httpapi import HttpRequest, Metric, metrics_handler, process_metrics, render


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
