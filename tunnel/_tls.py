"""TLS for tunnels on a non-blocking `ssl.SSLSocket`, as a Trio stream.

Written here rather than using `trio.SSLStream` because a measurement said so: Trio's stream
runs OpenSSL on memory BIOs and moves every record between the socket and the BIO in Python;
on the machines we benchmark on it received about 2.5 Gbit/s where an `SSLSocket` in
non-blocking mode, which OpenSSL reads from and writes to the kernel socket directly,
received about 7 (bench/RESULTS.md, "Relay"). Beside the protocol core, not in it: it does I/O.

One task may receive while another sends (the tunnel's reader and writer): both run on the
event loop's thread, so OpenSSL never sees them at the same time, and a read or a write that
needs the other direction first (WANT_WRITE in a read, WANT_READ in a write) waits for it.
"""

from __future__ import annotations

import operator
import socket
import ssl
from typing import Final

import trio

__all__ = ["TlsStream"]

MAX_RECORD_WRITE: Final = 256 * 1024  # bytes handed to OpenSSL per write call


class TlsStream(trio.abc.Stream):
    def __init__(self, sock: ssl.SSLSocket) -> None:
        self.socket = sock
        self._closed = False
        self._broken = False
        self._sending = False
        self._receiving = False

    @classmethod
    async def connect(
        cls,
        stream: trio.SocketStream,
        context: ssl.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
    ) -> TlsStream:
        """Take over `stream`'s socket and complete the TLS handshake on it. On failure or
        cancellation the socket is closed."""
        trio_socket = stream.socket
        raw = socket.socket(
            trio_socket.family, trio_socket.type, trio_socket.proto, fileno=trio_socket.detach()
        )
        raw.setblocking(False)
        try:
            tls = cls(
                context.wrap_socket(
                    raw,
                    server_side=server_side,
                    server_hostname=server_hostname,
                    do_handshake_on_connect=False,
                )
            )
        except BaseException:
            raw.close()
            raise
        try:
            await tls._retry(tls.socket.do_handshake)
        except BaseException:
            tls.socket.close()
            raise
        return tls

    async def _retry(self, operation: object, *args: object, at_eof: object = None) -> object:
        """Run a non-blocking SSL operation, waiting for the socket whenever OpenSSL asks.
        The peer's end of the stream (clean or not) gives `at_eof`, or breaks the stream."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            if self._closed:
                raise trio.ClosedResourceError("the TLS stream is closed")
            try:
                result = operation(*args)  # type: ignore[operator]
            except ssl.SSLWantReadError:
                await trio.lowlevel.wait_readable(self.socket)
                continue
            except ssl.SSLWantWriteError:
                await trio.lowlevel.wait_writable(self.socket)
                continue
            except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:
                if at_eof is None:
                    raise trio.BrokenResourceError("the peer closed the TLS stream") from exc
                return at_eof
            except OSError as exc:
                if isinstance(exc, ssl.SSLError):
                    raise trio.BrokenResourceError(f"TLS failed: {exc}") from exc
                raise trio.BrokenResourceError(str(exc)) from exc
            await trio.lowlevel.cancel_shielded_checkpoint()
            return result

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Up to `max_bytes`: every TLS record already readable, not just one (OpenSSL hands
        out one record, at most 16 KiB, per read; a loop in Python per record was the cost)."""
        if max_bytes is None:
            size = 65536
        else:
            size = operator.index(max_bytes)  # TypeError for anything but an integer
            if size < 1:
                raise ValueError("max_bytes must be at least 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this stream")
        self._receiving = True
        try:
            return await self._receive(size)
        finally:
            self._receiving = False

    async def _receive(self, size: int) -> bytes:
        data = await self._retry(self.socket.recv, size, at_eof=b"")
        assert isinstance(data, bytes)
        if not data or len(data) >= size:
            return data
        chunks = [data]
        got = len(data)
        while got < size:
            try:
                more = self.socket.recv(size - got)
            except OSError:
                break  # nothing more now (or an error or the end, which the next call reports)
            if not more:
                break
            chunks.append(more)
            got += len(more)
        return b"".join(chunks) if len(chunks) > 1 else data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._sending = True
        try:
            await self._send_all(memoryview(data))
        finally:
            self._sending = False

    async def _send_all(self, view: memoryview) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()  # cancelled before any byte: not broken
        if self._closed:
            raise trio.ClosedResourceError("the TLS stream is closed")
        if self._broken:
            raise trio.BrokenResourceError("this TLS stream broke earlier")
        if not view:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        try:
            while view:
                # After WANT_WRITE OpenSSL wants the same bytes again: the slice is unchanged.
                sent = await self._retry(self.socket.send, view[:MAX_RECORD_WRITE])
                assert isinstance(sent, int)
                view = view[sent:]
        except BaseException:
            # Cancelled or failed in the middle of a record: OpenSSL would refuse other bytes.
            self._broken = True
            raise

    async def wait_send_all_might_not_block(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        if self._closed:
            raise trio.ClosedResourceError("the TLS stream is closed")
        await trio.lowlevel.wait_writable(self.socket)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            trio.lowlevel.notify_closing(self.socket)
            self.socket.close()
        await trio.lowlevel.checkpoint()
