"""The wall clock steps forward and back: no install window grows, no access-log key is
destroyed early, made again or made for a month to come, and retention keeps its length.
Lifetimes run on monotonic clocks; the wall clock only dates records."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

import protocol
from registry import (
    AccessLogKeys,
    AccessLogWriter,
    AccessRecord,
    Registry,
    month_of,
    steady_clock,
)

from .conftest import NOW, Clock
from .test_install import CLOUD_KEY, install_tunnel, make_site, register, rows

DAY = 86400.0


class Monotonic:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


async def _months(registry: Registry, keys: AccessLogKeys) -> list[str]:
    return [
        month_of(r.started_at)
        for r in await registry.read_access(keys)
        if isinstance(r, AccessRecord)
    ]


@pytest.mark.parametrize("step_days", [400, 20])  # past the retention; into next month
async def test_a_step_forward_destroys_no_key_and_opens_no_month_to_come(
    registry: Registry, tmp_path: Path, clock: Clock, step_days: int
) -> None:
    keys = AccessLogKeys(tmp_path / "keys.json")
    monotonic = Monotonic()
    writer = AccessLogWriter(registry, keys, 180, clock=clock, monotonic=monotonic)
    writer.add(NOW - 60, "nas1", "203.0.113.5", "https", 10, 20, "ok")
    await writer.flush()
    before = keys.months()
    clock.now += step_days * DAY  # NTP gone wrong, or an operator's typo
    monotonic.now += 60
    await writer.purge()
    assert keys.months() == before and keys.destroyed_through is None
    writer.add(clock(), "nas1", "203.0.113.6", "https", 10, 20, "ok")  # read after the step
    await writer.flush()
    assert keys.months() == before, "a key for a month to come"
    assert await _months(registry, keys) == [month_of(NOW), month_of(NOW)]
    assert writer.written == 2 and writer.dropped == 0


async def test_a_step_back_makes_no_destroyed_key_again_and_delays_no_purge(
    registry: Registry, tmp_path: Path, clock: Clock
) -> None:
    keys = AccessLogKeys(tmp_path / "keys.json")
    old = NOW - 200 * DAY
    await registry.log_access(
        [AccessRecord(old, old + 5, "nas1", "203.0.113.1", "https", 1, 1, "ok")], keys
    )
    monotonic = Monotonic()
    writer = AccessLogWriter(registry, keys, 180, clock=clock, monotonic=monotonic)
    await writer.purge()
    assert month_of(old) not in keys.months() and keys.destroyed_through == month_of(old)
    recent = NOW - 179 * DAY
    await registry.log_access(
        [AccessRecord(recent, recent + 5, "nas1", "203.0.113.2", "https", 1, 1, "ok")], keys
    )
    clock.now -= 200 * DAY  # back into the destroyed month (a dead RTC battery, say)
    writer.add(clock(), "nas1", "203.0.113.3", "https", 10, 20, "ok")
    await writer.flush()
    assert month_of(old) not in keys.months(), "a destroyed key made again"
    assert writer.dropped == 1 and writer.written == 0
    again = AccessLogKeys(tmp_path / "keys.json")  # after a restart, too
    assert again.destroyed(month_of(old))
    with pytest.raises(Exception, match="destroyed"):
        again.for_writing(month_of(old))
    # Two days pass for real: the record 179 days old is past retention, whatever the wall
    # clock says.
    monotonic.now += 2 * DAY
    await writer.purge()
    assert await _months(registry, keys) == []


@pytest.mark.parametrize("steady", [False, True], ids=["wall clock", "steady clock"])
@pytest.mark.parametrize("step_s", [-12 * 3600, -30 * DAY, 12 * 3600], ids=["-12h", "-30d", "+12h"])
async def test_a_step_neither_lengthens_nor_shortens_an_install_window(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, step_s: float, steady: bool
) -> None:
    """The relay's install window is trio's clock (monotonic); the registration's row goes
    with the tunnel. Dated by the wall clock, the row reads as expired early after a step
    forward; dated by `steady_clock`, lookups find it to the end."""
    autojump_clock.autojump_threshold = 0.05  # the registry works in a thread: let it finish
    wall = Clock()
    wall.now = NOW - trio.current_time()  # the wall clock runs with trio's, stepped below

    def walltime() -> float:
        return wall.now + trio.current_time()

    clock = steady_clock(walltime, trio.current_time) if steady else walltime
    registry = Registry.open_sqlite(tmp_path / "registry.sqlite3", clock=clock)
    site = make_site(tmp_path, registry)
    async with install_tunnel(site, "198.51.100.7") as tunnel:
        await tunnel.send_message(register())
        assert isinstance(await tunnel.receive_message(), protocol.Ack)
        started = trio.current_time()
        await trio.sleep(3600)
        wall.now += step_s
        await trio.sleep(86400 - 3600 - 1)
        assert not tunnel.closed  # a step forward does not end it early either
        if step_s < 0 or steady:
            assert await registry.find_install(CLOUD_KEY) is not None
        await tunnel.wait_closed()
        assert trio.current_time() - started == pytest.approx(86400, abs=1)
        assert tunnel.goaway is not None
        assert tunnel.goaway.error_code == protocol.ErrorCode.INSTALL_ENDED
    assert await registry.find_install(CLOUD_KEY) is None
    assert site.installs == {}
    await registry.aclose()
    assert rows(tmp_path / "registry.sqlite3") == 0
