"""Write the seed inputs of every corpus from real inputs: SPEC.md's vectors, a real
handshake, OpenSSL's ClientHellos, dig-like queries, nsupdate-like UPDATEs, ddclient's and
inadyn's requests, the example configs. Run once per new target: `python -m tests.fuzz.seeds`.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import dns.message
import dns.rrset
import dns.update

from protocol import Connection, ErrorCode
from protocol._messages import Ack, Error, Open
from tests.unit.test_relayd_sni import client_hello

from . import _connection_driver as driver
from .fuzz_connection_open import _open_pair
from .fuzz_passkey_answer import soft_answers, template_fields

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def _spec_frames() -> list[bytes]:
    spec = (ROOT / "protocol" / "SPEC.md").read_text()
    frames = []
    for block in re.findall(r"```vector\n(.*?)```", spec, re.S):
        found = re.search(r"hex:\s+(.*?)(?:\n\S|\Z)", block, re.S)
        if found:
            frames.append(bytes.fromhex("".join(found.group(1).split())))
    return frames


def _handshake() -> tuple[bytes, bytes, bytes]:
    """The client's HELLO, the server's HELLO and the client's AUTH of a real handshake."""
    client, server = driver.client(), driver.server()
    hello = client.data_to_send()
    server.receive_data(hello)
    server_hello = server.data_to_send()
    client.receive_data(server_hello)
    return hello, server_hello, client.data_to_send()


def _traffic(peer: Connection, ours: int, theirs: int | None) -> bytes:
    """What `peer` sends on an open connection when only it acts: data on a stream it opened
    (`ours`) and on one the other side opened (`theirs`, if it has one), a new stream, PING,
    messages, END_STREAM, RESET and a graceful GOAWAY; windows kept (driver.SETTINGS)."""
    peer.send_data(ours, b"GET / HTTP/1.1\r\nHost: nas1\r\n\r\n")
    if theirs is not None:
        peer.send_data(theirs, b"hello")
    new = peer.open_stream(Open("web", "192.0.2.8", 50001))
    peer.send_data(new, b"x" * 20, end_stream=True)
    peer.ping(b"01234567")
    peer.send_message(Ack(request_id=7))
    peer.send_message(Error(ErrorCode.RATE_LIMITED, "slow down", request_id=8))
    peer.end_stream(ours)
    peer.reset_stream(new if theirs is None else theirs)
    peer.close()
    return peer.data_to_send()


def _conversation() -> tuple[bytes, bytes]:
    """Everything a client sends a server, and a server the client, from the first HELLO
    through a real handshake to the traffic of `_traffic` from each side."""
    client, server = driver.client(), driver.server()
    to_server = to_client = b""
    sent = client.data_to_send()  # HELLO
    to_server += sent
    server.receive_data(sent)
    sent = server.data_to_send()  # HELLO
    to_client += sent
    client.receive_data(sent)
    sent = client.data_to_send()  # AUTH
    to_server += sent
    server.receive_data(sent)
    server.accept_authentication(driver.PUBLIC_KEY)
    sent = server.data_to_send()  # AUTH_OK
    to_client += sent
    client.receive_data(sent)
    # Each side opens a stream of its own: the connection these bytes go to has opened none.
    mine, yours = client.open_stream(Open("web")), server.open_stream(Open("setup"))
    to_server += client.data_to_send()
    to_client += server.data_to_send()
    return to_server + _traffic(client, mine, None), to_client + _traffic(server, yours, None)


def connection_seeds() -> list[bytes]:
    hello, server_hello, auth = _handshake()
    to_server, to_client = _conversation()
    frames = _spec_frames()
    spec = b"".join(frames)
    out = []
    for chunk in (0, 1, 7):
        out += [bytes([0, chunk]) + hello + auth, bytes([1, chunk]) + server_hello]
        out += [bytes([0, chunk]) + hello + spec, bytes([1, chunk]) + spec]
        out += [bytes([0, chunk]) + to_server, bytes([1, chunk]) + to_client]
    out += [bytes([role, 3]) + frame for frame in frames for role in (0, 1)]
    return out


def open_seeds() -> list[bytes]:
    """For the connection after `_open_pair`: the traffic of the other side, both roles."""
    out = []
    for chunk in (0, 1, 9):
        client, server = _open_pair()
        out.append(bytes([0, chunk]) + _traffic(client, 1, 2))  # to the server
        client, server = _open_pair()
        out.append(bytes([1, chunk]) + _traffic(server, 2, 1))  # to the client
    return out


def _queries() -> list[bytes]:
    out = []
    for name in (
        "nas1.dyn.test",
        "NaS1.DyN.TeSt",
        "dyn.test",
        "x.nas1.link.test",
        "nosuch.dyn.test",
        "install.link.test",
        "example.org",
    ):
        for rdtype in ("A", "AAAA", "TXT", "SOA", "NS", "ANY", "AXFR", "MX"):
            out.append(dns.message.make_query(name, rdtype, id=0x1234).to_wire())
            out.append(
                dns.message.make_query(name, rdtype, use_edns=0, want_dnssec=True, id=7).to_wire()
            )
    out.append(dns.message.make_query("nas1.dyn.test", "A", use_edns=1).to_wire())
    return out


def _updates() -> list[bytes]:
    out = []
    for build in (
        lambda u: u.replace("nas1", 60, "A", "192.0.2.9"),
        lambda u: u.add("nas1", 60, "AAAA", "2001:db8::9"),
        lambda u: u.add("_acme-challenge.nas1", 60, "TXT", "token"),
        lambda u: u.delete("nas1", "A"),
        lambda u: u.delete("nas1"),
        lambda u: (u.present("nas1"), u.absent("nas2", "A"), u.delete("nas1", "TXT", "x")),
    ):
        update = dns.update.UpdateMessage("dyn.test")
        build(update)
        out.append(update.to_wire())
    return out


def dns_tcp_seeds() -> list[bytes]:
    queries = _queries()[::5] + _updates()[:2]
    framed = [len(q).to_bytes(2, "big") + q for q in queries]
    axfr = dns.message.make_query("dyn.test", "AXFR").to_wire()
    ixfr = dns.message.make_query("link.test", "IXFR")
    ixfr.authority.append(
        dns.rrset.from_text("link.test.", 0, "IN", "SOA", "ns1.dyn.test. h.dyn.test. 1 1 1 1 1")
    )
    framed += [len(m).to_bytes(2, "big") + m for m in (axfr, ixfr.to_wire())]
    # The first byte is the read size less one: whole reads, one byte, a prefix split.
    return [bytes([read]) + f for f in framed for read in (255, 0)] + [
        bytes([2]) + b"".join(framed[:4])
    ]


def rfc2136_seeds() -> list[bytes]:
    return [bytes([mode]) + u for u in _updates() for mode in (0, 1)]


def dyndns2_seeds() -> list[bytes]:
    return [
        b"GET\n/nic/update?system=dyndns&hostname=nas1.dyn.test&myip=192.0.2.5\n!nas1.dyn.test",
        b"GET\n/nic/update?hostname=nas1.dyn.test&myip=192.0.2.5,2001:db8::5\n!nas1\n\n::1",
        b"GET\n/nic/update?hostname=nas1.dyn.test&offline=YES\n!nas1.dyn.test",
        b"POST\n/nic/update\n!nas1.dyn.test\nhostname=nas1.dyn.test&myipv6=2001:db8::7",
        b"GET\n/nic/update?hostname=nas2.dyn.test\nBasic bmFzMTp3cm9uZw==",
        b"GET\n/update?hostname=a,b,c\n",
    ]


def http_heads() -> list[bytes]:
    return [
        b"GET /nic/update?hostname=nas1.dyn.test HTTP/1.1\r\nHost: dyn.test\r\n"
        b"Authorization: Basic bmFzMTpzZWNyZXQ=\r\nUser-Agent: ddclient/3.10.0",
        b"POST /install HTTP/1.1\r\nHost: install.link.test\r\nContent-Length: 12\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nConnection: keep-alive",
        b"GET /metrics HTTP/1.0\r\nConnection: keep-alive",
        b"GET / HTTP/2.0\r\nHost: x",
    ]


def ingress_seeds() -> list[bytes]:
    out = []
    for host in (
        b"nas1.link.test",
        b"NAS1.link.test:8080",
        b"install.link.test",
        b"[::1]:80",
        b"other.example",
    ):
        request = b"GET /photos?a=1 HTTP/1.1\r\nHost: " + host + b"\r\nAccept: */*\r\n\r\n"
        out += [b"\xff" + request, b"\x03" + request]
    out.append(b"\x00" + b"GET / HTTP/1.0\r\n\r\n")
    return out


def form_seeds() -> list[bytes]:
    kind = b"application/x-www-form-urlencoded; charset=utf-8\n"
    return [
        kind + b"code=ABCD-1234&name=nas1",
        kind + b"a=1&a=2&b=%41%zz&c",
        b"text/plain\nhello",
        kind + b"&".join(b"k%d=v" % i for i in range(9)),
    ]


def proxy_seeds() -> list[bytes]:
    return [
        b"\x00\xc0\x00\x02\x07\x00\xc6\x33\x64\x04\xc3\x50\x01\xbb",
        b"\x01" + bytes(range(16)) + b"\x01" + bytes(range(16, 32)) + b"\x00\x50\x01\xbb",
        b"\x02\xfe\x80" + bytes(14) + b"\x00\x0a\x00\x00\x01\x00\x01\x00\x02",
        b"\x03::ffff:192.0.2.1\n\x03203.0.113.7\n\x12\x34\x01\xbb",
        b"\x03not an address\n\x00\x01\x02\x03\x04",
    ]


def config_seeds() -> list[bytes]:
    """The example configs as they are, and with their paths pointing at fuzz_config's
    config_root, so that loading gets past the path checks to succeed."""
    out = []
    for path in sorted((ROOT / "config" / "examples").glob("*.toml")):
        text = path.read_text()
        local = re.sub(r'(\w*_file)\s*=\s*"[^"]*"', r'\1 = "file"', text)
        local = re.sub(r'(\w*_dir)\s*=\s*"[^"]*"', r'\1 = "state"', local)
        out += [text.encode(), local.encode()]
    return out


def passkey_seeds() -> list[bytes]:
    create, get = soft_answers()
    fields = [bytes([n]) + raw for n, raw in enumerate(template_fields(create, get))]
    return [
        json.dumps(create).encode(),
        json.dumps(get).encode(),
        b'{"id": "AA", "rawId": "AA", "response": {"clientDataJSON": "e30"}}',
        b"[" * 100,
        *fields,
    ]


def seeds() -> dict[str, list[bytes]]:
    connection = connection_seeds()
    return {
        "connection_handshake": connection,
        "connection_open": connection[:8]
        + [bytes([r, 5]) + f for f in _spec_frames() for r in (0, 1)]
        + open_seeds(),
        "sni": [client_hello("nas1.link.test"), client_hello(None), client_hello("A.B.Test.")],
        "dns_udp": _queries() + _updates()[:2],
        "dns_tcp": dns_tcp_seeds(),
        "rfc2136": rfc2136_seeds(),
        "dyndns2": dyndns2_seeds(),
        "http_head": http_heads(),
        "http_ingress": ingress_seeds(),
        "install_form": form_seeds(),
        "proxy_v2": proxy_seeds(),
        "config": config_seeds(),
        "passkey_answer": passkey_seeds(),
    }


def main() -> None:
    for target, inputs in seeds().items():
        folder = HERE / "corpus" / target
        folder.mkdir(parents=True, exist_ok=True)
        for data in inputs:
            # Named by content, as libFuzzer names what it adds.
            (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)


if __name__ == "__main__":
    main()
