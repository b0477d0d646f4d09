"""relayd's ready data connections: issued tokens are good once and for their device only, a
connection the agent closed is never handed out, and idle devices hold none (SPEC.md 7.3.1)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from relayd._pool import DataPools


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pairs() -> Iterator[list[socket.socket]]:
    made: list[socket.socket] = []
    yield made
    for sock in made:
        sock.close()


def pair(made: list[socket.socket]) -> tuple[socket.socket, socket.socket]:
    """(the relay's end, the agent's end)"""
    relay_end, agent_end = socket.socketpair()
    made += [relay_end, agent_end]
    return relay_end, agent_end


def test_the_first_browser_connection_asks_for_a_full_pool_and_gets_none(
    pairs: list[socket.socket],
) -> None:
    pools = DataPools(3, idle_s=60, token_timeout_s=10, clock=Clock())
    tunnel = object()
    ready, _, tokens = pools.want("nas1", tunnel)
    assert ready is None
    assert len(tokens) == 3 and len(set(tokens)) == 3
    assert all(len(t) == 16 for t in tokens)
    # Asked again before the agent answered: nothing more is asked for.
    assert pools.want("nas1", tunnel)[2] == []


def test_a_ready_connection_is_handed_out_once_and_replaced(pairs: list[socket.socket]) -> None:
    pools = DataPools(2, idle_s=60, token_timeout_s=10, clock=Clock())
    tunnel = object()
    _, _, tokens = pools.want("nas1", tunnel)
    ends = [pair(pairs) for _ in tokens]
    for token, (relay_end, _) in zip(tokens, ends, strict=True):
        assert pools.arrive(token, relay_end)
    assert pools.ready_count() == 2
    ready, token, fresh = pools.want("nas1", tunnel)
    assert ready is ends[0][0] and token == tokens[0]
    assert len(fresh) == 1  # one used, one asked for in its place
    assert pools.ready_count() == 1


def test_tokens_are_good_once_and_unknown_ones_are_refused(pairs: list[socket.socket]) -> None:
    pools = DataPools(1, idle_s=60, token_timeout_s=10, clock=Clock())
    _, _, (token,) = pools.want("nas1", object())
    assert pools.arrive(token, pair(pairs)[0])
    assert not pools.arrive(token, pair(pairs)[0])  # replayed
    assert not pools.arrive(b"x" * 16, pair(pairs)[0])  # never issued
    assert pools.ready_count() == 1


def test_a_connection_the_agent_closed_or_wrote_on_is_skipped(pairs: list[socket.socket]) -> None:
    pools = DataPools(3, idle_s=60, token_timeout_s=10, clock=Clock())
    tunnel = object()
    _, _, tokens = pools.want("nas1", tunnel)
    ends = [pair(pairs) for _ in tokens]
    for token, (relay_end, _) in zip(tokens, ends, strict=True):
        pools.arrive(token, relay_end)
    ends[0][1].close()  # the agent closed the first
    ends[1][1].send(b"early")  # the agent broke the protocol on the second
    ready, token, fresh = pools.want("nas1", tunnel)
    assert ready is ends[2][0] and token == tokens[2]
    assert ends[0][0].fileno() == -1 and ends[1][0].fileno() == -1  # closed, not leaked
    assert len(fresh) == 3


def test_a_new_tunnel_for_the_device_drops_the_old_ones(pairs: list[socket.socket]) -> None:
    pools = DataPools(1, idle_s=60, token_timeout_s=10, clock=Clock())
    old, new = object(), object()
    _, _, (token,) = pools.want("nas1", old)
    relay_end, _ = pair(pairs)
    pools.arrive(token, relay_end)
    ready, _, fresh = pools.want("nas1", new)
    assert ready is None and len(fresh) == 1
    assert relay_end.fileno() == -1
    pools.drop("nas1", old)  # the old tunnel's end: the new pool stays
    assert len(pools) == 1
    pools.drop("nas1", new)
    assert len(pools) == 0
    assert not pools.arrive(fresh[0], pair(pairs)[0])


def test_idle_devices_lose_their_pool_and_late_tokens_expire(pairs: list[socket.socket]) -> None:
    clock = Clock()
    pools = DataPools(2, idle_s=60, token_timeout_s=10, clock=clock)
    busy, idle = object(), object()
    _, _, idle_tokens = pools.want("idle", idle)
    relay_end, _ = pair(pairs)
    pools.arrive(idle_tokens[0], relay_end)
    clock.now += 30
    _, _, busy_tokens = pools.want("busy", busy)
    clock.now += 31
    pools.sweep()
    assert relay_end.fileno() == -1  # "idle" was wanted 61 s ago
    assert len(pools) == 1
    assert not pools.arrive(idle_tokens[1], pair(pairs)[0])
    # "busy" was wanted 31 s ago: its pool stays, but tokens unused for 10 s are forgotten.
    assert not pools.arrive(busy_tokens[0], pair(pairs)[0])
    assert len(pools.want("busy", busy)[2]) == 2
