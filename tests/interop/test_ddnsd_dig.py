"""ddnsd's authoritative behaviour as dig sees it, one rule per test."""

from __future__ import annotations

import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ddnsd_harness import BIN, Ddnsd, DdnsdOptions, prepare, start, stop

from .conftest import require


def dig(daemon: Ddnsd, *args: str) -> dict[str, Any]:
    """Run dig against ddnsd and return the response message as dig's YAML describes it."""
    require("dig")
    out = subprocess.run(
        ["dig", "+yaml", "+tries=1", "+timeout=3", "@127.0.0.1", "-p", str(daemon.dns_port), *args],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout
    docs = yaml.safe_load(out)
    messages = [d["message"] for d in docs if d.get("type") == "MESSAGE"]
    assert messages, out
    data: dict[str, Any] = messages[-1]["response_message_data"]
    return data


def update(daemon: Ddnsd, device: str, query: str) -> str:
    require("curl")
    return subprocess.run(
        [
            "curl",
            "-s",
            "-u",
            f"{device}.dyn.test:{daemon.tokens[device]}",
            f"http://{daemon.dyndns2}/nic/update?hostname={device}.dyn.test&{query}",
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout.strip()


def test_apex_soa_and_ns_are_authoritative_without_recursion(ddnsd: Ddnsd) -> None:
    soa = dig(ddnsd, "dyn.test", "SOA")
    assert soa["status"] == "NOERROR"
    assert soa["flags"].split() == ["qr", "aa", "rd"]  # AA set, RA clear, RD echoed
    [record] = soa["ANSWER_SECTION"]
    assert record.startswith("dyn.test. 60 IN SOA ns1.dyn.test. hostmaster.dyn.test. ")
    ns = dig(ddnsd, "dyn.test", "NS", "+norecurse")
    assert ns["flags"].split() == ["qr", "aa"]
    assert sorted(ns["ANSWER_SECTION"]) == [
        "dyn.test. 3600 IN NS ns1.dyn.test.",
        "dyn.test. 3600 IN NS ns2.dyn.test.",
    ]


def test_device_records_nxdomain_and_nodata(ddnsd: Ddnsd) -> None:
    assert update(ddnsd, "nas1", "myip=198.51.100.4") == "good 198.51.100.4"
    answer = dig(ddnsd, "nas1.dyn.test", "A")
    assert answer["ANSWER_SECTION"] == ["nas1.dyn.test. 60 IN A 198.51.100.4"]
    nodata = dig(ddnsd, "nas1.dyn.test", "AAAA")
    assert nodata["status"] == "NOERROR" and "ANSWER_SECTION" not in nodata
    [soa] = nodata["AUTHORITY_SECTION"]
    assert soa.startswith("dyn.test. 60 IN SOA ")
    # A device with no records yet still exists: NODATA, not NXDOMAIN.
    assert dig(ddnsd, "nas2.dyn.test", "A")["status"] == "NOERROR"
    missing = dig(ddnsd, "nosuchdevice.dyn.test", "A")
    assert missing["status"] == "NXDOMAIN"
    assert missing["AUTHORITY_SECTION"][0].startswith("dyn.test. 60 IN SOA ")
    assert "aa" in missing["flags"].split()


def test_names_outside_our_zones_are_refused(ddnsd: Ddnsd) -> None:
    refused = dig(ddnsd, "example.com", "A")
    assert refused["status"] == "REFUSED"
    assert "aa" not in refused["flags"].split()


def test_question_case_is_echoed_exactly(ddnsd: Ddnsd) -> None:
    update(ddnsd, "nas1", "myip=198.51.100.4")
    for name in ("NaS1.DyN.TeSt", "nas1.dyn.test", "NAS1.DYN.TEST", "nAs1.dYn.tEsT"):
        message = dig(ddnsd, name, "A")
        assert message["QUESTION_SECTION"] == [f"{name}. IN A"]
        assert message["ANSWER_SECTION"] == [f"{name}. 60 IN A 198.51.100.4"]


def test_link_zone_points_every_device_name_at_the_relay(ddnsd: Ddnsd) -> None:
    assert dig(ddnsd, "nas1.link.test", "A")["ANSWER_SECTION"] == [
        "nas1.link.test. 60 IN A 127.0.0.1"
    ]
    assert dig(ddnsd, "nas1.link.test", "AAAA")["ANSWER_SECTION"] == [
        "nas1.link.test. 60 IN AAAA ::1"
    ]
    deep = dig(ddnsd, "files.web.nas1.link.test", "A")
    assert deep["ANSWER_SECTION"] == ["files.web.nas1.link.test. 60 IN A 127.0.0.1"]
    assert dig(ddnsd, "nosuch.link.test", "A")["status"] == "NXDOMAIN"
    assert dig(ddnsd, "link.test", "SOA")["status"] == "NOERROR"


def test_any_gets_a_minimal_answer(ddnsd: Ddnsd) -> None:
    update(ddnsd, "nas1", "myip=198.51.100.4")
    update(ddnsd, "nas1", "myip=2001:db8::4")
    message = dig(ddnsd, "nas1.dyn.test", "ANY")
    [record] = message["ANSWER_SECTION"]
    assert " IN HINFO " in record and "RFC8482" in record


def test_edns_buffer_and_badvers(ddnsd: Ddnsd) -> None:
    message = dig(ddnsd, "dyn.test", "SOA", "+bufsize=4096")
    assert message["OPT_PSEUDOSECTION"]["EDNS"]["udp"] == 1232
    badvers = dig(ddnsd, "dyn.test", "SOA", "+edns=1", "+noednsnegotiation")
    assert badvers["status"] == "BADVERS"


def test_truncation_sets_tc_keeps_the_question_and_tcp_has_it_all(ddnsd: Ddnsd) -> None:
    require("nsupdate")
    records = "\n".join(
        f'update add _acme-challenge.nas1.dyn.test 60 TXT "{i:03d}{"x" * 200}"' for i in range(12)
    )
    nsupdate(ddnsd, "nas1", records)
    udp = dig(ddnsd, "_acme-challenge.nas1.dyn.test", "TXT", "+ignore", "+bufsize=512")
    assert "tc" in udp["flags"].split()
    assert udp["QUESTION_SECTION"] == ["_acme-challenge.nas1.dyn.test. IN TXT"]
    assert "ANSWER_SECTION" not in udp
    tcp = dig(ddnsd, "_acme-challenge.nas1.dyn.test", "TXT", "+tcp")
    assert len(tcp["ANSWER_SECTION"]) == 12
    # dig retries over TCP by itself when it sees TC.
    fallback = dig(ddnsd, "_acme-challenge.nas1.dyn.test", "TXT", "+bufsize=512")
    assert len(fallback["ANSWER_SECTION"]) == 12


def nsupdate(daemon: Ddnsd, device: str, commands: str) -> subprocess.CompletedProcess[str]:
    script = (
        f"check-names off\nserver 127.0.0.1 {daemon.dns_port}\nzone dyn.test\n{commands}\nsend\n"
    )
    return subprocess.run(
        ["nsupdate", "-t", "5", "-y", daemon.tsig[device]],
        input=script,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_many_queries_on_one_tcp_connection(ddnsd: Ddnsd) -> None:
    # RFC 7766: pipelined queries on one connection, answered in turn.
    import dns.message

    with socket.create_connection(("127.0.0.1", ddnsd.dns_port), timeout=5) as sock:
        queries = [dns.message.make_query(name, "SOA") for name in ("dyn.test", "link.test")] * 3
        wire = b"".join(struct.pack("!H", len(w)) + w for w in (q.to_wire() for q in queries))
        sock.sendall(wire)
        for query in queries:
            size = struct.unpack("!H", _read(sock, 2))[0]
            response = dns.message.from_wire(_read(sock, size))
            assert response.id == query.id
            assert response.answer[0].name == query.question[0].name


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "connection closed early"
        data += chunk
    return data


@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
def test_unknown_opcode_is_notimp(ddnsd: Ddnsd, transport: str) -> None:
    message = dig(ddnsd, "dyn.test", "SOA", "+opcode=2", transport)
    assert message["status"] == "NOTIMP"


def test_unregistering_a_device_answers_nxdomain_within_seconds(ddnsd: Ddnsd) -> None:
    """Privacy rule 5: `nascloud device delete` on the registry, while ddnsd runs."""
    assert update(ddnsd, "nas1", "myip=198.51.100.4") == "good 198.51.100.4"
    assert update(ddnsd, "nas2", "myip=198.51.100.5") == "good 198.51.100.5"
    deleted = subprocess.run(
        [BIN / "nascloud", "device", "delete", "nas1", "--yes", "--registry", ddnsd.registry_path],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert deleted.returncode == 0, deleted.stderr
    deadline = time.monotonic() + 10
    while dig(ddnsd, "nas1.dyn.test", "A")["status"] != "NXDOMAIN":
        assert time.monotonic() < deadline, "nas1 still answers 10 s after its deletion"
        time.sleep(0.2)
    assert dig(ddnsd, "nas2.dyn.test", "A")["ANSWER_SECTION"] == [
        "nas2.dyn.test. 60 IN A 198.51.100.5"
    ]
    # Its DynDNS2 password went with it: badauth, as for any wrong password (docs/ddnsd.md),
    # even while ddnsd still has the token cached from the update above.
    assert update(ddnsd, "nas1", "myip=198.51.100.6") == "badauth"


def edns_ddnsd(tmp_path: Path) -> Iterator[Ddnsd]:
    """ddnsd with its nameserver's addresses (glue) and an NSID in its config."""
    glue = '[zone.nameserver_addresses]\n"ns1.dyn.test" = ["192.0.2.53", "2001:db8::53"]\n'
    prepare(tmp_path, DdnsdOptions(extra=glue))
    config = tmp_path / "ddnsd.toml"
    config.write_text(config.read_text().replace("[dns]\n", '[dns]\nnsid = "ddnsd-1"\n', 1))
    daemon = start(tmp_path)
    try:
        yield daemon
    finally:
        stop(daemon)


@pytest.fixture
def glued(tmp_path: Path) -> Iterator[Ddnsd]:
    yield from edns_ddnsd(tmp_path)


def test_in_zone_nameservers_have_glue_as_dig_sees_it(glued: Ddnsd) -> None:
    ns = dig(glued, "dyn.test", "NS", "+norecurse")
    assert sorted(ns["ADDITIONAL_SECTION"]) == [
        "ns1.dyn.test. 3600 IN A 192.0.2.53",
        "ns1.dyn.test. 3600 IN AAAA 2001:db8::53",
    ]
    link = dig(glued, "link.test", "NS")  # the link zone's NS is the same ns1.dyn.test
    assert len(link["ADDITIONAL_SECTION"]) == 2
    address = dig(glued, "ns1.dyn.test", "A")
    assert address["ANSWER_SECTION"] == ["ns1.dyn.test. 3600 IN A 192.0.2.53"]
    assert "aa" in address["flags"].split()
    # ns2 is in the zone but has no addresses in this config: still NXDOMAIN, as before.
    assert dig(glued, "ns2.dyn.test", "A")["status"] == "NXDOMAIN"


def test_nsid_and_cookies_as_dig_sees_them(glued: Ddnsd) -> None:
    answer = dig(glued, "nas1.dyn.test", "A", "+nsid", "+cookie")
    edns = answer["OPT_PSEUDOSECTION"]["EDNS"]
    assert "ddnsd-1" in str(edns["NSID"])
    assert str(edns["COOKIE"]).endswith("(good)")  # dig's own check of the echoed cookie
    assert len(str(edns["COOKIE"]).split()[0]) == 2 * 24
    plain = dig(glued, "nas1.dyn.test", "A", "+nocookie")
    assert "NSID" not in plain["OPT_PSEUDOSECTION"]["EDNS"]
    assert "COOKIE" not in plain["OPT_PSEUDOSECTION"]["EDNS"]


def test_qclass_any_has_no_aa(glued: Ddnsd) -> None:
    answer = dig(glued, "-q", "ns1.dyn.test", "-t", "A", "-c", "ANY")
    assert answer["QUESTION_SECTION"] == ["ns1.dyn.test. ANY A"]
    assert answer["status"] == "NOERROR" and "aa" not in answer["flags"].split()
    assert answer["ANSWER_SECTION"] == ["ns1.dyn.test. 3600 IN A 192.0.2.53"]


def test_ixfr_over_udp_is_the_current_soa(glued: Ddnsd) -> None:
    key = f"hmac-sha256:transfer.dyn.test:{glued.transfer_key}"
    answer = dig(glued, "+notcp", "-y", key, "dyn.test", "IXFR=1")
    assert answer["status"] == "NOERROR"
    [soa] = answer["ANSWER_SECTION"]
    assert " IN SOA ns1.dyn.test. " in soa
