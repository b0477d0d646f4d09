"""Reconnect backoff: exponential, full jitter, capped, reset after a connection was up."""

from __future__ import annotations

import random

import pytest

from tunnel import Backoff


class _Top(random.Random):
    """Always the top of the range: the ceilings themselves."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_ceilings_double_from_twice_the_base_up_to_the_cap() -> None:
    backoff = Backoff(0.5, 10.0, random=_Top())
    assert [backoff.next_delay() for _ in range(7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert backoff.failures == 7


def test_reset_starts_afresh() -> None:
    backoff = Backoff(0.5, 10.0, random=_Top())
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.failures == 0
    assert backoff.next_delay() == 1.0


def test_full_jitter_draws_from_zero_to_the_ceiling() -> None:
    seeded = Backoff(1.0, 60.0, random=random.Random(7))
    expected = random.Random(7)
    for n in range(1, 12):
        assert seeded.next_delay() == expected.uniform(0, min(60.0, 2.0**n))


def test_many_failures_stay_at_the_cap_without_overflow() -> None:
    backoff = Backoff(0.01, 3600.0, random=_Top())
    for _ in range(5000):
        delay = backoff.next_delay()
    assert delay == 3600.0


def test_a_base_above_the_cap_waits_the_cap() -> None:
    assert Backoff(60.0, 0.1, random=_Top()).next_delay() == 0.1


def test_bounds_apply_from_the_next_delay_after_a_change() -> None:
    backoff = Backoff(1.0, 60.0, random=_Top())
    backoff.next_delay()
    backoff.cap_s = 3.0
    assert backoff.next_delay() == 3.0


@pytest.mark.parametrize(("base_s", "cap_s"), [(0.0, 1.0), (1.0, 0.0), (-1.0, 1.0)])
def test_delays_must_be_positive(base_s: float, cap_s: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        Backoff(base_s, cap_s, random=random.Random())
