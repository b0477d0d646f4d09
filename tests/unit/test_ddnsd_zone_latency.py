"""The latency of UDP answers, from the datagram read to its answer sent, as a histogram a
Prometheus histogram can be written from: each answer counted once, in the bucket whose
bound is the first at or above it (`le`), cumulative counts ending with +Inf."""

from __future__ import annotations

import socket

import dns.message
import trio

from ddnsd._answer import Responder
from ddnsd._rrl import RateLimiter
from ddnsd._server import LATENCY_BUCKETS, LATENCY_SHIFT, DnsServer, Latency
from httpapi import render
from service import Boundary
from tests.unit.test_ddnsd_answer import make_zones


def test_buckets_are_cumulative_with_each_bound_inclusive() -> None:
    latency = Latency()
    first = 2**LATENCY_SHIFT  # ns: the first bucket holds fewer
    for ns in (1, first - 1, first, 2 * first - 1, 2 * first, 10**12):
        latency.observe_ns(ns)
    text = render([latency.metric()]).decode()
    buckets = [line for line in text.splitlines() if "_bucket{" in line]
    name = "nascloud_dns_answer_seconds"
    assert buckets[:3] == [
        f'{name}_bucket{{le="{(first - 1) / 1e9!r}"}} 2',
        f'{name}_bucket{{le="{(2 * first - 1) / 1e9!r}"}} 4',
        f'{name}_bucket{{le="{(4 * first - 1) / 1e9!r}"}} 5',
    ]
    # 1000 s: past the last bucket, in +Inf only.
    assert buckets[-1] == f'{name}_bucket{{le="+Inf"}} 6' and buckets[-2].endswith(" 5")
    assert len(buckets) == LATENCY_BUCKETS + 1
    assert f"{name}_count 6" in text.splitlines()
    assert latency.count == 6 and latency.sum_ns == 6 * first - 1 + 10**12
    assert 0.13 < Latency.bounds()[-1] < 0.14  # the last bucket: 134 ms


async def test_each_udp_answer_sent_is_observed_once() -> None:
    server = DnsServer(Responder(make_zones()), RateLimiter(0), Boundary())
    listening = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listening.bind(("127.0.0.1", 0))
    asked = 50
    with listening, trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve_udp, listening)
            client = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
            with client:
                await client.connect(listening.getsockname())
                started = trio.current_time()
                for i in range(asked):
                    await client.send(dns.message.make_query(f"n{i}.nas1.link.test", "A").to_wire())
                    await client.recv(65535)
                took = trio.current_time() - started
                await client.send(b"\x00" * 5)  # too short to answer: silence, not counted
                await client.send(dns.message.make_query("nas1.dyn.test", "A").to_wire())
                await client.recv(65535)
            nursery.cancel_scope.cancel()
    assert server.latency.count == asked + 1
    text = render([server.latency.metric()]).decode()
    assert f'nascloud_dns_answer_seconds_bucket{{le="+Inf"}} {asked + 1}' in text.splitlines()
    assert 0 < server.latency.sum < took + 1
    assert server.latency.sum_ns == round(server.latency.sum * 1e9)  # int() truncates 4002152.9999…
