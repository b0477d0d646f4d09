"""lego (Debian's) gets a certificate from Pebble for a device's two names with the device's
own TSIG key over RFC 2136, WITH its propagation check: it finds the zone's nameservers by
their NS records and asks each one on port 53 by name, so ns1/ns2.dyn.test must resolve.
They do only through ddnsd's glue (`[zone.nameserver_addresses]`): lego runs in a mount
namespace whose /etc/resolv.conf names ddnsd, on 127.0.53.1 port 53 (the test needs root
for both, as `make test` runs). For nas1.link.test lego follows the link zone's CNAME to
the device zone's challenge name by itself."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.ddnsd_harness import Ddnsd, DdnsdOptions, prepare, start, stop
from tests.pebble_harness import running_pebble

from .conftest import require

ADDRESS = "127.0.53.1"  # a loopback address of its own: port 53 is free there


@pytest.fixture
def on_port_53(tmp_path: Path) -> Iterator[Ddnsd]:
    if os.geteuid() != 0:
        pytest.skip("port 53 and a mount namespace need root")
    glue = (
        "[zone.nameserver_addresses]\n"
        f'"ns1.dyn.test" = ["{ADDRESS}"]\n'
        f'"ns2.dyn.test" = ["{ADDRESS}"]\n'
    )
    prepare(tmp_path, DdnsdOptions(extra=glue))
    config = tmp_path / "ddnsd.toml"
    text = config.read_text().replace('listen = ["127.0.0.1:0"]', f'listen = ["{ADDRESS}:53"]', 1)
    config.write_text(text)
    daemon = start(tmp_path)
    try:
        yield daemon
    finally:
        stop(daemon)


def lego(
    tmp_path: Path, daemon: Ddnsd, directory_url: str, ca: Path
) -> subprocess.CompletedProcess[str]:
    _, key_name, secret = daemon.tsig["nas1"].split(":", 2)
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {ADDRESS}\n")
    environment = {
        **os.environ,
        "LEGO_CA_CERTIFICATES": str(ca),
        "RFC2136_NAMESERVER": f"{ADDRESS}:53",
        "RFC2136_TSIG_ALGORITHM": "hmac-sha256.",
        "RFC2136_TSIG_KEY": key_name,
        "RFC2136_TSIG_SECRET": secret,
        "RFC2136_PROPAGATION_TIMEOUT": "30",
        "RFC2136_POLLING_INTERVAL": "1",
        "RFC2136_TTL": "60",
        "RFC2136_SEQUENCE_INTERVAL": "1",  # between the two names' challenges (default 60 s)
    }
    command = [
        "lego",
        "--accept-tos",
        "--email",
        "owner@example.org",
        "--server",
        directory_url,
        "--path",
        str(tmp_path / "lego"),
        "--dns",
        "rfc2136",
        "--dns.resolvers",
        f"{ADDRESS}:53",
        "--domains",
        "nas1.dyn.test",
        "--domains",
        "nas1.link.test",
        "run",
    ]
    script = f'mount --bind "{resolv}" /etc/resolv.conf && exec "$@"'
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "lego", *command],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_lego_with_its_propagation_check_gets_both_names(tmp_path: Path, on_port_53: Ddnsd) -> None:
    require("lego", "pebble", "unshare")
    with running_pebble(tmp_path / "pebble", f"{ADDRESS}:53") as pebble:
        done = lego(tmp_path, on_port_53, pebble.directory_url, pebble.api_ca_file)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    certificate = x509.load_pem_x509_certificate(
        (tmp_path / "lego" / "certificates" / "nas1.dyn.test.crt").read_bytes()
    )
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert sorted(names.value.get_values_for_type(x509.DNSName)) == [
        "nas1.dyn.test",
        "nas1.link.test",
    ]
    # Both names waited for propagation, which asks ns1 and ns2 by the addresses ddnsd gave.
    assert done.stderr.count("acme: Checking DNS record propagation") == 2, done.stderr
