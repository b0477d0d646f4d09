"""The DNS listeners: UDP with one wait for readability per burst of up to 64 datagrams,
and TCP with many queries per connection (RFC 7766), an idle timeout and a client cap.

Queries go to the Responder; UPDATE messages and zone transfers go to their handlers, which
may block on disk or send several messages. One bad client never stalls another.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Final

import trio

from registry import mask_address

from ._answer import Responder
from ._rrl import RateLimiter, Verdict, truncated

__all__ = ["DnsServer", "MessageHandler"]

log = logging.getLogger("ddnsd.dns")

BURST: Final = 64
MAX_UDP_QUERY: Final = 4096
OPCODE_NOTIFY: Final = 4
OPCODE_UPDATE: Final = 5
TYPE_AXFR: Final = 252
TYPE_IXFR: Final = 251
RCODE_FORMERR: Final = 1
LOG_PER_SECOND: Final = 10

#: (message, client address, transport is TCP) -> replies to send, in order
MessageHandler = Callable[[bytes, str, bool], Awaitable[list[bytes]]]


def _opcode(message: bytes) -> int:
    return (message[2] >> 3) & 0x0F


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
        *,
        updates: MessageHandler | None = None,
        transfers: MessageHandler | None = None,
        notify_replies: Callable[[bytes, str], None] | None = None,
        max_tcp_clients: int = 1000,
        tcp_idle_timeout_s: float = 10.0,
        max_concurrent_updates: int = 512,
    ) -> None:
        self.responder = responder
        self.rate_limiter = rate_limiter
        self.updates = updates
        self.transfers = transfers
        self.notify_replies = notify_replies
        self.max_tcp_clients = max_tcp_clients
        self.tcp_idle_timeout_s = tcp_idle_timeout_s
        self._update_slots = trio.CapacityLimiter(max_concurrent_updates)
        self.tcp_clients = 0
        self.queries = 0
        self.dropped = 0
        self.malformed = 0
        self.rcodes = [0] * 16  # responses sent, by rcode
        self._log_window = 0.0
        self._log_count = 0
        self._log_suppressed = 0

    def _note_malformed(self, address: str, now: float, outcome: str) -> None:
        """One log line per malformed message, at most LOG_PER_SECOND a second in all, with
        the client's address masked to its prefix (privacy rule 2)."""
        self.malformed += 1
        if now - self._log_window >= 1.0:
            if self._log_suppressed:
                log.warning("%d more malformed messages were not logged", self._log_suppressed)
            self._log_window, self._log_count, self._log_suppressed = now, 0, 0
        if self._log_count < LOG_PER_SECOND:
            self._log_count += 1
            log.warning("malformed message from %s: %s", mask_address(address), outcome)
        else:
            self._log_suppressed += 1

    # -- UDP --------------------------------------------------------------------------------

    async def serve_udp(
        self, sock: socket.socket, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Answer datagrams on a bound, non-blocking UDP socket until cancelled."""
        sock.setblocking(False)
        respond = self.responder.respond
        check = self.rate_limiter.check
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                await trio.lowlevel.wait_readable(sock)
                now = trio.current_time()
                for _ in range(BURST):
                    try:
                        query, address = sock.recvfrom(MAX_UDP_QUERY)
                    except BlockingIOError:
                        break
                    except OSError:
                        continue  # an ICMP error queued by the kernel for an earlier reply
                    self.queries += 1
                    if len(query) >= 12 and _opcode(query) != 0:
                        self._udp_special(nursery, sock, query, address)
                        continue
                    response = respond(query)
                    if response is None:
                        self.dropped += 1
                        self._note_malformed(address[0], now, "dropped")
                        continue
                    if response[3] & 0x0F == RCODE_FORMERR:
                        self._note_malformed(address[0], now, "FORMERR")
                    verdict = check(address[0], now)
                    if verdict is Verdict.DROP:
                        continue
                    if verdict is Verdict.SLIP:
                        response = truncated(response)
                    self.rcodes[response[3] & 0x0F] += 1
                    try:
                        sock.sendto(response, address)
                    except OSError:
                        pass  # a full send buffer or an unreachable client: UDP may drop

    def _udp_special(
        self, nursery: trio.Nursery, sock: socket.socket, message: bytes, address: tuple[str, int]
    ) -> None:
        opcode = _opcode(message)
        if opcode == OPCODE_NOTIFY and message[2] & 0x80 and self.notify_replies is not None:
            self.notify_replies(message, address[0])
            return
        if opcode == OPCODE_UPDATE and self.updates is not None and not message[2] & 0x80:
            nursery.start_soon(self._udp_update, sock, message, address)
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
        assert self.updates is not None
        try:
            self._update_slots.acquire_nowait()
        except trio.WouldBlock:
            log.warning(
                "dropping an UPDATE: %d already in progress", self._update_slots.total_tokens
            )
            return
        try:
            for reply in await self.updates(message, address[0], False):
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
        await trio.serve_listeners(self._tcp_client, [listener], task_status=task_status)

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
                for reply in await self._tcp_replies(message, peer):
                    await stream.send_all(len(reply).to_bytes(2, "big") + reply)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self.tcp_clients -= 1
            await trio.aclose_forcefully(stream)

    async def _tcp_replies(self, message: bytes, peer: str) -> list[bytes]:
        if len(message) >= 12 and not message[2] & 0x80:
            opcode = _opcode(message)
            if opcode == OPCODE_UPDATE and self.updates is not None:
                async with self._update_slots:
                    return await self.updates(message, peer, True)
            if (
                opcode == 0
                and self.transfers is not None
                and _question_type(message) in (TYPE_AXFR, TYPE_IXFR)
            ):
                return await self.transfers(message, peer, True)
        response = self.responder.respond(message, tcp=True)
        if response is None or response[3] & 0x0F == RCODE_FORMERR:
            self._note_malformed(peer, trio.current_time(), "FORMERR" if response else "dropped")
        return [response] if response is not None else []
