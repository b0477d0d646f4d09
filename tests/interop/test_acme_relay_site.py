"""relayd gets its install site's certificate itself: from Pebble, for install.<link zone>
and *.install.<link zone>, proved with the DNS-01 record ddnsd takes from relayd (and only
that, under the reserved name); the site serves it at once, and a TLS client that trusts
only Pebble's root accepts it for the site and for a session name under it."""

from __future__ import annotations

import contextlib
import ssl
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.message
import dns.rdatatype
import trio

import protocol
from ddnsd._daemon import Ddnsd
from tests.integration.test_relay_ddns import ddnsd_and_relayd
from tests.pebble_harness import Pebble, running_pebble


async def _peer_names(port: int, name: str, root: bytes) -> list[str]:
    """The DNS names of the certificate relayd serves for `name`, once the handshake has
    checked the chain up to `root` and the name against it."""
    context = ssl.create_default_context(cadata=root.decode())
    tls = trio.SSLStream(
        await trio.open_tcp_stream("127.0.0.1", port), context, server_hostname=name
    )
    try:
        await tls.do_handshake()
        seen: dict[str, Any] = tls.getpeercert()
    finally:
        await trio.aclose_forcefully(tls)
    return sorted(value for kind, value in seen["subjectAltName"] if kind == "DNS")


async def test_relayd_gets_and_serves_its_install_sites_certificate(tmp_path: Path) -> None:
    pebbles: list[Pebble] = []
    with contextlib.ExitStack() as stack, trio.fail_after(90):

        def with_pebble(ddnsd: Ddnsd) -> str:
            dns_address = ddnsd.listening["dns"][0]
            pebbles.append(stack.enter_context(running_pebble(tmp_path / "pebble", dns_address)))
            return f"""
[install]
[acme]
directory_url = "{pebbles[0].directory_url}"
ca_file = "{pebbles[0].api_ca_file}"
check_servers = ["{dns_address}"]
propagation_timeout_s = 20
retry_initial_s = 0.2
retry_max_s = 2
"""

        async with ddnsd_and_relayd(tmp_path, with_pebble) as (ddnsd, relay):
            site = relay.install
            assert site is not None
            for _ in range(600):
                if site.context is not None:
                    break
                await trio.sleep(0.1)
            assert site.context is not None, "no certificate for the install site"
            port = int(relay.listening["https"][0].rsplit(":", 1)[1])
            root = pebbles[0].issuing_root()
            for name in ("install.link.test", "a1b2c3.install.link.test"):
                names = await _peer_names(port, name, root)
                assert names == ["*.install.link.test", "install.link.test"], name
            # The challenge is gone once the CA has looked.
            dns_port = int(ddnsd.listening["dns"][0].rsplit(":", 1)[1])
            query = dns.message.make_query("_acme-challenge.install.link.test", "TXT")
            answer = await dns.asyncquery.udp(query, "127.0.0.1", port=dns_port, timeout=5)
            assert [r for r in answer.answer if r.rdtype == dns.rdatatype.TXT] == []
    assert (tmp_path / "relay" / "acme" / "install.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "relay" / "acme" / "account.key").stat().st_mode & 0o777 == 0o600


async def test_under_the_reserved_name_ddnsd_takes_only_the_sites_challenge(
    tmp_path: Path,
) -> None:
    """What relayd's service key may set for its own site is its challenge TXT, no address
    and no other name: a relay cannot take the site's name away from the relay's addresses."""
    with trio.fail_after(30):
        async with ddnsd_and_relayd(tmp_path) as (ddnsd, relay):
            link = relay.agents.ddns
            assert link is not None
            for update in (
                protocol.DdnsUpdate(1, "install", "install", "A", ("192.0.2.66",)),
                protocol.DdnsUpdate(2, "install", "install", "CAA", ()),
            ):
                reply = await link.forward(update)
                assert isinstance(reply, protocol.Error), update
                assert reply.error_code == protocol.ErrorCode.NOT_PERMITTED, reply
            ok = protocol.DdnsUpdate(3, "install", "_acme-challenge.install", "TXT", ("v",))
            assert await link.forward(ok) == protocol.Ack(3)
            query = dns.message.make_query("install.link.test", "A")
            answer = dns.message.from_wire(ddnsd.responder.respond(query.to_wire()) or b"")
            assert [r.address for r in answer.answer[0]] == ["127.0.0.1"]
