"""Reconnect backoff: exponential, full jitter, capped, reset after a connection was up."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import trio
import trio.testing

from config import AgentConfig, HostPort, loads
from nasagent._agent import RelayClient
from tunnel import Backoff


class _Top(random.Random):
    """Always the top of the range: the ceilings themselves."""

    def uniform(self, a: float, b: float) -> float:
        return b


class _Recording(random.Random):
    """Records every range asked for and answers a fixed fraction of it."""

    def __init__(self, fraction: float = 0.5) -> None:
        super().__init__(0)
        self.fraction = fraction
        self.ranges: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.ranges.append((a, b))
        return a + (b - a) * self.fraction


def test_each_delay_is_drawn_from_zero_to_the_capped_ceiling() -> None:
    rng = _Recording(0.25)
    backoff = Backoff(0.5, 10.0, random=rng)
    delays = [backoff.next_delay() for _ in range(8)]
    ceilings = [min(10.0, 0.5 * 2**n) for n in range(1, 9)]
    assert rng.ranges == [(0, ceiling) for ceiling in ceilings]
    assert delays == [ceiling * 0.25 for ceiling in ceilings]


def test_seeded_delays_stay_between_zero_and_the_cap() -> None:
    backoff = Backoff(0.3, 5.0, random=random.Random(1234))
    delays = [backoff.next_delay() for _ in range(2000)]
    assert all(0 <= delay <= 5.0 for delay in delays)
    # Jitter, not a fixed ladder: late delays spread over the whole range below the cap.
    late = delays[100:]
    assert min(late) < 1.0 and max(late) > 4.0
    assert len(set(late)) == len(late)


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


class _Flaky(RelayClient):
    """A client whose sessions go as `outcomes` say: "down" (the relay is unreachable), "up"
    (a tunnel came up, then closed), and at the end "stop"."""

    def __init__(self, config: AgentConfig, rng: random.Random, outcomes: list[str]) -> None:
        super().__init__(config, rng)
        self.outcomes = outcomes
        self.sleeps: list[float] = []  # how long each wait between sessions was
        self._last = trio.current_time()

    async def _session(self, address: HostPort) -> bool:
        self.sleeps.append(trio.current_time() - self._last)
        outcome = self.outcomes.pop(0)
        self._last = trio.current_time()
        if outcome == "down":
            raise ConnectionRefusedError("relay unreachable")
        return outcome == "stop"


async def test_the_agent_backs_off_and_starts_afresh_after_a_tunnel_was_up(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    (tmp_path / "ca.pem").write_text("")
    config = loads(
        AgentConfig,
        """
        [agent]
        device_name = "nas1"
        key_file = "nas1.key"
        state_dir = "agent"
        [relay]
        addresses = ["127.0.0.1:1"]
        server_name = "relay.test"
        ca_file = "ca.pem"
        [services]
        web = "127.0.0.1:2"
        [reconnect]
        initial_delay_s = 1
        max_delay_s = 5
        """,
        "agent.toml",
        tmp_path,
    )
    rng = _Recording(1.0)  # the top of each range: the ceilings
    client = _Flaky(config, rng, ["down", "down", "down", "down", "up", "down", "up", "stop"])
    with trio.fail_after(600):
        await client.run()
    # 2, 4, then the cap of 5 (twice); up: afresh from 2, down: 4; up again: 2.
    assert [b for _, b in rng.ranges] == [2, 4, 5, 5, 2, 4, 2]
    assert all(a == 0 for a, _ in rng.ranges)
    assert client.sleeps[1:] == pytest.approx([2, 4, 5, 5, 2, 4, 2])
