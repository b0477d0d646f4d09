"""A real ddnsd with two worker processes while an owner turns DDNS and Link off and on (as
the portal does, in the registry): every worker stops answering the feature's names within
the registry poll, updates are refused by each way in, and nothing comes back by itself."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.tsigkeyring
import dns.update
import trio

from registry import Registry
from tests.ddnsd_harness import Ddnsd, DdnsdOptions, running_ddnsd

from .ddnsd_updates import http_update
from .test_ddnsd_workers import answers_from_many_ports

POLL_S = 2.0  # ddnsd's registry poll


def set_feature(daemon: Ddnsd, device: str, feature: str, on: bool) -> None:
    async def switch() -> None:
        registry = Registry.open_sqlite(daemon.registry_path, create=False)
        await registry.set_feature(device, feature, on)
        await registry.aclose()

    trio.run(switch)


def within(seconds: float, check: Callable[[], bool]) -> float:
    """How long `check` took to hold, polled every 50 ms; fails after `seconds`."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, "not within the time allowed"
        time.sleep(0.05)
    return time.monotonic() - started


def rcode(daemon: Ddnsd, name: str, rdtype: str = "A") -> str:
    query = dns.message.make_query(name, rdtype)
    response = dns.query.udp(query, "127.0.0.1", port=daemon.dns_port, timeout=5)
    return dns.rcode.to_text(response.rcode())


def nsupdate(daemon: Ddnsd, device: str, address: str) -> str:
    algorithm, name, secret = daemon.tsig[device].split(":", 2)
    update = dns.update.UpdateMessage(
        "dyn.test",
        keyring=dns.tsigkeyring.from_text({name: (algorithm, secret)}),
        keyalgorithm=algorithm,
    )
    update.replace(device, 60, "A", address)
    response = dns.query.tcp(update, "127.0.0.1", port=daemon.dns_port, timeout=5)
    return dns.rcode.to_text(response.rcode())


def test_ddns_off_and_link_off_reach_every_worker(tmp_path: Path) -> None:
    with running_ddnsd(tmp_path, DdnsdOptions(workers=2)) as daemon:
        assert http_update(daemon, "nas1", "198.51.100.4").startswith("good")
        assert all(a == ["198.51.100.4"] for a in answers_from_many_ports(daemon, "nas1.dyn.test"))
        set_feature(daemon, "nas1", "ddns", False)
        took = within(
            POLL_S + 3,
            lambda: all(a == [] for a in answers_from_many_ports(daemon, "nas1.dyn.test")),
        )
        print(f"DDNS off: no worker answers the address after {took:.2f} s")
        assert rcode(daemon, "nas1.dyn.test") == "NOERROR"  # the name is the device's still
        # Its DynDNS2 password went with the switch (or, cached, is told the host is not
        # its to update); its RFC 2136 key is refused addresses.
        assert http_update(daemon, "nas1", "198.51.100.5").split()[0] in ("nohost", "badauth")
        assert nsupdate(daemon, "nas1", "198.51.100.6") == "REFUSED"
        assert all(a == [] for a in answers_from_many_ports(daemon, "nas1.dyn.test"))
        # The other device is untouched.
        assert http_update(daemon, "nas2", "198.51.100.8").startswith("good")
        assert nsupdate(daemon, "nas2", "198.51.100.9") == "NOERROR"

        assert rcode(daemon, "nas1.link.test") == "NOERROR"
        set_feature(daemon, "nas1", "link", False)
        took = within(
            POLL_S + 3,
            lambda: all(rcode(daemon, "nas1.link.test") == "NXDOMAIN" for _ in range(24)),
        )
        print(f"Link off: every worker answers NXDOMAIN after {took:.2f} s")
        assert rcode(daemon, "www.nas1.link.test") == "NXDOMAIN"
        assert rcode(daemon, "nas2.link.test") == "NOERROR"

        set_feature(daemon, "nas1", "link", True)
        set_feature(daemon, "nas1", "ddns", True)
        within(
            POLL_S + 3,
            lambda: all(rcode(daemon, "nas1.link.test") == "NOERROR" for _ in range(24)),
        )
        # On again: nothing came back by itself; a new update is taken.
        assert all(a == [] for a in answers_from_many_ports(daemon, "nas1.dyn.test"))
        within(POLL_S + 3, lambda: nsupdate(daemon, "nas1", "198.51.100.7") == "NOERROR")
        assert all(a == ["198.51.100.7"] for a in answers_from_many_ports(daemon, "nas1.dyn.test"))
