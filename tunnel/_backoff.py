"""Reconnect delays: exponential backoff with full jitter, capped (the AWS architecture blog).

Shared by everything that keeps a tunnel up as a client. Randomness is passed in; knows nothing
of tunnels, clocks or sleeping.
"""

from __future__ import annotations

import random as _random

__all__ = ["Backoff"]


class Backoff:
    """The delay before each reconnect: the n-th failure in a row waits a time drawn uniformly
    from [0, min(cap_s, base_s * 2**n)], so the first waits up to 2 * base_s.

    `base_s` and `cap_s` may be changed between delays (a configuration reload); `reset` after
    a connection that was up starts the sequence afresh.
    """

    def __init__(self, base_s: float, cap_s: float, *, random: _random.Random) -> None:
        if base_s <= 0 or cap_s <= 0:
            raise ValueError(f"delays must be positive, got base_s={base_s}, cap_s={cap_s}")
        self.base_s = base_s
        self.cap_s = cap_s
        self._random = random
        self._failures = 0

    @property
    def failures(self) -> int:
        """Delays handed out since the last reset: the failures in a row."""
        return self._failures

    def next_delay(self) -> float:
        """One more failure: the seconds to wait before the next attempt."""
        self._failures += 1
        # The exponent stops growing long after any ceiling is reached: no float overflow.
        ceiling = min(self.cap_s, self.base_s * 2.0 ** min(self._failures, 64))
        return self._random.uniform(0, ceiling)

    def reset(self) -> None:
        """The connection was up: the next failure is the first again."""
        self._failures = 0
