"""Fixtures shared by the registry's unit tests: a settable clock and a registry using it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from registry import Registry

NOW = 1_800_000_000.0  # 2027-01-15


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def registry(tmp_path: Path, clock: Clock) -> AsyncIterator[Registry]:
    opened = Registry.open_sqlite(tmp_path / "registry.sqlite3", clock=clock)
    yield opened
    await opened.aclose()
