"""Fixtures shared by the registry's unit tests: a settable clock, and a registry using it on
each engine (a SQLite file, and a new database of the session's PostgreSQL server)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from registry import Registry
from tests.database import database_bytes
from tests.postgres import PostgresServer

NOW = 1_800_000_000.0  # 2027-01-15


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path | str]:
    """Where the registry is: a SQLite file, or a PostgreSQL database made for this test."""
    if request.param == "sqlite":
        yield tmp_path / "registry.sqlite3"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.create_database()
    yield url
    server.drop_database(url)


@pytest.fixture
def registry_bytes(
    request: pytest.FixtureRequest, registry_location: Path | str
) -> Callable[[], bytes]:
    """The bytes of every file the registry's data is in, as they are now (what an erasure
    proof greps)."""
    if isinstance(registry_location, Path):
        return lambda: database_bytes(registry_location)
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return lambda: server.database_bytes(str(registry_location))


@pytest.fixture
async def registry(registry_location: Path | str, clock: Clock) -> AsyncIterator[Registry]:
    opened = Registry.open(registry_location, clock=clock)
    yield opened
    await opened.aclose()
