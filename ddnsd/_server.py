"""The DNS listeners: UDP with one wait for readability per burst of up to 64 datagrams,
and TCP with many queries per connection (RFC 7766), an idle timeout (for each query to
arrive and for each answer to be taken) and a client cap.

Queries go to the Responder; UPDATE messages and zone transfers go to their handlers, which
may block on disk or send several messages. One bad client never stalls another, and no
message stops the server: each datagram, each message on TCP, each UPDATE and each transfer
is one unit of the Boundary, answered SERVFAIL (or dropped) if it fails unexpectedly.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Final

import dns.message
import dns.name
import trio

from httpapi import Histogram, Metric
from registry import mask_address
from service import Boundary, LogBudget, serve_contained

from ._answer import COOKIE_CLIENT, COOKIE_VALID, Responder, servfail_reply
from ._rrl import RateLimiter, Verdict, truncated

__all__ = ["LATENCY_BUCKETS", "LATENCY_SHIFT", "DnsServer", "Latency", "MessageHandler"]

log = logging.getLogger("ddnsd.dns")

BURST: Final = 64
MAX_UDP_QUERY: Final = 4096
OPCODE_NOTIFY: Final = 4
OPCODE_UPDATE: Final = 5
TYPE_AXFR: Final = 252
TYPE_IXFR: Final = 251
TYPE_SOA: Final = 6
# A TSIG RR's type, class ANY and TTL 0: in a query, the mark of a secondary's signed request.
_TSIG_MARK: Final = b"\x00\xfa\x00\xff\x00\x00\x00\x00"
RCODE_FORMERR: Final = 1
RCODE_SERVFAIL: Final = 2

#: (message, client address, transport is TCP) -> replies to send, in order
MessageHandler = Callable[[bytes, str, bool], Awaitable[list[bytes]]]
#: UDP answer latency buckets: below 2**(LATENCY_SHIFT + i) ns for i < LATENCY_BUCKETS
#: (8.2 µs, 16.4 µs, ... 134 ms), then the rest: one shift and bit_length an answer, no search.
LATENCY_SHIFT: Final = 13
LATENCY_BUCKETS: Final = 15


class Latency:
    """A histogram of nanoseconds for a Prometheus histogram: `counts[i]` observations of
    fewer than 2**(LATENCY_SHIFT + i) ns and at least the bound before; the list is long
    enough for any int64, and everything past the last bucket is shown as +Inf."""

    def __init__(self) -> None:
        self.counts = [0] * 64
        self.sum_ns = 0

    def observe_ns(self, ns: int) -> None:
        self.counts[(ns >> LATENCY_SHIFT).bit_length()] += 1
        self.sum_ns += ns

    @property
    def count(self) -> int:
        return sum(self.counts)

    @property
    def sum(self) -> float:
        """Seconds."""
        return self.sum_ns / 1e9

    @staticmethod
    def bounds() -> tuple[float, ...]:
        """Each bucket's `le` in seconds: its largest whole number of nanoseconds."""
        return tuple((2 ** (LATENCY_SHIFT + i) - 1) / 1e9 for i in range(LATENCY_BUCKETS))

    def metric(self) -> Metric:
        """As the histogram `nascloud_dns_answer_seconds` of the daemon's metrics."""
        histogram = Histogram(
            "nascloud_dns_answer_seconds",
            "UDP answers, from the wake-up that read them to sent (main process).",
            self.bounds(),
        )
        rest = sum(self.counts[LATENCY_BUCKETS:])  # past the last bound: +Inf
        histogram.load([*self.counts[:LATENCY_BUCKETS], rest], self.sum)
        return histogram.metric()


def _opcode(message: bytes) -> int:
    return (message[2] >> 3) & 0x0F


def _signed_soa(message: bytes, key: dns.name.Name | None) -> bool:
    """A query for SOA signed with the transfer key `key`: a secondary's refresh check, which
    must be answered signed (RFC 8945 5.3). Cheap first: an additional record, then the TSIG
    bytes, the type; the key's name last (an ACME client signs its SOA queries with the
    device's key: those are ordinary queries, for the query path)."""
    if key is None or message[10:12] == b"\x00\x00" or _TSIG_MARK not in message:
        return False
    if _question_type(message) != TYPE_SOA:
        return False
    try:
        return dns.message.from_wire(message, keyring=False).keyname == key
    except Exception:  # dnspython raises many types on malformed input: the query path's
        return False


def _udp_ixfr(message: bytes) -> bool:
    """An IXFR query (its SOA in the authority section), which is answered on UDP with the
    current SOA (RFC 1995 section 2) by the transfer handler, not the query path."""
    return message[8:10] != b"\x00\x00" and _question_type(message) == TYPE_IXFR


def _question_type(message: bytes) -> int | None:
    """The type of the first question, read without parsing the whole message."""
    if len(message) < 12 or message[4:6] == b"\x00\x00":
        return None
    pos = 12
    while pos < len(message) and message[pos] != 0:
        if message[pos] > 63:
            return None
        pos += message[pos] + 1
    if pos + 3 > len(message):
        return None
    return int.from_bytes(message[pos + 1 : pos + 3], "big")


class DnsServer:
    def __init__(
        self,
        responder: Responder,
        rate_limiter: RateLimiter,
        boundary: Boundary,
        *,
        updates: MessageHandler | None = None,
        transfers: MessageHandler | None = None,
        transfer_key: dns.name.Name | None = None,
        notify_replies: Callable[[bytes, str], None] | None = None,
        max_tcp_clients: int = 1000,
        tcp_idle_timeout_s: float = 10.0,
        max_concurrent_updates: int = 512,
    ) -> None:
        self.responder = responder
        self.rate_limiter = rate_limiter
        self.boundary = boundary
        self.updates = updates
        self.transfers = transfers
        self.transfer_key = transfer_key  # the name of the secondaries' TSIG key, if any
        self.notify_replies = notify_replies
        self.max_tcp_clients = max_tcp_clients
        self.tcp_idle_timeout_s = tcp_idle_timeout_s
        self._update_slots = trio.CapacityLimiter(max_concurrent_updates)
        self.tcp_clients = 0
        self.queries = 0
        self.dropped = 0
        self.malformed = 0
        self.rcodes = [0] * 16  # responses sent, by rcode
        #: UDP answers sent by the query path, from the wake-up that read the datagram (a
        #: burst's later ones waited for those before) to its answer sent.
        self.latency = Latency()
        self._malformed_log = LogBudget("malformed messages", clock=trio.current_time)

    def _note_malformed(self, address: str, outcome: str) -> None:
        """One log line per malformed message, within the budget (service.LogBudget), with
        the client's address masked to its prefix (privacy rule 2)."""
        self.malformed += 1
        if self._malformed_log.allow():
            log.warning("malformed message from %s: %s", mask_address(address), outcome)

    async def _contained(
        self, unit: str, handler: MessageHandler, message: bytes, client: str, tcp: bool
    ) -> list[bytes]:
        """`handler`'s replies to `message`, as one unit of work: SERVFAIL if it fails."""
        try:
            return await handler(message, client, tcp)
        except Exception:
            self.boundary.failed(unit)
            reply = servfail_reply(message)
            return [reply] if reply is not None else []

    async def update(self, message: bytes, client: str, tcp: bool) -> list[bytes]:
        """The replies to an UPDATE, as one unit of work; also what the main process runs
        for the UPDATE messages its workers forward."""
        assert self.updates is not None
        return await self._contained("dns_update", self.updates, message, client, tcp)

    # -- UDP --------------------------------------------------------------------------------

    async def serve_udp(
        self, sock: socket.socket, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Answer datagrams on a bound, non-blocking UDP socket until cancelled."""
        sock.setblocking(False)
        responder = self.responder
        respond = responder.respond
        clock = time.perf_counter_ns
        latency = self.latency
        counts = latency.counts
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                await trio.lowlevel.wait_readable(sock)
                now = trio.current_time()
                # Latency counts from this wake-up: a datagram read later in the burst
                # waited for the ones before it, as its client did.
                woke = clock()
                for _ in range(BURST):
                    try:
                        query, address = sock.recvfrom(MAX_UDP_QUERY)
                    except BlockingIOError:
                        break
                    except OSError:
                        continue  # an ICMP error queued by the kernel for an earlier reply
                    self.queries += 1
                    # One datagram is one unit of work. The try costs nothing until it raises.
                    try:
                        # Bytes first, calls only when they say so: most queries are a
                        # plain opcode 0 with nothing in the authority section.
                        if len(query) >= 12 and (
                            query[2] & 0x78
                            or ((query[8] or query[9]) and _udp_ixfr(query))
                            or ((query[10] or query[11]) and _signed_soa(query, self.transfer_key))
                        ):
                            self._udp_special(nursery, sock, query, address)
                            continue
                        response = respond(query, False, address[0])
                        if response is None:
                            self.dropped += 1
                            self._note_malformed(address[0], "dropped")
                            continue
                        if response[3] & 0x0F == RCODE_FORMERR:
                            self._note_malformed(address[0], "FORMERR")
                        # A valid server cookie proves the client's address: no reflection,
                        # so no rate limit (as BIND does it).
                        cookie = responder.cookie
                        if cookie != COOKIE_VALID:
                            # Looked up each time: a reload replaces the limiter.
                            verdict = self.rate_limiter.check(address[0], now)
                            if verdict is Verdict.DROP:
                                continue
                            if verdict is Verdict.SLIP:
                                slipped = None
                                if cookie == COOKIE_CLIENT:
                                    slipped = responder.badcookie(query, address[0])
                                response = slipped or truncated(response)
                        self.rcodes[response[3] & 0x0F] += 1
                        try:
                            sock.sendto(response, address)
                        except OSError:
                            continue  # a full send buffer or an unreachable client: UDP may drop
                        elapsed = clock() - woke
                        counts[(elapsed >> LATENCY_SHIFT).bit_length()] += 1
                        latency.sum_ns += elapsed
                    except Exception:
                        self.boundary.failed("dns_udp")
                        self._udp_servfail(sock, query, address, now)

    def _udp_servfail(
        self, sock: socket.socket, query: bytes, address: tuple[str, int], now: float
    ) -> None:
        """Answer a datagram whose handling failed with SERVFAIL, within the rate limit. The
        reply is never longer than the query, so it amplifies nothing."""
        reply = servfail_reply(query)
        if reply is None:
            return
        try:
            verdict = self.rate_limiter.check(address[0], now)
        except Exception:
            return  # the limiter itself failed (counted above): drop rather than flood
        if verdict is not Verdict.SEND:
            return
        self.rcodes[RCODE_SERVFAIL] += 1
        try:
            sock.sendto(reply, address)
        except OSError:
            pass

    def _udp_special(
        self, nursery: trio.Nursery, sock: socket.socket, message: bytes, address: tuple[str, int]
    ) -> None:
        opcode = _opcode(message)
        if opcode == OPCODE_NOTIFY and message[2] & 0x80 and self.notify_replies is not None:
            try:
                self.notify_replies(message, address[0])
            except Exception:
                self.boundary.failed("dns_notify_reply")  # a reply: no answer
            return
        if opcode == OPCODE_UPDATE and self.updates is not None and not message[2] & 0x80:
            nursery.start_soon(self._udp_update, sock, message, address)
            return
        if opcode == 0 and self.transfers is not None and not message[2] & 0x80:
            # A signed SOA query or an IXFR: the transfer handler answers both.
            nursery.start_soon(self._udp_transfer, sock, message, address)
            return
        response = self.responder.respond(message)  # NOTIMP, FORMERR, or silence
        if (
            response is not None
            and self.rate_limiter.check(address[0], trio.current_time()) is Verdict.SEND
        ):
            try:
                sock.sendto(response, address)
            except OSError:
                pass

    async def _udp_update(
        self, sock: socket.socket, message: bytes, address: tuple[str, int]
    ) -> None:
        await self._udp_in_a_slot("an UPDATE", self.update, sock, message, address)

    async def _udp_transfer(
        self, sock: socket.socket, message: bytes, address: tuple[str, int]
    ) -> None:
        assert self.transfers is not None
        transfers = self.transfers

        async def answer(message: bytes, client: str, tcp: bool) -> list[bytes]:
            return await self._contained("dns_transfer", transfers, message, client, tcp)

        await self._udp_in_a_slot("a transfer request", answer, sock, message, address)

    async def _udp_in_a_slot(
        self,
        what: str,
        handler: MessageHandler,
        sock: socket.socket,
        message: bytes,
        address: tuple[str, int],
    ) -> None:
        """Answer a datagram that needs a task (an UPDATE, a transfer request) in one of the
        few slots they share; with none free, it is dropped (UDP: the client retries)."""
        try:
            self._update_slots.acquire_nowait()
        except trio.WouldBlock:
            log.warning(
                "dropping %s: %d already in progress", what, self._update_slots.total_tokens
            )
            return
        try:
            for reply in await handler(message, address[0], False):
                try:
                    sock.sendto(reply, address)
                except OSError:
                    pass
        finally:
            self._update_slots.release()

    # -- TCP --------------------------------------------------------------------------------

    async def serve_tcp(
        self,
        listener: trio.SocketListener,
        *,
        task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        # Each message is a unit of its own (below); the connection is one too, for whatever
        # fails between messages.
        await serve_contained(
            self._tcp_client, self.boundary, "dns_tcp_connection", listener, task_status=task_status
        )

    async def _tcp_client(self, stream: trio.SocketStream) -> None:
        if self.tcp_clients >= self.max_tcp_clients:
            await trio.aclose_forcefully(stream)
            return
        self.tcp_clients += 1
        try:
            peer = stream.socket.getpeername()[0]
            buffer = bytearray()
            while True:
                # The whole next message must arrive within the idle timeout: a client that
                # trickles bytes cannot hold its slot for longer than that per message.
                with trio.move_on_after(self.tcp_idle_timeout_s):
                    while len(buffer) < 2 or len(buffer) < 2 + int.from_bytes(buffer[:2], "big"):
                        data = await stream.receive_some(65536)
                        if not data:
                            return
                        buffer += data
                if len(buffer) < 2 or len(buffer) < 2 + int.from_bytes(buffer[:2], "big"):
                    return  # idle, or too slow
                size = int.from_bytes(buffer[:2], "big")
                message = bytes(buffer[2 : 2 + size])
                del buffer[: 2 + size]
                self.queries += 1
                for reply in await self.tcp_replies(message, peer):
                    # Each answer must be taken within the idle timeout too: a client that
                    # sends queries and never reads would otherwise hold its slot forever.
                    with trio.move_on_after(self.tcp_idle_timeout_s) as deadline:
                        await stream.send_all(len(reply).to_bytes(2, "big") + reply)
                    if deadline.cancelled_caught:
                        return  # not read in time: closed below
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self.tcp_clients -= 1
            await trio.aclose_forcefully(stream)

    async def tcp_replies(self, message: bytes, peer: str) -> list[bytes]:
        """The replies to one message on TCP, as one unit of work: SERVFAIL if it fails."""
        if len(message) >= 12 and not message[2] & 0x80:
            opcode = _opcode(message)
            if opcode == OPCODE_UPDATE and self.updates is not None:
                async with self._update_slots:
                    return await self.update(message, peer, True)
            if (
                opcode == 0
                and self.transfers is not None
                and (
                    _question_type(message) in (TYPE_AXFR, TYPE_IXFR)
                    or _signed_soa(message, self.transfer_key)
                )
            ):
                return await self._contained("dns_transfer", self.transfers, message, peer, True)
        try:
            return self._tcp_answer(message, peer)
        except Exception:
            self.boundary.failed("dns_tcp")
            reply = servfail_reply(message)
            return [reply] if reply is not None else []

    def _tcp_answer(self, message: bytes, peer: str) -> list[bytes]:
        response = self.responder.respond(message, True, peer)
        if response is None or response[3] & 0x0F == RCODE_FORMERR:
            self._note_malformed(peer, "FORMERR" if response else "dropped")
        return [response] if response is not None else []
