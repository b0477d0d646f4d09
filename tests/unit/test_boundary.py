"""service.Boundary: every failure counted, its log within a budget, the next unit unharmed."""

from __future__ import annotations

import logging

import pytest

from service import Boundary


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_every_failure_counts_and_the_log_keeps_its_budget(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = _Clock()
    boundary = Boundary(clock=clock)
    with caplog.at_level(logging.WARNING, logger="nascloud.boundary"):
        for _ in range(25):
            with boundary.contain("dns_udp"):
                raise ValueError("a bug")
        clock.now += 1.0
        with boundary.contain("dyndns2"):
            raise KeyError("another")
    assert boundary.errors == {"dns_udp": 25, "dyndns2": 1}
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 11  # ten in the first second, one in the next
    assert all(r.exc_info is not None for r in errors)
    assert any("15 more failed units of work" in r.getMessage() for r in caplog.records)
    metric = boundary.metric()
    assert metric.name == "nascloud_handler_errors_total"
    assert metric.values == {(("unit", "dns_udp"),): 25.0, (("unit", "dyndns2"),): 1.0}


def test_cancellation_is_not_a_failure() -> None:
    boundary = Boundary()
    with pytest.raises(KeyboardInterrupt), boundary.contain("reload"):
        raise KeyboardInterrupt
    assert not boundary.errors
