"""Real secondaries from Debian against ddnsd: Knot DNS follows the zone by IXFR from ddnsd's
journal after NOTIFY, and gets the whole zone when its serial is no longer in the journal
(too far behind, or after a restart of ddnsd); NSD follows by AXFR. dnspython's transfer
client shows the refusals: an address outside `[transfer].allow`, and an AXFR without TSIG.

A secondary binds the port the test gives it, taken at random below the ephemeral range and
never probed; when another process holds it the secondary exits with EADDRINUSE in its log,
and the test tries another (ddnsd is restarted to NOTIFY there)."""

from __future__ import annotations

import base64
import json
import random
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update
import dns.xfr
import dns.zone
import pytest

from tests.ddnsd_harness import Ddnsd, DdnsdOptions, prepare, start, stop, write_config

from .conftest import require

ZONE = "dyn.test"
TRANSFER_KEY = "transfer.dyn.test"
PORT_TRIES = 5


def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def random_port() -> int:
    """A port below the kernel's ephemeral range, where no client socket of a recent
    connection sits in TIME_WAIT; whether it is free is found out by binding it."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    return random.randrange(10000, max(low, 10001))


def soa_serial(port: int, host: str = "127.0.0.1") -> int | None:
    """The zone's serial as the server on `port` answers it, or None if it does not."""
    try:
        response = dns.query.udp(dns.message.make_query(ZONE, "SOA"), host, port=port, timeout=1)
    except (dns.exception.Timeout, OSError):
        return None
    if response.rcode() != dns.rcode.NOERROR or not response.answer:
        return None
    return int(response.answer[0][0].serial)


def addresses(port: int, name: str = f"nas1.{ZONE}") -> list[str]:
    try:
        response = dns.query.udp(
            dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=1
        )
    except (dns.exception.Timeout, OSError):
        return []
    return sorted(rr.address for rrset in response.answer for rr in rrset)


def update_address(ddnsd: Ddnsd, address: str, device: str = "nas1") -> None:
    """One RFC 2136 UPDATE, acknowledged: one serial step of ddnsd's zone."""
    algorithm, name, secret = ddnsd.tsig[device].split(":")
    keyring = dns.tsigkeyring.from_text({name: (algorithm, secret)})
    update = dns.update.UpdateMessage(
        ZONE, keyring=keyring, keyname=dns.name.from_text(name), keyalgorithm=algorithm
    )
    update.replace(device, 60, "A", address)
    response = dns.query.tcp(update, dns_host(ddnsd), port=ddnsd.dns_port, timeout=10)
    assert response.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(response.rcode())


def dns_host(ddnsd: Ddnsd) -> str:
    """The address ddnsd's (first) DNS listener is bound to."""
    bound = json.loads((ddnsd.state_dir / "listening.json").read_text())
    return str(bound["dns"][0].rsplit(":", 1)[0])


def primary_serial(ddnsd: Ddnsd) -> int:
    serial = soa_serial(ddnsd.dns_port, dns_host(ddnsd))
    assert serial is not None
    return serial


@dataclass
class Secondary:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    reload: Callable[[Ddnsd], None]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def serial(self) -> int | None:
        return soa_serial(self.port)

    def follows(self, ddnsd: Ddnsd, timeout_s: float = 20.0) -> None:
        serial = primary_serial(ddnsd)
        wait_for(lambda: self.serial() == serial, f"the secondary at serial {serial}", timeout_s)


# -- Knot ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnotAs:
    """How the Knot secondary reaches ddnsd: from which address, whether it signs, and the
    address ddnsd serves on (which Knot's ACL takes NOTIFY from)."""

    via: str = "127.0.0.1"
    signed: bool = True
    primary: str = "127.0.0.1"


def knot_config(
    directory: Path, control: Path, port: int, ddnsd: Ddnsd, knot_as: KnotAs = KnotAs()
) -> str:
    key = f"    key: {TRANSFER_KEY}\n" if knot_as.signed else ""
    return f"""
server:
    rundir: "{directory}"
    listen: 127.0.0.1@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
log:
  - target: "{directory}/knot.log"
    any: debug
database:
    storage: "{directory}/db"
control:
    listen: "{control}"
key:
  - id: {TRANSFER_KEY}
    algorithm: hmac-sha256
    secret: {ddnsd.transfer_key}
remote:
  - id: primary
    address: {knot_as.primary}@{ddnsd.dns_port}
    via: {knot_as.via}
{key}acl:
  - id: notify_from_primary
    address: {knot_as.primary}
    key: {TRANSFER_KEY}
    action: notify
zone:
  - domain: {ZONE}
    master: primary
    acl: notify_from_primary
    storage: "{directory}"
    file: "{ZONE}.zone"
    zonefile-sync: -1
    zonefile-load: none
    journal-content: all
"""


def start_knot(
    directory: Path, control: Path, port: int, ddnsd: Ddnsd, knot_as: KnotAs = KnotAs()
) -> Secondary | None:
    """Knot on `port`, ready; None if the port was taken (Knot exits then)."""
    require("knotd", "knotc")
    config = directory / "knot.conf"
    config.write_text(knot_config(directory, control, port, ddnsd, knot_as))
    (directory / "db").mkdir(exist_ok=True)
    log = directory / "knot.log"
    log.unlink(missing_ok=True)
    process = subprocess.Popen(
        ["knotd", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    def reload(primary: Ddnsd) -> None:
        config.write_text(knot_config(directory, control, port, primary, knot_as))
        knotc(config, "reload")

    secondary = Secondary(process, port, log, reload)
    wait_for(
        lambda: process.poll() is not None or "server started" in secondary.log(),
        "knotd to start",
    )
    if process.poll() is not None:
        assert "address already in use" in secondary.log(), secondary.log()
        return None
    return secondary


def knotc(config: Path, *command: str) -> None:
    done = subprocess.run(
        ["knotc", "-c", str(config), "-t", "10", *command],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Pair:
    ddnsd: Ddnsd
    secondary: Secondary
    directory: Path  # ddnsd's
    restarted_at: int = 0

    def restart_ddnsd(self) -> None:
        stop(self.ddnsd)
        self.restarted_at = len(self.ddnsd.log())  # the log file goes on across restarts
        self.ddnsd = start(self.directory)
        self.secondary.reload(self.ddnsd)

    def transfers_sent(self) -> list[str]:
        """ddnsd's transfers since it last started."""
        return ddnsd_transfers(self.ddnsd.log()[self.restarted_at :])


@contextmanager
def primary_and_secondary(
    tmp_path: Path,
    start_secondary: Callable[[Path, int, Ddnsd], Secondary | None],
    listen: str = "127.0.0.1",
) -> Iterator[Pair]:
    """ddnsd (DNS on `listen`) NOTIFYing a secondary that transfers from it, on a port bound
    by the secondary."""
    daemon_dir = tmp_path / "ddnsd"
    daemon_dir.mkdir()
    prepare(daemon_dir)
    secondary_dir = tmp_path / "secondary"
    secondary_dir.mkdir()
    for _ in range(PORT_TRIES):
        port = random_port()
        config = write_config(daemon_dir, DdnsdOptions(extra=f'notify = ["127.0.0.1:{port}"]'))
        text = config.read_text().replace('listen = ["127.0.0.1:0"]', f'listen = ["{listen}:0"]')
        config.write_text(text)
        ddnsd = start(daemon_dir)
        try:
            secondary = start_secondary(secondary_dir, port, ddnsd)
        except BaseException:
            stop(ddnsd)
            raise
        if secondary is not None:
            break
        stop(ddnsd)
    else:
        pytest.fail(f"no free port for the secondary in {PORT_TRIES} tries")
    pair = Pair(ddnsd, secondary, daemon_dir)
    try:
        yield pair
    finally:
        stop_process(secondary.process)
        stop(pair.ddnsd)


@contextmanager
def knot_and_ddnsd(tmp_path: Path, knot_as: KnotAs = KnotAs()) -> Iterator[Pair]:
    # The control socket's path must fit in sun_path (108 bytes); tmp_path may not.
    control_dir = Path(tempfile.mkdtemp(prefix="knotc", dir="/tmp"))
    try:
        with primary_and_secondary(
            tmp_path,
            lambda directory, port, ddnsd: start_knot(
                directory, control_dir / "knot.sock", port, ddnsd, knot_as
            ),
            knot_as.primary,
        ) as pair:
            yield pair
    finally:
        shutil.rmtree(control_dir, ignore_errors=True)


@pytest.fixture
def with_knot(tmp_path: Path) -> Iterator[Pair]:
    with knot_and_ddnsd(tmp_path) as pair:
        yield pair


def knot_transfers(log: str) -> list[str]:
    """Knot's incoming transfers in order: "AXFR", "IXFR", or "IXFR->AXFR" for an IXFR
    answered with the whole zone (Knot logs "receiving AXFR-style IXFR", then an AXFR)."""
    kinds: list[str] = []
    fallback = False
    for line in log.splitlines():
        if "receiving AXFR-style IXFR" in line:
            kinds.append("IXFR->AXFR")
            fallback = True
        elif match := re.search(r"\] (AXFR|IXFR), incoming, .* started", line):
            if not (fallback and match[1] == "AXFR"):
                kinds.append(match[1])
            fallback = False
    return kinds


def ddnsd_transfers(log: str) -> list[str]:
    """What ddnsd logged it sent: "AXFR", "IXFR" (from the journal), "IXFR->AXFR"."""
    kinds: list[str] = []
    for line in log.splitlines():
        if f"AXFR of {ZONE} at serial" in line:
            kinds.append("AXFR")
        elif f"IXFR of {ZONE} from serial" in line:
            kinds.append("IXFR->AXFR" if "not in the journal" in line else "IXFR")
    return kinds


def test_knot_follows_by_ixfr_from_the_journal_after_notify(with_knot: Pair) -> None:
    pair = with_knot
    pair.secondary.follows(pair.ddnsd)
    assert knot_transfers(pair.secondary.log()) == ["AXFR"]  # bootstrapping: nothing to diff
    for i in range(3):
        update_address(pair.ddnsd, f"192.0.2.{10 + i}")
        # Knot's refresh timer is hours away (the SOA's): only NOTIFY brings it this soon.
        pair.secondary.follows(pair.ddnsd)
        assert addresses(pair.secondary.port) == [f"192.0.2.{10 + i}"]
    log = pair.secondary.log()
    kinds = knot_transfers(log)
    assert kinds[0] == "AXFR" and set(kinds[1:]) == {"IXFR"}, log
    assert pair.transfers_sent() == kinds
    # Knot checked the NOTIFYs' TSIG (and, with a key on the remote, every transfer's).
    assert "action notify, remote 127.0.0.1" in log and "key 'transfer.dyn.test.'" in log
    # Its own refresh (a signed SOA query, as when the SOA's refresh timer fires) is
    # answered signed: Knot finds the zone up to date and trusts the primary.
    config = pair.secondary.log_path.parent / "knot.conf"
    knotc(config, "zone-refresh", ZONE)
    deadline = time.monotonic() + 10
    while "zone is up-to-date" not in pair.secondary.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = pair.secondary.log()
    assert "zone is up-to-date" in log and "failed to verify TSIG" not in log, log


def test_knot_behind_a_ddnsd_restart_gets_the_whole_zone(with_knot: Pair) -> None:
    pair = with_knot
    config = pair.secondary.log_path.parent / "knot.conf"
    update_address(pair.ddnsd, "192.0.2.20")
    pair.secondary.follows(pair.ddnsd)
    # The journal is in memory only (docs/ddnsd.md, known limits): a secondary whose serial
    # is from before the restart cannot be given the steps since.
    knotc(config, "-b", "zone-freeze", ZONE)  # blocking: frozen before it returns
    update_address(pair.ddnsd, "192.0.2.21")
    pair.restart_ddnsd()
    update_address(pair.ddnsd, "192.0.2.22")
    count = len(knot_transfers(pair.secondary.log()))
    knotc(config, "zone-thaw", ZONE)  # the refresh the NOTIFY asked for runs now
    pair.secondary.follows(pair.ddnsd)
    assert addresses(pair.secondary.port) == ["192.0.2.22"]
    assert knot_transfers(pair.secondary.log())[count:] == ["IXFR->AXFR"], pair.secondary.log()
    assert pair.transfers_sent() == ["IXFR->AXFR"]
    # Steps made since the restart are journalled: the next change is incremental again.
    update_address(pair.ddnsd, "192.0.2.23")
    pair.secondary.follows(pair.ddnsd)
    assert knot_transfers(pair.secondary.log())[-1] == "IXFR"
    assert pair.transfers_sent() == ["IXFR->AXFR", "IXFR"]


def test_knot_at_the_serial_of_a_ddnsd_restart_still_gets_ixfr(with_knot: Pair) -> None:
    pair = with_knot
    update_address(pair.ddnsd, "192.0.2.20")
    pair.secondary.follows(pair.ddnsd)
    pair.restart_ddnsd()
    update_address(pair.ddnsd, "192.0.2.21")  # journalled from the serial Knot has
    pair.secondary.follows(pair.ddnsd)
    assert knot_transfers(pair.secondary.log())[-1] == "IXFR"
    assert pair.transfers_sent() == ["IXFR"]
    assert addresses(pair.secondary.port) == ["192.0.2.21"]


def test_knot_too_far_behind_the_journal_gets_the_whole_zone(with_knot: Pair) -> None:
    from ddnsd._zone import MAX_JOURNAL

    pair = with_knot
    pair.secondary.follows(pair.ddnsd)
    config = pair.secondary.log_path.parent / "knot.conf"
    knotc(config, "-b", "zone-freeze", ZONE)  # NOTIFY is acknowledged, the refresh waits
    behind = pair.secondary.serial()
    for i in range(MAX_JOURNAL + 1):
        update_address(pair.ddnsd, f"198.51.100.{i % 250 + 1}")
    assert primary_serial(pair.ddnsd) == (behind or 0) + MAX_JOURNAL + 1
    count = len(knot_transfers(pair.secondary.log()))
    knotc(config, "zone-thaw", ZONE)  # the refresh the NOTIFY asked for runs now
    pair.secondary.follows(pair.ddnsd)
    assert knot_transfers(pair.secondary.log())[count:] == ["IXFR->AXFR"]
    assert pair.transfers_sent()[-1] == "IXFR->AXFR"
    assert addresses(pair.secondary.port) == [f"198.51.100.{MAX_JOURNAL % 250 + 1}"]


@pytest.mark.parametrize(
    ("knot_as", "rcode"),
    [
        # The same host and key, from another loopback address: [transfer].allow holds
        # 127.0.0.1/32 only (all of 127/8 is loopback on Linux).
        (KnotAs(via="127.0.0.2"), "REFUSED"),
        (KnotAs(signed=False), "NOTAUTH"),  # a key is configured: unsigned is refused
    ],
)
def test_knot_is_refused_from_outside_the_allow_list_or_without_tsig(
    tmp_path: Path, knot_as: KnotAs, rcode: str
) -> None:
    with knot_and_ddnsd(tmp_path, knot_as) as pair:
        refused = f"AXFR, incoming, remote 127.0.0.1@{pair.ddnsd.dns_port}, server responded"
        wait_for(lambda: refused in pair.secondary.log(), "Knot's AXFR to be refused")
        assert f"{refused} with error '{rcode}'" in pair.secondary.log()
        assert pair.secondary.serial() is None  # Knot has no zone to serve
        assert pair.transfers_sent() == []


# -- NSD ----------------------------------------------------------------------------------


def nsd_config(directory: Path, port: int, ddnsd: Ddnsd) -> str:
    return f"""
server:
    ip-address: 127.0.0.1
    port: {port}
    username: ""
    chroot: ""
    zonesdir: "{directory}"
    pidfile: "{directory}/nsd.pid"
    xfrdfile: "{directory}/xfrd.state"
    xfrdir: "{directory}"
    zonelistfile: "{directory}/zone.list"
    database: ""
    logfile: "{directory}/nsd.log"
    verbosity: 2
remote-control:
    control-enable: no
key:
    name: "{TRANSFER_KEY}"
    algorithm: hmac-sha256
    secret: "{ddnsd.transfer_key}"
zone:
    name: "{ZONE}"
    zonefile: "{ZONE}.zone"
    request-xfr: AXFR 127.0.0.1@{ddnsd.dns_port} {TRANSFER_KEY}
    allow-notify: 127.0.0.1 {TRANSFER_KEY}
"""


def start_nsd(directory: Path, port: int, ddnsd: Ddnsd) -> Secondary | None:
    """NSD on `port`, started; None if the port was taken."""
    require("nsd")
    config = directory / "nsd.conf"
    config.write_text(nsd_config(directory, port, ddnsd))
    log = directory / "nsd.log"
    log.unlink(missing_ok=True)
    process = subprocess.Popen(
        ["nsd", "-d", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    def reload(primary: Ddnsd) -> None:
        raise NotImplementedError("the NSD test does not restart ddnsd")

    secondary = Secondary(process, port, log, reload)
    wait_for(
        lambda: (
            process.poll() is not None
            or "nsd started" in secondary.log()
            or "could not be started" in secondary.log()
        ),
        "nsd to start",
    )
    if "nsd started" not in secondary.log():
        stop_process(process)
        assert "Address already in use" in secondary.log(), secondary.log()
        return None
    return secondary


def test_nsd_as_a_secondary_transfers_and_follows_notify(tmp_path: Path) -> None:
    with primary_and_secondary(tmp_path, start_nsd) as pair:
        update_address(pair.ddnsd, "192.0.2.10")
        wait_for(lambda: addresses(pair.secondary.port) == ["192.0.2.10"], "NSD's first copy")
        # The next change reaches the secondary by NOTIFY, not by its refresh timer.
        update_address(pair.ddnsd, "192.0.2.11")
        wait_for(lambda: addresses(pair.secondary.port) == ["192.0.2.11"], "NSD to follow")
        pair.secondary.follows(pair.ddnsd)
        assert set(pair.transfers_sent()) == {"AXFR"}  # NSD is told to ask for AXFR only
    assert "TSIG verified with key transfer.dyn.test" in pair.secondary.log()


# -- refusals, with dnspython as the client -------------------------------------------------


def transfer_key(ddnsd: Ddnsd) -> dict[dns.name.Name, dns.tsig.Key]:
    key = dns.tsig.Key(TRANSFER_KEY, base64.b64decode(ddnsd.transfer_key), dns.tsig.HMAC_SHA256)
    return {key.name: key}


def pull(ddnsd: Ddnsd, *, source: str = "127.0.0.1", signed: bool = True) -> dns.zone.Zone:
    zone = dns.zone.Zone(ZONE)
    query, _ = dns.xfr.make_query(
        zone,
        None,
        keyring=transfer_key(ddnsd) if signed else None,
        keyname=dns.name.from_text(TRANSFER_KEY),
    )
    dns.query.inbound_xfr(
        "127.0.0.1", zone, query, port=ddnsd.dns_port, timeout=5, lifetime=10, source=source
    )
    return zone


@pytest.fixture
def primary(tmp_path: Path) -> Iterator[Ddnsd]:
    prepare(tmp_path)
    daemon = start(tmp_path)
    try:
        yield daemon
    finally:
        stop(daemon)


def test_a_client_outside_the_allow_list_is_refused(primary: Ddnsd) -> None:
    update_address(primary, "192.0.2.30")
    # The same host and key: only the source address differs (127/8 is all loopback; the
    # allow list holds 127.0.0.1/32).
    assert pull(primary).get_rdataset("nas1", "A")[0].address == "192.0.2.30"  # type: ignore[index]
    with pytest.raises(dns.xfr.TransferError) as refused:
        pull(primary, source="127.0.0.2")
    assert refused.value.rcode == dns.rcode.REFUSED


def test_an_unsigned_axfr_is_refused_when_a_key_is_configured(primary: Ddnsd) -> None:
    with pytest.raises(dns.xfr.TransferError) as refused:
        pull(primary, signed=False)
    assert refused.value.rcode == dns.rcode.NOTAUTH
    # A wrong secret: refused with BADSIG, which dnspython reports as the peer's verdict.
    wrong = dns.tsig.Key(TRANSFER_KEY, b"\x00" * 32, dns.tsig.HMAC_SHA256)
    query = dns.message.make_query(ZONE, dns.rdatatype.AXFR)
    query.use_tsig({wrong.name: wrong}, keyname=wrong.name)
    with pytest.raises(dns.tsig.PeerBadSignature):
        dns.query.tcp(query, "127.0.0.1", port=primary.dns_port, timeout=5)
    assert pull(primary).get_rdataset("@", "SOA") is not None  # the right key: served


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_a_signed_soa_query_is_answered_signed(primary: Ddnsd, transport: str) -> None:
    # A secondary's refresh check (RFC 1996 4.7): a reply that is not signed fails its TSIG
    # check, and the secondary counts the primary unusable until a NOTIFY comes.
    query = dns.message.make_query(ZONE, dns.rdatatype.SOA)
    query.use_tsig(transfer_key(primary), keyname=dns.name.from_text(TRANSFER_KEY))
    ask = dns.query.udp if transport == "udp" else dns.query.tcp
    response = ask(query, "127.0.0.1", port=primary.dns_port, timeout=5)
    assert response.had_tsig  # and dnspython verified it against the request's MAC
    [soa] = response.answer
    assert soa.rdtype == dns.rdatatype.SOA and soa[0].serial >= 1
    # An unsigned SOA query is an ordinary query, answered by the query path.
    plain = ask(dns.message.make_query(ZONE, "SOA"), "127.0.0.1", port=primary.dns_port, timeout=5)
    assert not plain.had_tsig and plain.answer[0][0].serial == soa[0].serial


def test_knot_takes_notify_from_the_address_ddnsd_serves_on(tmp_path: Path) -> None:
    # ddnsd on 127.0.0.3: Knot's ACL takes NOTIFY from there only, as it would from a
    # primary's public address. From an unbound socket it would come from 127.0.0.1 (the
    # route's choice), be dropped, and Knot would wait for its refresh timer, hours away.
    with knot_and_ddnsd(tmp_path, KnotAs(primary="127.0.0.3")) as pair:
        pair.secondary.follows(pair.ddnsd)
        update_address(pair.ddnsd, "192.0.2.20")
        pair.secondary.follows(pair.ddnsd, timeout_s=10)
        assert addresses(pair.secondary.port) == ["192.0.2.20"]
        assert "action notify, remote 127.0.0.3" in pair.secondary.log()
