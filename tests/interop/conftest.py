"""Interop tests drive ddnsd with real programs from Debian (dig, nsupdate, ddclient, ...)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ddnsd_harness import Ddnsd, running_ddnsd


def require(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:  # `make test` installs them; running pytest alone may not have
        pytest.fail(f"missing programs {missing}: run `make test`, which installs them")


@pytest.fixture
def ddnsd(tmp_path: Path) -> Iterator[Ddnsd]:
    with running_ddnsd(tmp_path) as daemon:
        yield daemon
