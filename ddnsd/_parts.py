"""What a ddnsd process builds from its config, the main process and its workers alike: the
zones, the DNS server and its listening sockets. Knows nothing of replication or of update
channels: the handlers for UPDATE and zone transfers are passed in.
"""

from __future__ import annotations

import errno
import socket

import dns.name
import trio

from config import DdnsdConfig, HostPort
from service import Boundary

from ._answer import Responder
from ._rrl import RateLimiter
from ._server import DnsServer, MessageHandler
from ._zone import SoaFields, Zone, ZoneSet

__all__ = [
    "bind_dns_pair",
    "build_dns_server",
    "build_zones",
    "notify_sources",
    "serve_dns_pair",
]


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def bind_dns_pair(
    address: HostPort, reuse_port: bool = False
) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket on the same address and port (port 0: the same free port).

    With `reuse_port`, worker processes can bind the same pair and the kernel spreads
    queries among them.
    """
    for _ in range(20):
        udp = socket.socket(_family(address.host), socket.SOCK_DGRAM)
        if reuse_port:
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        udp.bind((address.host, address.port))
        port = udp.getsockname()[1]
        tcp = socket.socket(_family(address.host), socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            tcp.bind((address.host, port))
        except OSError as exc:
            udp.close()
            tcp.close()
            if address.port == 0 and exc.errno == errno.EADDRINUSE:
                continue  # the free UDP port is taken for TCP: draw another
            raise
        tcp.listen(1024)
        return udp, tcp
    raise OSError(errno.EADDRINUSE, f"no free port pair for {address}")


def notify_sources(config: DdnsdConfig) -> tuple[str, ...]:
    """Where NOTIFY leaves from, per family: `[transfer].notify_source`, else the first DNS
    listen address of each family that is not a wildcard (from a wildcard, the route
    chooses, as it would for any socket)."""
    chosen = list(config.transfer.notify_source)
    for address in config.dns.listen:
        host = address.host
        if host not in ("0.0.0.0", "::") and all((":" in a) != (":" in host) for a in chosen):
            chosen.append(host)
    return tuple(chosen)


def build_zones(config: DdnsdConfig) -> ZoneSet:
    zone = config.zone
    soa = SoaFields(
        zone.primary_ns,
        zone.hostmaster,
        zone.refresh_s,
        zone.retry_s,
        zone.expire_s,
        zone.negative_ttl_s,
    )
    nameservers = zone.nameservers or (zone.primary_ns,)
    device_zone = Zone(zone.name, soa, nameservers)
    link_zone = Zone(zone.link_zone, soa, nameservers) if zone.link_zone else None
    return ZoneSet(
        device_zone,
        link_zone,
        zone.relay_addresses,
        zone.default_ttl_s,
        zone.nameserver_addresses,
        zone.caa,
    )


def build_dns_server(
    config: DdnsdConfig,
    responder: Responder,
    boundary: Boundary,
    *,
    updates: MessageHandler,
    transfers: MessageHandler,
    transfer_key: dns.name.Name | None = None,
) -> DnsServer:
    """The DNS server of one process; also gives `responder` the server's own EDNS
    options (NSID, cookies), which the config holds."""
    responder.configure(nsid=config.dns.nsid.encode("ascii"), cookies=config.dns.cookies)
    return DnsServer(
        responder,
        RateLimiter.from_config(config.rrl),
        boundary,
        updates=updates,
        transfers=transfers,
        transfer_key=transfer_key,
        max_tcp_clients=config.dns.max_tcp_clients,
        tcp_idle_timeout_s=config.dns.tcp_idle_timeout_s,
    )


async def serve_dns_pair(
    nursery: trio.Nursery, dns: DnsServer, udp: socket.socket, tcp: socket.socket
) -> None:
    """Serve a pair from `bind_dns_pair` in `nursery`; the caller closes the sockets."""
    await nursery.start(dns.serve_udp, udp)
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(tcp))
    await nursery.start(dns.serve_tcp, listener)
