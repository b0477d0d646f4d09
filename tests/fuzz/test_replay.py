"""Replay every fuzz corpus and every crash reproducer through its target, without atheris.

Each file under corpus/<target>/ and crashes/<target>/ must pass `fuzz_<target>.one_input`:
the corpus is what fuzzing reached, the crashes are what it found and we fixed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import pytest

HERE = Path(__file__).parent
TARGETS = sorted(p.stem.removeprefix("fuzz_") for p in HERE.glob("fuzz_*.py"))


def _inputs(target: str) -> list[Path]:
    return sorted(
        path
        for kind in ("corpus", "crashes")
        for path in (HERE / kind / target).glob("*")
        if path.is_file() and path.name != "README.md"
    )


def test_every_target_has_a_corpus() -> None:
    assert TARGETS
    for target in TARGETS:
        assert (HERE / "corpus" / target).is_dir(), target


@pytest.mark.parametrize("target", TARGETS)
def test_replay(target: str) -> None:
    module = importlib.import_module(f"tests.fuzz.fuzz_{target}")
    one_input: Callable[[bytes], None] = module.one_input
    for path in _inputs(target):
        try:
            one_input(path.read_bytes())
        except BaseException as exc:
            raise AssertionError(f"{path.relative_to(HERE)}: {exc!r}") from exc
