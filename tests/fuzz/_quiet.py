"""Holding a logger's records for the length of one input, for targets whose contract is
about what the code logs (an unexpected exception is logged, not raised)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def captured(name: str) -> Iterator[list[logging.LogRecord]]:
    """The records `name` logs inside the block, which go nowhere else meanwhile."""
    logger = logging.getLogger(name)
    keep = _Keep()
    propagate, level = logger.propagate, logger.level
    logger.addHandler(keep)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        yield keep.records
    finally:
        logger.removeHandler(keep)
        logger.propagate, logger.level = propagate, level


def unexpected(records: list[logging.LogRecord]) -> list[str]:
    """The records that carry an exception: each one is a bug the handler swallowed."""
    return [f"{r.getMessage()}: {r.exc_info[1]!r}" for r in records if r.exc_info]
