"""The agent's certificate keeper without a CA: when it renews, what a failure does (the
certificate in place stays, the challenge record is removed, the next try backs off), and how
files are written."""

from __future__ import annotations

import datetime
import logging
import random
import time
from pathlib import Path

import pytest
import trio
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certs import Certificates, Installed, Wanted
from certs._acme import _installed, _private_file
from config import HostPort, loads
from config.agent import AcmeSection, AgentConfig


def acme_section(tmp_path: Path, **extra: str) -> AcmeSection:
    lines = "\n".join(f"{k} = {v}" for k, v in extra.items())
    config = loads(
        AgentConfig,
        f"""
        [relay]
        addresses = ["127.0.0.1:1"]
        server_name = "relay.test"
        pinned_sha256 = "{"0" * 64}"
        [acme]
        directory_url = "https://127.0.0.1:1/dir"
        zone = "dyn.test"
        link_zone = "link.test"
        cert_file = "web/cert.pem"
        key_file = "web/key.pem"
        retry_initial_s = 10
        retry_max_s = 3600
        {lines}
        """,
        "agent.toml",
        tmp_path,
    )
    assert config.acme is not None
    return config.acme


def self_signed(tmp_path: Path, names: list[str], days: float = 90) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _private_file(tmp_path / "web" / "cert.pem", cert_pem, 0o644)
    _private_file(tmp_path / "web" / "key.pem", key_pem)
    return cert_pem, key_pem


ALL = ["nas1.dyn.test", "nas1.link.test", "*.nas1.link.test"]


async def nothing(values: tuple[str, ...]) -> None:
    await trio.lowlevel.checkpoint()


def keeper(tmp_path: Path, **extra: str) -> Certificates:
    config = acme_section(tmp_path, **extra)
    wanted = Wanted(tuple(ALL), config.cert_file, config.key_file)
    return Certificates(config, wanted, tmp_path / "agent", nothing, rng=random.Random(7))


def test_renewal_comes_at_the_fraction_of_the_lifetime_less_some_jitter(tmp_path: Path) -> None:
    certificates = keeper(tmp_path, renew_fraction="0.5")
    start, lifetime = 1_000_000.0, 6 * 86400.0  # a 6-day certificate
    installed = Installed(start, start + lifetime, frozenset(ALL))
    dues = {certificates.renewal_due(installed) for _ in range(50)}
    assert all(start + lifetime * 0.4 <= due <= start + lifetime * 0.5 for due in dues)
    assert len(dues) > 40  # jitter: a fleet does not renew at one instant
    assert certificates.renewal_due(installed, ari=start + 7) == start + 7  # the CA's word wins
    # A certificate that lacks a name, or none at all: now.
    lacking = Installed(start, start + lifetime, frozenset(ALL[:2]))
    assert certificates.renewal_due(lacking) <= time.time()
    assert certificates.renewal_due(None) <= time.time()


def test_only_a_certificate_matching_its_key_counts_as_installed(tmp_path: Path) -> None:
    self_signed(tmp_path, ALL)
    config = acme_section(tmp_path)
    found = _installed(config.cert_file, config.key_file)
    assert found is not None and found.names == frozenset(ALL)
    self_signed(tmp_path / "other", ALL)  # a crash between the two writes: mismatched pair
    (tmp_path / "web" / "key.pem").write_bytes((tmp_path / "other/web/key.pem").read_bytes())
    assert _installed(config.cert_file, config.key_file) is None
    assert _installed(tmp_path / "missing.pem", config.key_file) is None


def test_files_are_written_whole_with_their_mode(tmp_path: Path) -> None:
    target = tmp_path / "web" / "key.pem"
    _private_file(target, b"one")
    _private_file(target, b"two")
    assert target.read_bytes() == b"two" and target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["key.pem"]  # no temporary left


async def test_an_unreachable_ca_keeps_the_certificate_and_backs_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cert_pem, key_pem = self_signed(tmp_path, ALL[:1])  # lacks names: renewal due now
    certificates = keeper(tmp_path)  # the directory is on a port nobody listens on
    caplog.set_level(logging.WARNING, "certs.acme")
    with trio.move_on_after(5):
        while certificates.failures < 1:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(certificates.run)
                await trio.sleep(0.5)
                nursery.cancel_scope.cancel()
    assert certificates.failures >= 1 and certificates.issued == 0
    assert (tmp_path / "web" / "cert.pem").read_bytes() == cert_pem
    assert (tmp_path / "web" / "key.pem").read_bytes() == key_pem
    assert certificates.next_renewal is not None
    assert 0 < certificates.next_renewal - time.time() <= 10  # retry_initial_s, jittered
    assert "the one in place stays" in caplog.text


async def test_a_rate_limit_waits_the_longest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    certificates = keeper(tmp_path)

    async def limited() -> None:
        await trio.lowlevel.checkpoint()
        raise messages.Error.with_code("rateLimited", detail="too many")

    monkeypatch.setattr(certificates, "obtain", limited)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(certificates.run)
        for _ in range(500):  # 5 s at most
            if certificates.failures:
                break
            await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert certificates.next_renewal is not None
    assert 3590 <= certificates.next_renewal - time.time() <= 3600


async def test_a_challenge_never_visible_times_out(tmp_path: Path) -> None:
    # A DNS server that never answers: the order fails before the CA is asked to look.
    silent = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await silent.bind(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    certificates = keeper(
        tmp_path, check_servers=f'["127.0.0.1:{port}"]', propagation_timeout_s="1"
    )
    assert certificates.config.check_servers == (HostPort("127.0.0.1", port),)
    with pytest.raises(TimeoutError, match="does not answer the challenge"):
        await certificates._visible(("value",))
    silent.close()
