"""The DynDNS2 update API (`/nic/update`) as ddclient, inadyn and routers speak it.

Basic auth: the device's FQDN and its DynDNS2 token. Replies are one line per host in request
order (`good <ip>`, `nochg <ip>`, `nohost`, `notfqdn`) or one error word for the request; error
words never contain "good", "nochg" or "OK" (inadyn matches substrings), and throttling is 200
`abuse`, never 429 (inadyn exits on 429). A and AAAA are updated independently."""

from __future__ import annotations

import base64
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, urlsplit

from httpapi import HttpRequest, HttpResponse
from protocol import canonical_address
from registry import AccessLogWriter, Registry, RegistryFull, RegistryGone, TokenKind, hash_secret
from service import Boundary, SlidingWindow

from ._store import FeatureOff, ZoneStore
from ._xfr import in_networks
from ._zone import Change

__all__ = ["DynDns2"]

log = logging.getLogger("ddnsd.dyndns2")

MAX_HOSTS: Final = 20
IPV6_KEYS: Final = ("myipv6", "myip6", "ipv6")
CHALLENGE: Final = [("WWW-Authenticate", 'Basic realm="nascloud DynDNS2", charset="UTF-8"')]
TOKEN_CACHE_S: Final = 10.0  # a revoked token may work this long at most
#: Never a device's address on the Internet: "this network" and unspecified, loopback,
#: link-local, multicast, broadcast (RFC 6890).
UNREACHABLE: Final = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "224.0.0.0/4",
        "255.255.255.255/32",
        "::/128",
        "::1/128",
        "fe80::/10",
        "ff00::/8",
    )
)
#: Addresses no one outside the operator's network can reach: a LAN's (RFC 1918, RFC 4193),
#: a carrier-grade NAT's shared space (RFC 6598: the CPE's WAN side behind CGNAT, which is
#: what a router's own detection finds there) and the reserved 240/4 (RFC 1112, never
#: routed). Published only with allow_private_addresses, for deployments inside such a net.
PRIVATE: Final = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "100.64.0.0/10",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "240.0.0.0/4",
        "fc00::/7",
    )
)


def _text(status: int, body: str, headers: list[tuple[str, str]] | None = None) -> HttpResponse:
    return HttpResponse(status, (body + "\n").encode(), headers=headers or [])


@dataclass(frozen=True, slots=True)
class _Reply:
    """A response and its outcomes, as decided: one per host line, or one for the request.
    Metrics and the access log take the outcomes from here, never from the body."""

    outcomes: tuple[str, ...]
    response: HttpResponse

    @classmethod
    def once(
        cls,
        outcome: str,
        status: int = 200,
        body: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> _Reply:
        """An error of the request, the account or the system: given once."""
        return cls((outcome,), _text(status, outcome if body is None else body, headers))

    @classmethod
    def per_host(cls, outcomes: list[str], shown: str) -> _Reply:
        """One line per host in request order; `good` and `nochg` carry the address(es)."""
        lines = [f"{o} {shown}" if o in ("good", "nochg") else o for o in outcomes]
        return cls(tuple(outcomes), _text(200, "\n".join(lines)))


class DynDns2:
    def __init__(
        self,
        registry: Registry,
        store: ZoneStore,
        *,
        updates_per_host_per_minute: int = 10,
        default_ttl_s: int = 60,
        allow_private_addresses: bool = False,
        trusted_proxies: tuple[str, ...] = (),
        clock: Callable[[], float] = time.monotonic,
        boundary: Boundary | None = None,
    ) -> None:
        self.registry = registry
        self.store = store
        self.zone = store.zones.device_zone.origin
        #: Update requests per device per minute; `limit` is what a reload changes.
        self.per_host = SlidingWindow(
            updates_per_host_per_minute, 60.0, count_refused=False, clock=clock
        )
        self.default_ttl_s = default_ttl_s
        #: Whether the PRIVATE ranges (10/8, CGNAT, ...) may be published; a reload sets it.
        self.allow_private_addresses = allow_private_addresses
        #: Reverse proxies whose X-Forwarded-For names the client; a reload sets them.
        self._proxies: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.trusted_proxies = trusted_proxies
        self._clock = clock
        self.boundary = boundary if boundary is not None else Boundary()
        self._tokens: dict[bytes, tuple[str | None, float]] = {}  # hash -> (device, until)
        #: Outcomes: one per host line of an update, one per request otherwise.
        self.counts: dict[str, int] = {}
        #: Where authenticated requests are recorded (device, full client address, result).
        self.access_log: AccessLogWriter | None = None

    @property
    def trusted_proxies(self) -> tuple[str, ...]:
        return tuple(str(n) for n in self._proxies)

    @trusted_proxies.setter
    def trusted_proxies(self, networks: tuple[str, ...]) -> None:
        self._proxies = [ipaddress.ip_network(n, strict=False) for n in networks]

    def client(self, request: HttpRequest) -> str:
        """Who sent the update: the connection's peer, or, when that is a trusted proxy,
        the last address of X-Forwarded-For (the one the proxy itself saw; any before it
        came from the client and proves nothing). Without a readable one, the peer."""
        peer = request.client
        forwarded = request.headers.get("x-forwarded-for")
        if not forwarded or not in_networks(peer, self._proxies):
            return peer
        found = canonical_address(forwarded.rsplit(",", 1)[-1].strip())
        return found[1] if found is not None else peer

    async def handle(self, request: HttpRequest) -> HttpResponse:
        started = time.time()
        client = self.client(request)
        try:
            reply, device = await self._handle(request, client)
        except Exception:
            # One request is one unit of work: it alone fails, with the word the clients
            # read as "the server's fault, try later" (ddclient and inadyn back off on 911).
            self.boundary.failed("dyndns2")
            reply, device = _Reply.once("911"), None
        for outcome in reply.outcomes:
            self.counts[outcome] = self.counts.get(outcome, 0) + 1
        if device is not None and self.access_log is not None:
            self.access_log.add(
                started,
                device,
                client,
                "dyndns2",
                len(request.body),
                len(reply.response.body),
                ",".join(dict.fromkeys(reply.outcomes)),
            )
        return reply.response

    async def _handle(self, request: HttpRequest, client: str) -> tuple[_Reply, str | None]:
        """The reply, and the device whose password the request carried (if any)."""
        if request.method not in ("GET", "POST"):
            allow = [("Allow", "GET, POST")]
            return _Reply.once("method_not_allowed", 405, "method not allowed", allow), None
        try:
            url = urlsplit(request.target)
        except ValueError:  # e.g. "//[": brackets that open no IPv6 address (fuzz_dyndns2)
            return _Reply.once("not_found", 404, "not found"), None  # not a path we serve
        if not url.path.endswith("/update"):
            return _Reply.once("not_found", 404, "not found"), None
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        if request.method == "POST" and request.body:
            params.update(parse_qsl(request.body.decode("latin-1"), keep_blank_values=True))
        device = await self._authenticate(request.headers.get("authorization", ""))
        if device is not None and not await self.store.knows_device(device):
            # Deleted since its token was cached: the token went with it (the registry
            # drops both at once), so the answer is the same as after the cache expires.
            self._forget(device)
            device = None
        if device is None:
            return _Reply.once("badauth", 401, headers=CHALLENGE), None
        return await self._update(device, params, client), device

    async def _update(self, device: str, params: dict[str, str], client: str) -> _Reply:
        if not self.per_host.allow(device):
            return _Reply.once("abuse")
        hostnames = [h.strip().lower().rstrip(".") for h in params.get("hostname", "").split(",")]
        hostnames = [h for h in hostnames if h]
        if not hostnames:
            return _Reply.once("notfqdn")
        if len(hostnames) > MAX_HOSTS:
            return _Reply.once("numhost")
        # Each host has its own code, in request order; None is the caller's own name, whose
        # code the update decides.
        own = f"{device}.{self.zone}"
        codes = [None if h == own else "notfqdn" if "." not in h else "nohost" for h in hostnames]
        if own not in hostnames:
            return _Reply.per_host([c for c in codes if c is not None], "")
        addresses = self._addresses(params, client)
        if addresses is None:
            # The dyndns2 return codes have no word for a bad address. dnserr is the one
            # clients know that means "not applied, try again later" (nsupdate.info answers
            # a bad myip with it too): inadyn retries it, while an unknown word such as
            # "badip" is fatal to inadyn (it exits), and detection that found a LAN address
            # is often transient (link coming up).
            return _Reply.once("dnserr")
        offline = params.get("offline", "").upper() in ("YES", "1", "TRUE")
        changes = self._changes(device, addresses, offline)
        try:
            result = await self.store.update(device, changes)
        except FeatureOff:
            # Its owner turned DDNS off (its passwords went with it; this one was cached):
            # the clients' word for "this host is not yours to update" stops them.
            return _Reply.per_host([c or "nohost" for c in codes], "")
        except (RegistryFull, RegistryGone) as exc:  # one line: expected, not a bug
            log.warning("a DynDNS2 update was not stored: %s", exc)
            return _Reply.once("911")
        except Exception:
            log.exception("storing a DynDNS2 update failed")
            return _Reply.once("911")
        word = "good" if result.changed else "nochg"
        shown = ",".join(address for _, address in addresses)
        return _Reply.per_host([c or word for c in codes], shown)

    def _forget(self, device: str) -> None:
        for digest in [d for d, (name, _) in self._tokens.items() if name == device]:
            del self._tokens[digest]

    async def _authenticate(self, header: str) -> str | None:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):  # binascii.Error, or non-ASCII text
            return None
        username, sep, secret = decoded.partition(":")
        if not sep:
            return None
        now = self._clock()
        digest = hash_secret(secret)  # the cache holds no secrets, only their hashes
        cached = self._tokens.get(digest)
        if cached is not None and cached[1] > now:
            device = cached[0]
        else:
            token = await self.registry.verify_token(TokenKind.DYNDNS2, secret)
            device = token.device_name if token is not None else None
            if len(self._tokens) > 100_000:
                self._tokens.clear()
            self._tokens[digest] = (device, now + TOKEN_CACHE_S)
        if device is None:
            return None
        # The username is the device's FQDN (the bare device name is accepted too).
        user = username.strip().lower().rstrip(".")
        if user not in (device, f"{device}.{self.zone}"):
            return None
        return device

    def _addresses(self, params: dict[str, str], client: str) -> list[tuple[int, str]] | None:
        """(version, canonical address) for each family given, IPv4 first; no address
        given means the connection's own. None if any is malformed or one that nobody
        could reach: a client whose detection found its LAN or loopback address must not
        publish it, and no half of a `v4,v6` pair is published without the other."""
        values = [v.strip() for v in params.get("myip", "").split(",") if v.strip()]
        for key in IPV6_KEYS:
            values += [v.strip() for v in params.get(key, "").split(",") if v.strip()]
        if not values:
            values = [client.split("%", 1)[0]]
        found: dict[int, str] = {}
        for value in values:
            if value.startswith("[") and value.endswith("]") and ":" in value:
                value = value[1:-1]  # an IPv6 address as URLs write it
            address = canonical_address(value)
            if address is None or not self._reachable(address[1]):
                return None
            found.setdefault(address[0], address[1])
        return sorted(found.items())

    def _reachable(self, address: str) -> bool:
        ip = ipaddress.ip_address(address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
            return False  # a scope means nothing off the link, and the zone cannot hold one
        if any(ip in network for network in UNREACHABLE):
            return False
        return self.allow_private_addresses or not any(ip in network for network in PRIVATE)

    def _changes(
        self, device: str, addresses: list[tuple[int, str]], offline: bool
    ) -> list[Change]:
        if offline:
            # Parked: no address at all until the next update.
            return [
                Change(device, "A", self.default_ttl_s, ()),
                Change(device, "AAAA", self.default_ttl_s, ()),
            ]
        # Only the families given are touched: a v4-only update keeps the AAAA.
        return [
            Change(device, "A" if version == 4 else "AAAA", self.default_ttl_s, (address,))
            for version, address in addresses
        ]
