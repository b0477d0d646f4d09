"""RFC 1982 serial arithmetic, in both directions and across the wrap."""

from __future__ import annotations

import pytest

from ddnsd._zone import serial_after, serial_newer

TOP = 2**32 - 1


@pytest.mark.parametrize(("serial", "after"), [(1, 2), (TOP - 1, TOP), (TOP, 1), (0, 1)])
def test_serial_after_steps_and_skips_zero(serial: int, after: int) -> None:
    assert serial_after(serial) == after
    assert serial_newer(after, serial)
    assert not serial_newer(serial, after)


@pytest.mark.parametrize(
    ("serial", "than", "newer"),
    [
        (5, 5, False),
        (6, 5, True),
        (5, 6, False),
        (1, TOP, True),  # across the wrap
        (2**31 - 1, 0, True),
        (2**31, 0, False),  # exactly half-way round is not after (RFC 1982 3.2: undefined)
        (0, 2**31 + 1, True),
    ],
)
def test_serial_newer(serial: int, than: int, newer: bool) -> None:
    assert serial_newer(serial, than) is newer
