"""kill -9 of relayd in the middle of browser transfers and DDNS updates: the agents (real
nascloud-agent processes) live through it and are back within their backoff cap once relayd
is restarted, and every update relayd acknowledged to an agent is in ddnsd afterwards.
test_kill_agent.py is the mirror case (an agent killed, relayd lets go)."""

from __future__ import annotations

import contextlib
import json
import signal
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import dns.asyncquery
import dns.message
import trio

import protocol
from tests.relay_harness import browse, echo_service, listening_service, prepare, relay_toml
from tests.unit.test_relayd_sni import client_hello
from tunnel import load_or_create_key, open_tunnel, public_key_base64

BIN = Path(sys.executable).parent
NAS = ("nas1", "nas2", "nas3")  # real agents, serving an echo service
SENDERS = ("dd1", "dd2")  # tunnels of the test's own, sending DDNS updates one after another
BACKOFF_CAP_S = 1.0
# An agent dials again at most one cap after relayd is back (full jitter), then TLS and the
# handshake; the rest is room for a machine shared with other tests.
BACK_WITHIN_S = BACKOFF_CAP_S + 4.0


def agent_toml(device: str, tunnel: str, service: str) -> str:
    return textwrap.dedent(f"""
        [agent]
        device_name = "{device}"
        key_file = "{device}.key"
        state_dir = "agent-{device}"
        [relay]
        addresses = ["{tunnel}"]
        server_name = "relay.test"
        ca_file = "ca.pem"
        [services]
        web = "{service}"
        [reconnect]
        initial_delay_s = 0.05
        max_delay_s = {BACKOFF_CAP_S}
        """)


def fixed_ports(toml: str, tunnel: str, https: str) -> str:
    """relayd's config with the tunnel and HTTPS ports it bound (the others stay 0)."""
    lines = toml.splitlines()
    for i, line in enumerate(lines):
        key = line.strip().split(" = ")[0]
        if key in ("listen", "https_listen"):
            lines[i] = f'{key} = "{tunnel if key == "listen" else https}"'
    return "\n".join(lines) + "\n"


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def _listening(path: Path) -> dict[str, list[str]] | None:
    return dict(json.loads(path.read_text())) if path.exists() else None


async def wait_for(path: Path, process: trio.Process, log: Path) -> dict[str, list[str]]:
    for _ in range(400):  # 20 s at most
        bound = _listening(path)
        if bound is not None:
            return bound
        if process.poll() is not None:
            break
        await trio.sleep(0.05)
    raise AssertionError(f"{path} did not appear: {process!r}:\n{_tail(log)}")


@asynccontextmanager
async def process(argv: list[str], log: Path, cwd: Path) -> AsyncIterator[trio.Process]:
    with log.open("ab") as out:
        running = await trio.lowlevel.open_process(
            argv, stdout=out, stderr=subprocess.STDOUT, cwd=cwd
        )
    try:
        yield running
    finally:
        if running.poll() is None:
            running.kill()
        with trio.CancelScope(shield=True):
            await running.wait()


class Senders:
    """Agents that send DDNS updates (A records, a new address each) one after another, and
    note which relayd acknowledged; they reconnect while relayd is away."""

    def __init__(self, tmp_path: Path, tunnel: str) -> None:
        host, port = tunnel.rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        self.keys = {d: load_or_create_key(tmp_path / f"{d}.key") for d in SENDERS}
        self.sent: dict[str, list[str]] = {d: [] for d in SENDERS}
        self.acked: dict[str, int] = {}  # device -> index in sent of the last acknowledged
        self.acks: dict[str, int] = dict.fromkeys(SENDERS, 0)
        self.stop = trio.Event()

    async def _session(self, device: str) -> None:
        tcp = await trio.open_tcp_stream(self.host, self.port)
        tls = trio.SSLStream(tcp, self.context, server_hostname="relay.test")
        conn = protocol.Connection(
            protocol.Role.CLIENT,
            server_name="relay.test",
            credentials=protocol.Credentials(protocol.AuthKind.DEVICE, device, self.keys[device]),
        )
        try:
            async with open_tunnel(tls, conn) as tunnel:
                while not self.stop.is_set():
                    n = len(self.sent[device])
                    address = f"198.51.{SENDERS.index(device) + 100}.{n % 250 + 1}"
                    if n >= 250:
                        address = f"203.0.{n // 250}.{n % 250 + 1}"
                    self.sent[device].append(address)
                    await tunnel.send_message(
                        protocol.DdnsUpdate(n, device, device, "A", (address,))
                    )
                    with trio.fail_after(10):
                        reply = await tunnel.receive_message()
                    if reply == protocol.Ack(n):
                        self.acked[device] = n
                        self.acks[device] += 1
        finally:
            await trio.aclose_forcefully(tls)  # also when the handshake failed

    async def run(self, device: str) -> None:
        for _ in range(10_000):  # bounded: 0.05 s apart, far beyond the test's own bound
            if self.stop.is_set():
                return
            try:
                await self._session(device)
            except* (OSError, trio.BrokenResourceError, trio.TooSlowError, protocol.ProtocolError):
                pass  # relayd is away: dial again
            await trio.sleep(0.05)


async def transfer(https: str, device: str, moved: dict[str, int]) -> None:
    """A browser's long transfer through relayd to `device`'s echo service, until cut."""
    host, port = https.rsplit(":", 1)
    chunk = b"t" * 16384
    with contextlib.suppress(OSError, trio.BrokenResourceError):
        async with await trio.open_tcp_stream(host, int(port)) as stream:
            hello = client_hello(f"{device}.link.test")
            await stream.send_all(hello)
            got = 0
            while got < len(hello):
                data = await stream.receive_some(65536)
                if not data:
                    return
                got += len(data)
            for _ in range(100_000):
                await stream.send_all(chunk)
                got = 0
                while got < len(chunk):
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    got += len(data)
                moved[device] += len(chunk)


async def until(condition: Callable[[], bool], timeout_s: float, why: Callable[[], str]) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return
        await trio.sleep(0.02)
    raise AssertionError(why())


async def test_relayd_killed_mid_transfer_and_mid_update(tmp_path: Path) -> None:
    ca = await prepare(tmp_path, NAS + SENDERS)
    cert = ca.issue_cert("ddnsd.test")
    cert.private_key_pem.write_to_path(str(tmp_path / "ddnsd.test.key"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "ddnsd.test.crt"))
    relay_key = load_or_create_key(tmp_path / "relay-service.key")
    (tmp_path / "ddnsd.toml").write_text(
        textwrap.dedent(f"""
            [ddnsd]
            state_dir = "ddnsd"
            registry = "registry.sqlite3"
            [zone]
            name = "dyn.test"
            primary_ns = "ns1.dyn.test"
            hostmaster = "hostmaster.dyn.test"
            [dns]
            listen = ["127.0.0.1:0"]
            [protocol]
            listen = "127.0.0.1:0"
            server_name = "ddnsd.test"
            cert_file = "ddnsd.test.crt"
            key_file = "ddnsd.test.key"
            [protocol.services]
            relayd = "{public_key_base64(relay_key)}"
            """)
    )
    service = await listening_service()
    service_address = f"127.0.0.1:{service.getsockname()[1]}"
    with trio.fail_after(90):
        async with (
            trio.open_nursery() as nursery,
            process(
                [str(BIN / "ddnsd"), "--config", str(tmp_path / "ddnsd.toml")],
                tmp_path / "ddnsd.log",
                tmp_path,
            ) as ddnsd,
        ):
            nursery.start_soon(echo_service, service)
            ddnsd_ports = await wait_for(
                tmp_path / "ddnsd" / "listening.json", ddnsd, tmp_path / "ddnsd.log"
            )
            link = textwrap.dedent(f"""
                [ddnsd]
                address = "{ddnsd_ports["protocol"][0]}"
                server_name = "ddnsd.test"
                key_file = "relay-service.key"
                ca_file = "ca.pem"
                """)
            config = tmp_path / "relayd.toml"
            config.write_text(relay_toml() + link)
            relay_argv = [str(BIN / "relayd"), "--config", str(config)]
            relay_log = tmp_path / "relayd.log"
            listening = tmp_path / "relay" / "listening.json"
            agents: list[trio.Process] = []
            async with contextlib.AsyncExitStack() as stack:
                relayd = await stack.enter_async_context(process(relay_argv, relay_log, tmp_path))
                ports = await wait_for(listening, relayd, relay_log)
                tunnel, https = ports["tunnel"][0], ports["https"][0]
                # The restarted relayd takes the same ports: the agents know only these.
                config.write_text(fixed_ports(relay_toml(), tunnel, https) + link)
                for device in NAS:
                    path = tmp_path / f"agent-{device}.toml"
                    path.write_text(agent_toml(device, tunnel, service_address))
                    agents.append(
                        await stack.enter_async_context(
                            process(
                                [str(BIN / "nascloud-agent"), "--config", str(path)],
                                tmp_path / f"agent-{device}.log",
                                tmp_path,
                            )
                        )
                    )

                def logs() -> str:
                    return "\n".join(
                        f"--- {p.name}:\n{p.read_text()[-2000:]}" for p in tmp_path.glob("*.log")
                    )

                for device in NAS:  # each agent's tunnel is up
                    for _ in range(300):
                        reply = await browse(https, b"ping", name=f"{device}.link.test")
                        if reply.endswith(b"ping"):
                            break
                        await trio.sleep(0.05)
                    else:
                        raise AssertionError(logs())
                senders = Senders(tmp_path, tunnel)
                moved = dict.fromkeys(NAS, 0)
                async with trio.open_nursery() as load:
                    for device in SENDERS:
                        load.start_soon(senders.run, device)
                    for device in NAS:
                        load.start_soon(transfer, https, device, moved)
                    await until(
                        lambda: all(moved.values()) and min(senders.acks.values()) >= 5,
                        20,
                        lambda: f"moved {moved}, acks {senders.acks}\n{logs()}",
                    )
                    relayd.send_signal(signal.SIGKILL)
                    await relayd.wait()
                    acks_before = dict(senders.acks)
                    listening.unlink()
                    await trio.sleep(BACKOFF_CAP_S * 2)  # the agents back off to their cap
                    assert all(a.poll() is None for a in agents), logs()
                    relayd = await stack.enter_async_context(
                        process(relay_argv, relay_log, tmp_path)
                    )
                    await wait_for(listening, relayd, relay_log)
                    back_at = time.monotonic()
                    back: dict[str, float] = {}
                    for _ in range(int(BACK_WITHIN_S / 0.05)):
                        for device in set(NAS) - back.keys():
                            reply = await browse(https, b"ping", name=f"{device}.link.test")
                            if reply.endswith(b"ping"):
                                back[device] = time.monotonic() - back_at
                        if len(back) == len(NAS):
                            break
                        await trio.sleep(0.05)
                    print(f"agents back after {back} s; acks before the kill {acks_before}")
                    assert len(back) == len(NAS), f"back: {back}\n{logs()}"
                    assert max(back.values()) <= BACK_WITHIN_S
                    # The senders are back too, and acknowledged some more.
                    await until(
                        lambda: all(senders.acks[d] >= acks_before[d] + 3 for d in SENDERS),
                        20,
                        lambda: f"acks {senders.acks} (before the kill {acks_before})\n{logs()}",
                    )
                    senders.stop.set()
                    load.cancel_scope.cancel()
                assert all(a.poll() is None for a in agents), logs()
                dns_port = int(ddnsd_ports["dns"][0].rsplit(":", 1)[1])
                for device in SENDERS:
                    query = dns.message.make_query(f"{device}.dyn.test", "A")
                    response = await dns.asyncquery.udp(
                        query, "127.0.0.1", port=dns_port, timeout=5
                    )
                    [rrset] = response.answer
                    stored = senders.sent[device].index(rrset[0].address)
                    # The last acknowledged update, or one after it that was in flight.
                    assert stored >= senders.acked[device], (device, stored, senders.acked)
            nursery.cancel_scope.cancel()
    service.close()
