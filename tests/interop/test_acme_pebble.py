"""The agent gets and renews its own certificate from Pebble (a real ACME CA) with DNS-01
records it asks for through the tunnel: relayd forwards them, ddnsd serves them (the link
zone's through a CNAME), Pebble checks them against ddnsd, and the keys never leave the NAS."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.rcode
import trio
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store

from config import AgentConfig, loads
from nasagent._agent import Agent
from tests.integration.test_relay_ddns import ddnsd_and_relayd
from tests.pebble_harness import running_pebble

NAMES = ["nas1.dyn.test", "nas1.link.test", "*.nas1.link.test"]


def _agent_config(tmp_path: Path, tunnel: str, dns: str, directory_url: str, ca: Path) -> str:
    return f"""
[agent]
device_name = "nas1"
key_file = "device.key"
state_dir = "agent"
[relay]
addresses = ["{tunnel}"]
server_name = "relay.test"
ca_file = "ca.pem"
[reconnect]
initial_delay_s = 0.1
max_delay_s = 1
[acme]
directory_url = "{directory_url}"
ca_file = "{ca}"
zone = "dyn.test"
link_zone = "link.test"
cert_file = "web/cert.pem"
key_file = "web/key.pem"
reload_command = ["{sys.executable}", "-c", "open('{tmp_path}/reloads', 'a').write('reload\\\\n')"]
check_servers = ["{dns}"]
propagation_timeout_s = 20
renew_fraction = 0.5
retry_initial_s = 0.2
retry_max_s = 2
caa_identity = "pebble.test"
"""


async def _until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(600):  # 60 s at most; each order takes a fraction of a second
        if condition():
            return
        await trio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _verify(chain_pem: bytes, root_pem: bytes) -> x509.Certificate:
    """The leaf, after checking the chain up to Pebble's root for every name."""
    chain = x509.load_pem_x509_certificates(chain_pem)
    store = Store([x509.load_pem_x509_certificate(root_pem)])
    for name in ("nas1.dyn.test", "nas1.link.test", "files.nas1.link.test"):
        verifier = PolicyBuilder().store(store).build_server_verifier(x509.DNSName(name))
        verifier.verify(chain[0], chain[1:])  # raises if the chain does not hold
    return chain[0]


async def _challenge_rcode(port: int) -> int:
    query = dns.message.make_query("_acme-challenge.nas1.link.test", "TXT")
    return (await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=5)).rcode()


async def _caa(port: int, name: str) -> list[str]:
    query = dns.message.make_query(name, "CAA")
    answer = await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=5)
    return [rdata.to_text() for rrset in answer.answer for rdata in rrset]


async def test_the_agent_obtains_installs_and_renews_its_certificate(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with ddnsd_and_relayd(tmp_path) as (ddnsd, relay):
            dns_address = ddnsd.listening["dns"][0]
            dns_port = int(dns_address.rsplit(":", 1)[1])
            # Certificates that live 20 s, renewed at half their life: a renewal in seconds.
            with running_pebble(tmp_path / "pebble", dns_address, validity_s=20) as pebble:
                text = _agent_config(
                    tmp_path,
                    relay.listening["tunnel"][0],
                    dns_address,
                    pebble.directory_url,
                    pebble.api_ca_file,
                )
                config = loads(AgentConfig, text, "agent.toml", tmp_path)
                agent = Agent(config)
                certificates = agent.certificates
                assert certificates is not None
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(agent.run)
                    await _until(lambda: certificates.issued >= 1, "the first certificate")
                    root = pebble.issuing_root()
                    first = _verify((tmp_path / "web" / "cert.pem").read_bytes(), root)
                    san = first.extensions.get_extension_for_class(x509.SubjectAlternativeName)
                    assert sorted(san.value.get_values_for_type(x509.DNSName)) == sorted(NAMES)
                    # The challenge record is gone once the CA has looked.
                    assert await _challenge_rcode(dns_port) == dns.rcode.NXDOMAIN
                    # Only this NAS's account may have certificates for its names (RFC 8657).
                    account = json.loads((tmp_path / "agent/acme/account.json").read_text())
                    assert account["uri"].startswith("https://")
                    record = f'0 issue "pebble.test; accounturi={account["uri"]}"'
                    for name in ("nas1.dyn.test", "nas1.link.test"):
                        assert await _caa(dns_port, name) == [record], name
                    await _until(lambda: certificates.issued >= 2, "the renewal")
                    second = _verify((tmp_path / "web" / "cert.pem").read_bytes(), root)
                    assert second.serial_number != first.serial_number
                    assert certificates.failures == 0
                    nursery.cancel_scope.cancel()
    _check_files(tmp_path)


def _check_files(tmp_path: Path) -> None:
    assert (tmp_path / "reloads").read_text().count("reload") >= 2
    for secret in ("web/key.pem", "agent/acme/account.key"):
        assert (tmp_path / secret).stat().st_mode & 0o777 == 0o600, secret
    assert (tmp_path / "agent" / "acme" / "account.json").stat().st_mode & 0o077 == 0
    # Privacy: the NAS's private keys are nowhere the relay or ddnsd keeps data, in any form.
    kept = [p for p in (tmp_path / "relay").rglob("*") if p.is_file()]
    kept += [p for p in (tmp_path / "ddnsd").rglob("*") if p.is_file()]
    kept += list(tmp_path.glob("registry.sqlite3*"))
    assert kept
    for secret in ("web/key.pem", "agent/acme/account.key"):
        pem = (tmp_path / secret).read_bytes()
        key = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        scalar = key.private_numbers().private_value.to_bytes(32, "big")
        jwk = base64.urlsafe_b64encode(scalar).rstrip(b"=")  # the "d" of a JWK
        forms = [scalar, scalar.hex().encode(), base64.b64encode(scalar)[:40], jwk, pem[40:100]]
        for path in kept:
            data = path.read_bytes()
            assert not [form for form in forms if form in data], (secret, path)


async def test_a_tunnel_dropped_mid_order_costs_one_retry(tmp_path: Path) -> None:
    # The tunnel closes while the agent asks for its challenge record: that order fails with
    # a log line, the agent reconnects, and the next order (after a short backoff) succeeds.
    with trio.fail_after(120):
        async with ddnsd_and_relayd(tmp_path) as (ddnsd, relay):
            dns_address = ddnsd.listening["dns"][0]
            with running_pebble(tmp_path / "pebble", dns_address) as pebble:
                text = _agent_config(
                    tmp_path,
                    relay.listening["tunnel"][0],
                    dns_address,
                    pebble.directory_url,
                    pebble.api_ca_file,
                )
                agent = Agent(loads(AgentConfig, text, "agent.toml", tmp_path))
                certificates = agent.certificates
                assert certificates is not None
                asked = certificates.set_challenge
                drops: list[tuple[str, ...]] = []

                async def drop_the_first(values: tuple[str, ...]) -> None:
                    if not drops:
                        drops.append(values)
                        assert agent.tunnel is not None
                        await agent.tunnel.aclose()  # as a relay restart would
                    await asked(values)

                certificates.set_challenge = drop_the_first
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(agent.run)
                    await _until(lambda: certificates.issued >= 1, "a certificate after the drop")
                    nursery.cancel_scope.cancel()
                assert drops and certificates.failures == 1
                _verify((tmp_path / "web" / "cert.pem").read_bytes(), pebble.issuing_root())
