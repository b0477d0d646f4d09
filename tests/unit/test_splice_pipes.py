"""The splicer's pipes when making them fails part-way (EMFILE): none of them stays open."""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Callable
from typing import Any

import pytest
import trio

from tests.integration.test_splice import connected_pair
from tunnel import _splice


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _failing_on(call: int, real: Callable[..., Any]) -> Callable[..., Any]:
    calls = 0

    def fake(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == call:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return real(*args)

    return fake


# A pair makes two pipes; each pipe takes two fcntl calls: setting its size (whose failure
# is harmless) and reading the size back (calls 2 and 4, whose failure ends the pair).
@pytest.mark.parametrize(("name", "call"), [("pipe", 2), ("fcntl", 2), ("fcntl", 4)])
def test_a_pair_that_cannot_get_its_pipes_leaves_none_open(
    monkeypatch: pytest.MonkeyPatch, name: str, call: int
) -> None:
    real = os.pipe if name == "pipe" else fcntl.fcntl
    module: Any = os if name == "pipe" else fcntl  # the very modules _splice calls
    before = _open_fds()
    monkeypatch.setattr(module, name, _failing_on(call, real))
    with pytest.raises(OSError) as caught:
        _splice._Pair(0, 1, lambda _: None)
    monkeypatch.undo()
    assert caught.value.errno == errno.EMFILE
    assert _open_fds() == before


async def test_a_splicer_that_cannot_start_leaks_nothing_and_starts_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    splicer = _splice.Splicer()
    (a, far_a), (b, far_b) = await connected_pair(), await connected_pair()
    before = _open_fds()
    monkeypatch.setattr(os, "eventfd", _failing_on(1, os.eventfd))
    with pytest.raises(OSError) as caught:
        await splicer.join(a, b)
    monkeypatch.undo()
    assert caught.value.errno == errno.EMFILE
    assert _open_fds() == before
    # Not left half-started: the next join starts the thread and moves bytes.
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(splicer.join, a, b)
            await far_a.send(b"ping")
            assert await far_b.recv(4) == b"ping"
            far_a.shutdown(2)
            far_b.shutdown(2)
    for sock in (a, b, far_a, far_b):
        sock.close()
