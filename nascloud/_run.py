"""`nascloud run`: the local stack in the foreground, on loopback, with no setup.

Creates a state directory with a development CA, a registry holding a demo account and
device, and a config per daemon; starts ddnsd, relayd, a demo NAS agent and a small demo NAS
web page behind it, and a second, brand-new NAS in install mode with its setup page, to be
found by its cloud key on the install site; prints what to try. The same endpoints go to
`<state dir>/endpoints.json` for scripts and tests. A daemon that fails is restarted, as
systemd's `Restart=on-failure` would; Ctrl-C stops everything (exit 0). Every port is derived
from the base port.
"""

from __future__ import annotations

import base64
import json
import os
import secrets as secrets_module
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trio

from config import AgentConfig, DdnsdConfig, HostPort, PortalConfig, RelaydConfig, dumps
from config import agent as agent_config
from config import ddnsd as ddnsd_config
from config import portal as portal_config
from config import relayd as relayd_config
from config.acme import AcmeCA
from nasagent import load_or_create_cloud_key
from portal import new_hasher
from protocol import public_key_bytes
from registry import Registry, TokenKind
from tunnel import load_or_create_key, public_key_base64

from ._devca import DevCA

__all__ = ["run_stack"]

ZONE = "dyn.localhost"
LINK_ZONE = "link.localhost"
RELAY_NAME = "relay.localhost"
DDNSD_NAME = "ddnsd.localhost"
DEMO_DEVICE = "demo"
BIN = Path(sys.executable).parent

# Offsets from the base port.
(
    DNS,
    DYNDNS2,
    HTTPS,
    HTTP,
    TUNNEL,
    DATA,
    API,
    DDNSD_PROTOCOL,
    DEMO_NAS,
    METRICS,
    DNS_METRICS,
    NEW_NAS_SETUP,
    ACME,
    ACME_MANAGEMENT,
    PORTAL,
) = range(15)
PORTS = 15

DEMO_PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>Demo NAS</title></head>
<body style="font-family: sans-serif; margin: 3em">
<h1>Hello from your NAS</h1>
<p>This page came from the demo NAS through relayd. The relay passed the TLS bytes through
untouched: this certificate is the NAS's own.</p>
</body></html>
"""


SETUP_PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>New NAS setup</title></head>
<body style="font-family: sans-serif; margin: 3em">
<h1>Welcome to your new NAS</h1>
<p>This is the setup page of a NAS that is not initialised yet, found by its cloud key.</p>
</body></html>
"""


class _DemoNas(BaseHTTPRequestHandler):
    page = DEMO_PAGE

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.page)))
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the demo logs nothing about its visitors


async def _prepare_registry(state_dir: Path, agent_key_path: Path) -> dict[str, str]:
    """The demo account and device, created once; their secrets are kept in the state dir."""
    secrets_path = state_dir / "demo-secrets.json"
    if secrets_path.exists():
        loaded: dict[str, str] = json.loads(secrets_path.read_text())
        return loaded
    device_key = load_or_create_key(agent_key_path)
    registry = Registry.open_sqlite(state_dir / "registry.sqlite3")
    try:
        # The demo owner signs in to the portal as "demo" with this password.
        password = secrets_module.token_urlsafe(12)
        account = await registry.create_owner(
            "demo", new_hasher().hash(password), "Demo owner", "demo@example.org"
        )
        await registry.enrol_device(account.account_id, DEMO_DEVICE, public_key_bytes(device_key))
        _, dyndns2 = await registry.create_token(TokenKind.DYNDNS2, device_name=DEMO_DEVICE)
        _, api = await registry.create_token(TokenKind.API, account_id=account.account_id)
        key = await registry.create_tsig_key(DEMO_DEVICE, f"{DEMO_DEVICE}.{ZONE}")
    finally:
        await registry.aclose()
    secrets = {
        "account": account.account_id,
        "portal_password": password,
        "dyndns2_password": dyndns2,
        "api_token": api,
        "tsig": f"hmac-sha256:{key.key_name}:{base64.b64encode(key.secret).decode()}",
    }
    secrets_path.write_text(json.dumps(secrets, indent=2) + "\n")
    secrets_path.chmod(0o600)
    return secrets


def _write_configs(state: Path, base: int, ca: DevCA, nas_port: int, acme: bool) -> None:
    """Each daemon's config, built as its model and written by `config.dumps`: relative
    paths are taken from the state directory, where the files are. With `acme`, the demo
    NAS's agent and relayd (its install site) get their certificates from the local Pebble."""
    relay_cert, relay_key = ca.issue("relay", RELAY_NAME)
    site_cert = site_key = None
    if not acme:  # with Pebble, relayd gets the site's certificate itself
        site_cert, site_key = ca.issue("install", f"install.{LINK_ZONE}", f"*.install.{LINK_ZONE}")
    install = relayd_config.InstallSiteSection(
        cert_file=site_cert,
        key_file=site_key,
        pairing_url=f"http://localhost:{base + PORTAL}/pair",  # where NAS asking are sent
        operator_name="nascloud on this machine",
    )
    ddnsd_cert, ddnsd_key = ca.issue("ddnsd", DDNSD_NAME)
    service_key = load_or_create_key(state / "relayd" / "service.key")
    registry = Path("registry.sqlite3")

    def local(offset: int) -> HostPort:
        return HostPort("127.0.0.1", base + offset)

    def listen(offset: int) -> tuple[HostPort, ...]:
        return (local(offset),)

    ddnsd = DdnsdConfig(
        ddnsd=ddnsd_config.DdnsdSection(
            state_dir=Path("ddnsd"),
            registry=registry,
            metrics_listen=listen(DNS_METRICS),
            access_log_key_file=Path("ddnsd/access-log.keys"),
        ),
        zone=ddnsd_config.ZoneSection(
            name=ZONE,
            primary_ns=f"ns1.{ZONE}",
            hostmaster=f"hostmaster.{ZONE}",
            link_zone=LINK_ZONE,
            relay_addresses=("127.0.0.1",),
        ),
        dns=ddnsd_config.DnsSection(listen=(local(DNS),)),
        rrl=ddnsd_config.RrlSection(responses_per_second=0),
        dyndns2=ddnsd_config.DynDns2Section(listen=listen(DYNDNS2)),
        protocol=ddnsd_config.ProtocolSection(
            listen=listen(DDNSD_PROTOCOL),
            server_name=DDNSD_NAME,
            cert_file=ddnsd_cert,
            key_file=ddnsd_key,
            services={"relayd": public_key_base64(service_key)},
        ),
    )
    relayd = RelaydConfig(
        relay=relayd_config.RelaySection(
            name=RELAY_NAME,
            state_dir=Path("relayd"),
            registry=registry,
            metrics_listen=listen(METRICS),
            access_log_key_file=Path("relayd/access-log.keys"),
        ),
        tunnel=relayd_config.TunnelSection(
            listen=listen(TUNNEL),
            data_listen=listen(DATA),
            cert_file=relay_cert,
            key_file=relay_key,
        ),
        ingress=relayd_config.IngressSection(
            link_zone=LINK_ZONE, https_listen=listen(HTTPS), http_listen=listen(HTTP)
        ),
        api=relayd_config.ApiSection(listen=listen(API)),
        install=install,
        ddnsd=relayd_config.DdnsdLink(
            address=local(DDNSD_PROTOCOL),
            server_name=DDNSD_NAME,
            key_file=Path("relayd/service.key"),
            ca_file=ca.cert_path,
        ),
        acme=AcmeCA(
            directory_url=f"https://localhost:{base + ACME}/dir",
            ca_file=ca.cert_path,  # Pebble's own API, with a certificate of the dev CA
            check_servers=(local(DNS),),
            propagation_timeout_s=20,
            retry_initial_s=1,
            retry_max_s=30,
        )
        if acme
        else None,
    )
    relay = agent_config.RelayLink(
        addresses=(local(TUNNEL),), server_name=RELAY_NAME, ca_file=ca.cert_path
    )
    reconnect = agent_config.ReconnectSection(initial_delay_s=0.2, max_delay_s=5)
    certificates = None
    if acme:
        certificates = agent_config.AcmeSection(
            directory_url=f"https://localhost:{base + ACME}/dir",
            ca_file=ca.cert_path,  # Pebble's own API, with a certificate of the dev CA
            zone=ZONE,
            link_zone=LINK_ZONE,
            cert_file=DEMO_CERT,
            key_file=DEMO_KEY,
            # The demo NAS's web server is this process: SIGUSR1 reloads its certificate.
            reload_command=("kill", "-USR1", str(os.getpid())),
            check_servers=(local(DNS),),
            propagation_timeout_s=20,
            retry_initial_s=1,
            retry_max_s=30,
        )
    agent = AgentConfig(
        agent=agent_config.AgentSection(
            device_name=DEMO_DEVICE, key_file=Path("agent/device.key"), state_dir=Path("agent")
        ),
        relay=relay,
        services={"web": HostPort("127.0.0.1", nas_port)},
        reconnect=reconnect,
        acme=certificates,
    )
    # A NAS that is not set up yet: no device_name, so the agent runs in install mode.
    new_nas = AgentConfig(
        agent=agent_config.AgentSection(
            key_file=Path("new-nas/device.key"), state_dir=Path("new-nas")
        ),
        relay=relay,
        install=agent_config.InstallSection(
            cloud_key_file=Path("new-nas/cloud.key"), setup_service=local(NEW_NAS_SETUP)
        ),
        reconnect=reconnect,
    )
    # A NAS with no identity that asks for a pairing code, for an owner to take on the portal.
    pair_nas = AgentConfig(
        agent=agent_config.AgentSection(
            key_file=Path("pair-nas/device.key"), state_dir=Path("pair-nas"), pairing=True
        ),
        relay=relay,
        reconnect=reconnect,
    )
    portal = PortalConfig(
        portal=portal_config.PortalSection(
            listen=listen(PORTAL),
            operator_name="nascloud on this machine",
            zone=ZONE,
            link_zone=LINK_ZONE,
            state_dir=Path("portal"),
            registry=registry,
            # Passkeys are bound to a host name, not an address; browsers count localhost as
            # secure, so they work here over plain HTTP.
            public_url=f"http://localhost:{base + PORTAL}",
            access_log_key_files=(
                Path("relayd/access-log.keys"),
                Path("ddnsd/access-log.keys"),
            ),
        )
    )
    header = "# Written by `nascloud run`; edits are overwritten on the next run.\n"
    for name, model in (
        ("ddnsd.toml", ddnsd),
        ("relayd.toml", relayd),
        ("agent.toml", agent),
        ("new-nas.toml", new_nas),
        ("pair-nas.toml", pair_nas),
        ("portal.toml", portal),
    ):
        (state / name).write_text(dumps(model, header))


DEMO_CERT = Path("agent/web/cert.pem")  # what the demo NAS's agent gets from Pebble
DEMO_KEY = Path("agent/web/key.pem")
INSTALL_CERT = Path("relayd/acme/install.crt")  # what relayd gets from Pebble for its site


class _DemoNasServer(ThreadingHTTPServer):
    """The demo NAS's HTTPS server; `use` swaps its certificate for the next connections, as
    a NAS's web server does on reload."""

    def __init__(self, port: int, cert: Path, key: Path) -> None:
        super().__init__(("127.0.0.1", port), _DemoNas)
        self.context = self._context(cert, key)

    @staticmethod
    def _context(cert: Path, key: Path) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        return context

    def use(self, cert: Path, key: Path) -> None:
        self.context = self._context(cert, key)

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        return self.context.wrap_socket(connection, server_side=True), address


def _start_demo_nas(ca: DevCA, port: int) -> _DemoNasServer:
    cert, key = ca.issue("demo-nas", f"{DEMO_DEVICE}.{LINK_ZONE}", f"*.{DEMO_DEVICE}.{LINK_ZONE}")
    server = _DemoNasServer(port, cert, key)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _start_pebble(state: Path, base: int, ca: DevCA) -> _Daemon | None:
    """Pebble, Let's Encrypt's test CA, checking DNS-01 against ddnsd; None if not installed."""
    if shutil.which("pebble") is None:
        return None
    cert, key = ca.issue("pebble", "localhost")
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{base + ACME}",
            "managementListenAddress": f"127.0.0.1:{base + ACME_MANAGEMENT}",
            "certificate": str(cert),
            "privateKey": str(key),
            "httpPort": 5002,
            "tlsPort": 5001,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    (state / "pebble").mkdir(exist_ok=True)
    (state / "pebble" / "pebble.json").write_text(json.dumps(config))
    argv = ["pebble", "-config", str(state / "pebble" / "pebble.json")]
    argv += ["-dnsserver", f"127.0.0.1:{base + DNS}"]
    # At once, no refused nonces (its deliberate hurdles for clients); its log to a file.
    hurry = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
    return _Daemon("pebble", argv, log=state / "pebble" / "pebble.log", env=hurry)


def _pebble_root(state: Path, base: int, ca: DevCA) -> Path | None:
    """Pebble's issuing root (a new one at each start), saved for curl and browsers."""
    context = ssl.create_default_context(cafile=str(ca.cert_path))
    url = f"https://localhost:{base + ACME_MANAGEMENT}/roots/0"
    for _ in range(100):  # 10 s at most
        try:
            with urllib.request.urlopen(url, context=context, timeout=2) as answer:
                root = state / "pebble" / "root.pem"
                root.write_bytes(answer.read())
                return root
        except OSError:
            time.sleep(0.1)
    return None


def _start_setup_page(port: int) -> ThreadingHTTPServer:
    """The new NAS's setup UI: plain HTTP on the NAS (relayd ends TLS for relayed setup)."""
    handler = type("_SetupPage", (_DemoNas,), {"page": SETUP_PAGE})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _wait_for(path: Path, daemons: list[_Daemon], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if any(d.process.poll() is not None for d in daemons) or time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


RESTART_DELAY_S = 1.0  # as RestartSec= in the systemd units (2 s there), shorter for a demo
RESTART_BURST = 5  # and StartLimitBurst= within StartLimitIntervalSec=
RESTART_INTERVAL_S = 60.0


class _Daemon:
    """One daemon of the stack, restarted when it fails, as `Restart=on-failure` would."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log = log  # where its output goes (None: the terminal, as the daemons' does)
        self.env = None if env is None else {**os.environ, **env}
        self.starts: list[float] = []
        self.process = self._start()
        self.stopped = False  # exited cleanly by itself: not restarted

    def _start(self) -> subprocess.Popen[bytes]:
        self.starts = [t for t in self.starts if t > time.monotonic() - RESTART_INTERVAL_S]
        self.starts.append(time.monotonic())
        # A session of its own: Ctrl-C in the terminal reaches `nascloud run` only, which
        # then stops every daemon in order.
        if self.log is None:
            return subprocess.Popen(self.argv, start_new_session=True, env=self.env)
        with self.log.open("ab") as output:
            return subprocess.Popen(
                self.argv,
                start_new_session=True,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=self.env,
            )

    def supervise(self) -> bool:
        """Restart the daemon if it failed; False when it fails too often to go on."""
        status = self.process.poll()
        if status is None or self.stopped:
            return True
        if status == 0:
            print(f"nascloud run: {self.name} stopped (exit 0); not restarted", file=sys.stderr)
            self.stopped = True
            return True
        how = f"signal {-status}" if status < 0 else f"status {status}"
        if len(self.starts) >= RESTART_BURST:
            print(
                f"nascloud run: {self.name} failed ({how}) {RESTART_BURST} times within "
                f"{RESTART_INTERVAL_S:g} s; stopping the stack",
                file=sys.stderr,
            )
            return False
        print(
            f"nascloud run: {self.name} failed ({how}); restarting it in {RESTART_DELAY_S:g} s",
            file=sys.stderr,
        )
        time.sleep(RESTART_DELAY_S)
        self.process = self._start()
        return True

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()


def run_stack(state_dir: Path, base_port: int) -> int:
    state = state_dir.resolve()
    for sub in ("ddnsd", "relayd", "agent", "new-nas", "pair-nas", "portal"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    ca = DevCA(state / "ca")
    secrets = trio.run(_prepare_registry, state, state / "agent" / "device.key")
    secrets["cloud_key"] = load_or_create_cloud_key(state / "new-nas" / "cloud.key")
    # A new install window on every run, as a factory reset of the new NAS would give.
    (state / "new-nas" / "install-window.json").unlink(missing_ok=True)
    acme = shutil.which("pebble") is not None
    # Pebble forgets everything when it stops: the demo NAS's account and certificate too.
    for stale in (
        state / DEMO_CERT,
        state / DEMO_KEY,
        state / "agent/acme/account.json",
        state / INSTALL_CERT,
        state / "relayd/acme/install.key",
        state / "relayd/acme/account.json",
    ):
        stale.unlink(missing_ok=True)
    _write_configs(state, base_port, ca, base_port + DEMO_NAS, acme)
    nas = _start_demo_nas(ca, base_port + DEMO_NAS)
    signal.signal(signal.SIGUSR1, lambda *_: nas.use(state / DEMO_CERT, state / DEMO_KEY))
    setup_page = _start_setup_page(base_port + NEW_NAS_SETUP)
    for stale in (
        state / "ddnsd" / "listening.json",
        state / "relayd" / "listening.json",
        state / "portal" / "listening.json",
    ):
        stale.unlink(missing_ok=True)
    daemons: list[_Daemon] = []
    for stop in (signal.SIGTERM, signal.SIGHUP):  # a closed terminal stops the daemons too
        signal.signal(stop, lambda *_: sys.exit(0))
    try:
        daemons.append(
            _Daemon("ddnsd", [str(BIN / "ddnsd"), "--config", str(state / "ddnsd.toml")])
        )
        if not _wait_for(state / "ddnsd" / "listening.json", daemons, 30):
            print("nascloud run: ddnsd did not start", file=sys.stderr)
            return 1
        pebble = _start_pebble(state, base_port, ca) if acme else None
        if pebble is not None:
            daemons.append(pebble)
        daemons.append(
            _Daemon("relayd", [str(BIN / "relayd"), "--config", str(state / "relayd.toml")])
        )
        if not _wait_for(state / "relayd" / "listening.json", daemons, 30):
            print("nascloud run: relayd did not start", file=sys.stderr)
            return 1
        daemons.append(
            _Daemon(
                "the portal",
                [str(BIN / "nascloud-portal"), "--config", str(state / "portal.toml")],
            )
        )
        if not _wait_for(state / "portal" / "listening.json", daemons, 30):
            print("nascloud run: the portal did not start", file=sys.stderr)
            return 1
        root = _pebble_root(state, base_port, ca) if pebble is not None else None
        agents = (
            ("the demo NAS's agent", "agent"),
            ("the new NAS's agent", "new-nas"),
            ("the NAS to pair's agent", "pair-nas"),
        )
        for name, agent in agents:
            argv = [str(BIN / "nascloud-agent"), "--config", str(state / f"{agent}.toml")]
            daemons.append(_Daemon(name, argv))
        nas_root = install_root = ca.cert_path
        if root is not None and _wait_for(state / INSTALL_CERT, daemons, 30):
            install_root = root
        elif acme:
            print("nascloud run: relayd got no certificate for its install site", file=sys.stderr)
        if root is not None and _wait_for(state / DEMO_CERT, daemons, 30):
            nas.use(state / DEMO_CERT, state / DEMO_KEY)  # its reload may have come first
            nas_root = root
        elif acme:
            print(
                "nascloud run: the demo NAS got no certificate from Pebble; it keeps the "
                "development CA's",
                file=sys.stderr,
            )
        endpoints = _endpoints(state, base_port, ca, secrets, nas_root, root, install_root)
        (state / "endpoints.json").write_text(json.dumps(endpoints, indent=2) + "\n")
        _print_try(endpoints, secrets)
        while all(daemon.supervise() for daemon in daemons):
            time.sleep(0.2)
        return 1
    except (KeyboardInterrupt, SystemExit):
        return 0
    finally:
        for daemon in reversed(daemons):  # the agents first, ddnsd last
            daemon.stop()
        for daemon in reversed(daemons):
            try:
                daemon.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                daemon.process.kill()
                daemon.process.wait()
        for server in (nas, setup_page):
            server.shutdown()
            server.server_close()


def _endpoints(
    state: Path,
    base: int,
    ca: DevCA,
    secrets: dict[str, str],
    nas_root: Path,
    acme_root: Path | None,
    install_root: Path,
) -> dict[str, Any]:
    return {
        "zone": ZONE,
        "link_zone": LINK_ZONE,
        "ca_cert": str(ca.cert_path),
        "acme": {
            "directory_url": f"https://localhost:{base + ACME}/dir",
            "root_cert": str(acme_root) if acme_root is not None else None,
        },
        "dns": {"host": "127.0.0.1", "port": base + DNS},
        "dyndns2": {
            "url": f"http://127.0.0.1:{base + DYNDNS2}/nic/update",
            "username": f"{DEMO_DEVICE}.{ZONE}",
            "password": secrets["dyndns2_password"],
        },
        "rfc2136": {"tsig": secrets["tsig"]},
        "relay": {
            "https_port": base + HTTPS,
            "http_port": base + HTTP,
            "tunnel_port": base + TUNNEL,
            "data_port": base + DATA,
        },
        "api": {"url": f"http://127.0.0.1:{base + API}", "token": secrets["api_token"]},
        "portal": {
            "url": f"http://localhost:{base + PORTAL}/",
            "pair_url": f"http://localhost:{base + PORTAL}/pair",
            # the code the NAS waiting to be paired shows (until an owner took it)
            "pairing_file": str(state / "pair-nas" / "pairing.json"),
            "account_name": "demo",
            "password": secrets.get("portal_password"),
        },
        "install": {
            "url": f"https://install.{LINK_ZONE}:{base + HTTPS}/",
            "hostname": f"install.{LINK_ZONE}",
            "cloud_key": secrets["cloud_key"],
            "setup_url": f"http://127.0.0.1:{base + NEW_NAS_SETUP}/",
            "ca_cert": str(install_root),  # relayd's own certificate: Pebble's root
        },
        "metrics": {
            "url": f"http://127.0.0.1:{base + METRICS}/metrics",
            "ddnsd_url": f"http://127.0.0.1:{base + DNS_METRICS}/metrics",
        },
        "demo_device": {
            "name": DEMO_DEVICE,
            "hostname": f"{DEMO_DEVICE}.{ZONE}",
            "relay_hostname": f"{DEMO_DEVICE}.{LINK_ZONE}",
            "ca_cert": str(nas_root),  # what its certificate chains to: Pebble's root
        },
        "state_dir": str(state),
    }


def _print_try(endpoints: dict[str, Any], secrets: dict[str, str]) -> None:
    dns = endpoints["dns"]
    dyndns2 = endpoints["dyndns2"]
    relay = endpoints["relay"]
    host = endpoints["demo_device"]["hostname"]
    link = endpoints["demo_device"]["relay_hostname"]
    portal = endpoints["portal"]
    print(
        f"""
nascloud is running on loopback (state in {endpoints["state_dir"]}). Try:

  # the demo NAS's page, through the relay (TLS passed through: the certificate is the NAS's,
  # which its agent got by itself from the local ACME CA, Pebble, with DNS-01 over the tunnel)
  curl --cacert {endpoints["demo_device"]["ca_cert"]} \\
       --resolve {link}:{relay["https_port"]}:127.0.0.1 https://{link}:{relay["https_port"]}/

  # set the demo device's address, as a router or ddclient would, then ask the DNS server
  curl -u '{dyndns2["username"]}:{dyndns2["password"]}' \\
       '{dyndns2["url"]}?hostname={host}&myip=198.51.100.7'
  dig @{dns["host"]} -p {dns["port"]} {host} A

  # look the device up as its owner
  curl -H 'Authorization: Bearer {secrets["api_token"]}' \\
       {endpoints["api"]["url"]}/v1/devices/{endpoints["demo_device"]["name"]}

  # the encrypted access log, read with its keys
  {BIN}/nascloud logs --registry {endpoints["state_dir"]}/registry.sqlite3 \\
       --key-file {endpoints["state_dir"]}/relayd/access-log.keys \\
       --key-file {endpoints["state_dir"]}/ddnsd/access-log.keys

  # a brand-new NAS, found by its cloud key on the install site. From its own network
  # (here 127.0.0.1) the answer sends the browser straight to it:
  curl -i --cacert {endpoints["install"]["ca_cert"]} \\
       --resolve install.{LINK_ZONE}:{relay["https_port"]}:127.0.0.1 \\
       --data-urlencode 'cloud_key={secrets["cloud_key"]}' {endpoints["install"]["url"]}find
  # from another network (here 127.0.0.2) it offers a relayed setup session instead:
  curl --interface 127.0.0.2 --cacert {endpoints["install"]["ca_cert"]} \\
       --resolve install.{LINK_ZONE}:{relay["https_port"]}:127.0.0.1 \\
       --data-urlencode 'cloud_key={secrets["cloud_key"]}' {endpoints["install"]["url"]}find
  # (in a browser: map install.{LINK_ZONE} and *.install.{LINK_ZONE} to 127.0.0.1 and trust
  #  {endpoints["install"]["ca_cert"]}; open {endpoints["install"]["url"]})

  # the owner portal: open {portal["url"]} in a browser and sign in as "demo" with
  # {portal["password"] or "(an older run's password: create an account)"}, the demo NAS's
  # owner, or create an account of your own; with curl:
  jar=$(mktemp) && csrf=$(curl -s -c "$jar" {portal["url"]}sign-in \\
       | grep -m1 -o 'name="csrf" value="[0-9a-f]*"' | cut -d'"' -f4) && \\
  curl -s -L -b "$jar" -c "$jar" --data-urlencode "csrf=$csrf" \\
       --data-urlencode account_name=demo --data-urlencode 'password={portal["password"]}' \\
       {portal["url"]}sign-in | grep -o 'https://demo[^<"]*' | head -1

  # a NAS waiting to be paired: sign up on the portal (or sign in as demo), open
  # {portal["pair_url"]}, and type the code it shows, with a name of your choosing
  cat {portal["pairing_file"]} 2>/dev/null || echo "paired already: see the portal"

  # counters, no personal data
  curl {endpoints["metrics"]["url"]}

  # set an ACME DNS-01 challenge with RFC 2136
  printf '%s\\n' 'server {dns["host"]} {dns["port"]}' 'zone {endpoints["zone"]}' \\
       'update add _acme-challenge.{host} 60 TXT "token"' 'send' \\
    | nsupdate -y '{secrets["tsig"]}'

The same endpoints are in {endpoints["state_dir"]}/endpoints.json. Ctrl-C stops.
""",
        flush=True,
    )
