"""The shared sliding window: both ways of treating a refusal, and bounded memory."""

from __future__ import annotations

import pytest

from service import SlidingWindow

# (count_refused, attempt times, expected answers): a limit of 2 per 60 s.
CASES = [
    (True, [0, 0, 0], [True, True, False]),
    (False, [0, 0, 0], [True, True, False]),
    # Refusals count: one who keeps trying stays limited after the first events expire.
    (True, [0, 0, 30, 59, 60, 61], [True, True, False, False, False, False]),
    # Refusals do not count: the first two expire at 60 and the key gets two more.
    (False, [0, 0, 30, 59, 60, 61, 62], [True, True, False, False, True, True, False]),
]


@pytest.mark.parametrize(("count_refused", "times", "expected"), CASES)
def test_sliding_window_answers(
    count_refused: bool, times: list[float], expected: list[bool]
) -> None:
    now = [0.0]
    window = SlidingWindow(2, 60.0, count_refused=count_refused, clock=lambda: now[0])
    answers = []
    for t in times:
        now[0] = t
        answers.append(window.allow("k"))
    assert answers == expected


@pytest.mark.parametrize("count_refused", [True, False])
def test_sliding_window_keeps_keys_apart_and_bounded(count_refused: bool) -> None:
    now = [0.0]
    window = SlidingWindow(1, 60.0, max_keys=2, count_refused=count_refused, clock=lambda: now[0])
    assert [window.allow("a"), window.allow("a"), window.allow("b")] == [True, False, True]
    for _ in range(1000):
        window.allow("a")
    assert all(len(events) <= 2 for events in window._events.values())
    now[0] = 61.0
    assert window.allow("c")  # idle keys are forgotten to make room
    assert set(window._events) == {"c"}
