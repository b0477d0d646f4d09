"""Certificates from an ACME CA (RFC 8555), obtained and renewed by the daemon that uses them:
the agent for the NAS's names, relayd for the names it ends TLS for (the install site).

One certificate names every name `Wanted` lists (the agent's: `<device>.<zone>`, `<device>.<link
zone>`, `*.<device>.<link zone>`). Every authorization is proved with DNS-01: the owner asks
ddnsd, through its own channel, for one TXT RRset holding every value of the order
(`set_challenge`; the agent's link-zone challenge name is a CNAME to its device-zone one),
waits until the DNS servers answer it, asks the CA to look, and empties it afterwards. The
ACME account key and the certificate key (ECDSA P-256) are made here and never leave the
machine; only the CSR and signed requests go to the CA, and only the challenge values to ddnsd.

Renewal comes at `renew_fraction` of the lifetime (or when the CA's renewal information, ARI,
says), with jitter, and failures back off up to `retry_max_s`; the certificate in place stays
until a new one is issued and written. The ACME calls are blocking (certbot's `acme`, on
`requests`): each runs in a worker thread.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.asyncresolver
import dns.exception
import dns.message
import dns.rdatatype
import josepy
import trio
from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from config import HostPort
from config.acme import AcmeCA
from tunnel import Backoff

__all__ = ["Certificates", "Installed", "SetChallenge", "Wanted"]

log = logging.getLogger("certs.acme")

#: Sets the challenge TXT RRset (or the CAA RRset) of the names (empty: removes it).
SetChallenge = Callable[[tuple[str, ...]], Awaitable[None]]

CHALLENGE_LABEL = "_acme-challenge"
ORDER_TIMEOUT_S = 120.0
MAX_SLEEP_S = 3600.0  # wake at least hourly: a suspended NAS or a clock step is noticed


@dataclass(frozen=True, slots=True)
class Wanted:
    """What one `Certificates` keeps in place: its names, and where the chain and key go
    (written atomically, the key mode 0600)."""

    names: tuple[str, ...]
    cert_file: Path
    key_file: Path

    @property
    def zone(self) -> str:
        """The zone the first name is in, whose nameservers answer the challenge."""
        return self.names[0].removeprefix("*.").split(".", 1)[1]


@dataclass(frozen=True, slots=True)
class Installed:
    """The certificate in place, as far as renewals are concerned."""

    not_before: float
    not_after: float
    names: frozenset[str]


def _private_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` atomically: a reader sees the old file or the new one whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _new_key_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _installed(cert_file: Path, key_file: Path) -> Installed | None:
    """The certificate in place, if there is one that matches its key."""
    try:
        leaf = x509.load_pem_x509_certificate(cert_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(*raw) != key.public_key().public_bytes(*raw):
        return None  # a crash between the two writes: obtain a new pair
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        dns_names = frozenset(names.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        dns_names = frozenset()
    return Installed(
        leaf.not_valid_before_utc.timestamp(), leaf.not_valid_after_utc.timestamp(), dns_names
    )


class Certificates:
    """Keeps a valid certificate for `wanted`'s names in place, from the configured CA; the
    account lives in `state_dir`/acme, `reload` runs after each new certificate is written."""

    def __init__(
        self,
        config: AcmeCA,
        wanted: Wanted,
        state_dir: Path,
        set_challenge: SetChallenge,
        *,
        set_caa: SetChallenge | None = None,
        reload: Callable[[], Awaitable[None]] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.wanted = wanted
        self.state = state_dir / "acme"
        self.set_challenge = set_challenge
        self.set_caa = set_caa if config.publish_caa else None
        self.reload = reload
        self.random = rng or random.SystemRandom()
        self.names = list(wanted.names)
        self.issued = 0
        self.failures = 0
        self.next_renewal: float | None = None  # wall-clock time, for tests and logs

    # -- when -------------------------------------------------------------------------------

    def renewal_due(self, installed: Installed | None, ari: float | None = None) -> float:
        """The wall-clock time to renew: now without a certificate for every name; else the
        CA's suggestion (ARI), or `renew_fraction` of the lifetime minus up to a tenth of it
        (jitter, so that a fleet does not renew at one instant)."""
        if installed is None or not set(self.names) <= installed.names:
            return time.time()
        if ari is not None:
            return ari
        lifetime = installed.not_after - installed.not_before
        jitter = self.random.uniform(0, lifetime / 10)
        return installed.not_before + lifetime * self.config.renew_fraction - jitter

    async def run(self) -> None:
        """Obtain and renew for as long as the agent runs."""
        backoff = Backoff(self.config.retry_initial_s, self.config.retry_max_s, random=self.random)
        due = self.renewal_due(_installed(self.wanted.cert_file, self.wanted.key_file))
        while True:
            self.next_renewal = due
            # In steps of at most an hour, on the wall clock: a NAS that slept or whose
            # clock was set does not renew late.
            while (wait := due - time.time()) > 0:  # noqa: ASYNC110 - a deadline, not an event
                await trio.sleep(min(wait, MAX_SLEEP_S))
            try:
                await self.obtain()
            except trio.Cancelled:
                raise
            except Exception as exc:  # every failure keeps the certificate in place
                self.failures += 1
                delay = backoff.next_delay()
                if isinstance(exc, messages.Error) and exc.code == "rateLimited":
                    # A CA's rate limits count hours or weeks (the acme library does not
                    # pass Retry-After on): wait the longest this agent waits.
                    delay = self.config.retry_max_s
                log.warning(
                    "getting a certificate for %s failed (%s); the one in place stays, next "
                    "try in %.3g s",
                    ", ".join(self.names),
                    _reason(exc),
                    delay,
                )
                due = time.time() + delay
                continue
            backoff.reset()
            installed = _installed(self.wanted.cert_file, self.wanted.key_file)
            due = self.renewal_due(installed, await self._ari())
            log.info(
                "certificate for %s in place until %s; renewal at %s",
                ", ".join(self.names),
                _iso(installed.not_after if installed else time.time()),
                _iso(due),
            )

    # -- how --------------------------------------------------------------------------------

    async def obtain(self) -> None:
        """One order: account, CSR, DNS-01 for every name, finalize, files, reload."""
        acme, account_key = await trio.to_thread.run_sync(self._client)
        await self._publish_caa(acme)
        key_pem = _new_key_pem()
        csr = crypto_util.make_csr(key_pem, self.names)
        log.info("ordering a certificate for %s", ", ".join(self.names))
        order = await trio.to_thread.run_sync(acme.new_order, csr)
        pending = []
        for authorization in order.authorizations:
            if authorization.body.status == messages.STATUS_VALID:
                continue  # proved recently: the CA reuses it
            challenge = next(
                (c for c in authorization.body.challenges if isinstance(c.chall, challenges.DNS01)),
                None,
            )
            if challenge is None:
                raise RuntimeError(
                    f"the CA offers no dns-01 challenge for {authorization.body.identifier.value}"
                )
            pending.append(challenge)
        values = tuple(dict.fromkeys(c.chall.validation(account_key) for c in pending))
        try:
            if values:
                await self.set_challenge(values)
                await self._visible(values)
                for challenge in pending:
                    response = challenge.chall.response(account_key)
                    await trio.to_thread.run_sync(acme.answer_challenge, challenge, response)
            deadline = datetime.datetime.now() + datetime.timedelta(seconds=ORDER_TIMEOUT_S)
            done = await trio.to_thread.run_sync(acme.poll_and_finalize, order, deadline)
        finally:
            if values:
                with trio.CancelScope(shield=True), trio.move_on_after(30):
                    try:
                        await self.set_challenge(())  # the record goes once the CA has looked
                    except Exception as exc:  # the next order replaces it
                        log.warning("removing the challenge record failed: %s", _reason(exc))
        # The key first, then the chain: a reader between the two sees a pair that does not
        # match, which `_installed` treats as no certificate; the reload comes after both.
        _private_file(self.wanted.key_file, key_pem)
        _private_file(self.wanted.cert_file, done.fullchain_pem.encode(), 0o644)
        if self.reload is not None:
            await self.reload()
        self.issued += 1  # issued, in place and reloaded

    def _client(self) -> tuple[client.ClientV2, josepy.jwk.JWKEC]:
        """The CA's client with this NAS's account (made on first use, then remembered)."""
        config = self.config
        account_key = self._account_key()
        net = client.ClientNetwork(account_key, alg=josepy.jwa.ES256, user_agent="nascloud-agent")
        if config.ca_file is not None:
            # requests' `verify` takes a CA bundle's path where the annotation says bool.
            net.verify_ssl = str(config.ca_file)  # type: ignore[assignment]
        directory = client.ClientV2.get_directory(config.directory_url, net)
        acme = client.ClientV2(directory, net)
        record = self.state / "account.json"
        try:
            known = json.loads(record.read_text())
        except (OSError, ValueError):
            known = {}
        if known.get("directory_url") == config.directory_url and known.get("uri"):
            net.account = messages.RegistrationResource(
                uri=known["uri"], body=messages.Registration()
            )
            return acme, account_key
        binding: dict[str, Any] | None = None
        if config.eab_kid is not None and config.eab_hmac_key_file is not None:
            binding = messages.ExternalAccountBinding.from_data(
                account_key.public_key(),
                config.eab_kid,
                config.eab_hmac_key_file.read_text().strip(),
                directory,
            )
        registration = messages.NewRegistration(
            contact=config.contact,
            terms_of_service_agreed=True,
            external_account_binding=binding,
        )
        try:
            account = acme.new_account(registration)
            uri = account.uri
        except errors.ConflictError as conflict:  # this key has an account already
            uri = conflict.location
            net.account = messages.RegistrationResource(uri=uri, body=messages.Registration())
        log.info("ACME account %s at %s", uri, config.directory_url)
        _private_file(
            record, json.dumps({"directory_url": config.directory_url, "uri": uri}).encode()
        )
        return acme, account_key

    async def _publish_caa(self, acme: client.ClientV2) -> None:
        """Ask for the device's CAA record (RFC 8657): only this NAS's account at this CA
        may get certificates for its names. The CA's name is the configured one or what its
        directory says (`caaIdentities`); without one, or if it is refused, the order goes
        on without it: the certificate comes first."""
        if self.set_caa is None or acme.net.account is None:
            return
        identities = (
            (self.config.caa_identity,)
            if self.config.caa_identity
            else tuple(acme.directory.meta.caa_identities or ())
        )
        if not identities:
            log.info("the CA names no CAA identity (set [acme].caa_identity): no CAA record")
            return
        uri = acme.net.account.uri
        records = tuple(f'0 issue "{name}; accounturi={uri}"' for name in identities)
        try:
            await self.set_caa(records)
        except Exception as exc:
            log.warning("publishing the CAA record failed (%s); ordering without it", _reason(exc))

    def _account_key(self) -> josepy.jwk.JWKEC:
        path = self.state / "account.key"
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except FileNotFoundError:
            _private_file(path, _new_key_pem())
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path} does not hold an ECDSA key")
        return josepy.jwk.JWKEC(key=key)

    async def _visible(self, values: tuple[str, ...]) -> None:
        """Wait until every DNS server answers the challenge with every value, for every name
        the order proves (the link zone's through its CNAME)."""
        servers = self.config.check_servers or await self._nameservers()
        owners = [f"{CHALLENGE_LABEL}.{name.removeprefix('*.')}" for name in self.names]
        deadline = trio.current_time() + self.config.propagation_timeout_s
        for server in servers:
            for owner in dict.fromkeys(owners):
                while not set(values) <= await _txt(server, owner):
                    if trio.current_time() > deadline:
                        raise TimeoutError(
                            f"{server} does not answer the challenge at {owner} after "
                            f"{self.config.propagation_timeout_s:g} s"
                        )
                    await trio.sleep(0.5)

    async def _nameservers(self) -> tuple[HostPort, ...]:
        """The zone's nameservers' addresses, from the system resolver."""
        resolver = dns.asyncresolver.Resolver()
        found: list[HostPort] = []
        for ns in await resolver.resolve(self.wanted.zone, "NS"):
            for rdtype in ("A", "AAAA"):
                try:
                    answer = await resolver.resolve(ns.target, rdtype)
                except dns.exception.DNSException:
                    continue
                found += [HostPort(str(rr), 53) for rr in answer]
        if not found:
            raise RuntimeError(f"no nameserver addresses found for {self.wanted.zone}")
        return tuple(found)

    async def _ari(self) -> float | None:
        """The CA's renewal window start (ARI), when it offers one."""
        try:
            acme, _ = await trio.to_thread.run_sync(self._client)
            pem = self.wanted.cert_file.read_bytes()
            when, _ = await trio.to_thread.run_sync(acme.renewal_time, pem)
        except Exception as exc:  # without ARI, the lifetime rule
            log.info("no renewal information from the CA (%s)", _reason(exc))
            return None
        return None if when is None else when.timestamp()


async def _txt(server: HostPort, owner: str) -> set[str]:
    """The TXT values `server` answers at `owner` (following a CNAME in the answer)."""
    query = dns.message.make_query(owner, "TXT")
    try:
        with trio.fail_after(3):
            response = await dns.asyncquery.udp(query, server.host, port=server.port)
    except (OSError, TimeoutError, trio.TooSlowError, dns.exception.DNSException):
        return set()
    return {
        b"".join(rdata.strings).decode(errors="replace")
        for rrset in response.answer
        if rrset.rdtype == dns.rdatatype.TXT
        for rdata in rrset
    }


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat(timespec="seconds")


def _reason(exc: BaseException) -> str:
    detail = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {detail}"[:300]
