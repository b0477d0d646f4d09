"""NOTIFY leaves from the address ddnsd serves on, so that a secondary whose ACL names the
primary's address (Knot's, NSD's allow-notify) takes it: with `[dns].listen` on 127.0.0.3
the secondary on 127.0.0.1 sees 127.0.0.3, not the address the route would pick."""

from __future__ import annotations

import textwrap
from pathlib import Path

import dns.message
import dns.opcode
import pytest
import trio

from config import DdnsdConfig, HostPort, loads
from ddnsd._parts import notify_sources
from ddnsd._xfr import Notifier
from service import Boundary
from tests.unit.test_ddnsd_notify import KEY, device_zones


async def notify_seen_from(sources: tuple[str, ...]) -> list[str]:
    """The source address of the first NOTIFY a secondary on 127.0.0.1 receives (it
    acknowledges only one from 127.0.0.3, as an ACL would)."""
    seen: list[str] = []
    with trio.fail_after(10):
        with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
            await sock.bind(("127.0.0.1", 0))
            target = HostPort("127.0.0.1", sock.getsockname()[1])
            notifier = Notifier(device_zones(), (target,), KEY, Boundary(), sources)
            async with trio.open_nursery() as nursery:
                await nursery.start(notifier.run)
                data, peer = await sock.recvfrom(4096)
                seen.append(peer[0])
                if peer[0] == "127.0.0.3":
                    reply = dns.message.make_response(
                        dns.message.from_wire(data, keyring={KEY.name: KEY})
                    )
                    reply.set_opcode(dns.opcode.NOTIFY)
                    await sock.sendto(reply.to_wire(), peer)
                    await trio.sleep(0.5)  # a second would come at 2 s if this were not taken
                nursery.cancel_scope.cancel()
            assert (notifier.acknowledged == 1) == (peer[0] == "127.0.0.3")
    return seen


async def test_notify_comes_from_the_source_address() -> None:
    assert await notify_seen_from(("::1", "127.0.0.3")) == ["127.0.0.3"]
    # Unbound, the route picks 127.0.0.1, which this secondary's ACL would drop.
    assert await notify_seen_from(()) == ["127.0.0.1"]


def config(tmp_path: Path, listen: str, extra: str = "") -> DdnsdConfig:
    text = textwrap.dedent(f"""
        [ddnsd]
        state_dir = "state"
        [zone]
        name = "dyn.test"
        primary_ns = "ns1.dyn.test"
        hostmaster = "hostmaster.dyn.test"
        [dns]
        listen = {listen}
        [transfer]
        notify = "127.0.0.1:53"
        {extra}
        """)
    return loads(DdnsdConfig, text, base_dir=tmp_path)


@pytest.mark.parametrize(
    ("listen", "extra", "sources"),
    [
        ('["127.0.0.3:53", "127.0.0.4:53", "[::1]:53"]', "", ("127.0.0.3", "::1")),
        ('["0.0.0.0:53", "[::]:53"]', "", ()),
        ('["0.0.0.0:53", "[::1]:53"]', 'notify_source = ["192.0.2.1"]', ("192.0.2.1", "::1")),
        ('"127.0.0.3:53"', 'notify_source = ["127.0.0.5"]', ("127.0.0.5",)),
    ],
)
def test_the_source_is_the_listen_address_of_each_family_or_the_setting(
    tmp_path: Path, listen: str, extra: str, sources: tuple[str, ...]
) -> None:
    assert notify_sources(config(tmp_path, listen, extra)) == sources


def test_notify_source_takes_one_address_per_family(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="at most one IPv4 and one IPv6"):
        config(tmp_path, '"127.0.0.3:53"', 'notify_source = ["127.0.0.5", "127.0.0.6"]')
