"""The tunnel's handshake, run inline over the transport before the tunnel's reader and writer.

Hello, authentication (the server asks `authenticate` for the client's registered key) and
AUTH_OK; a refusal is sent before the transport is closed. Knows nothing of `Tunnel`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from protocol import (
    AuthenticationRequested,
    Connection,
    ConnectionClosed,
    ConnectionTerminated,
    ErrorCode,
    Event,
    HandshakeComplete,
    RemoteProtocolError,
)

from ._ending import TRANSPORT_ERRORS

__all__ = ["Authenticator", "run_handshake"]

#: Server side: given who the client claims to be, return the public key registered for it,
#: or None if there is none (the client is then refused without learning why).
Authenticator = Callable[[AuthenticationRequested], Awaitable[bytes | None]]


async def run_handshake(
    transport: trio.abc.Stream,
    conn: Connection,
    authenticate: Authenticator | None,
    receive_bytes: int,
) -> tuple[HandshakeComplete, list[Event]]:
    """The handshake, to its end; and the events that followed it in the same read (they
    belong to the tunnel). On failure the transport is closed, after a refusal is sent."""
    handshake: HandshakeComplete | None = None
    pending: list[Event] = []
    try:
        while True:
            out = conn.data_to_send()
            if out:
                await transport.send_all(out)
            if handshake is not None:
                return handshake, pending
            data = await transport.receive_some(receive_bytes)
            events = conn.receive_data(data)
            for index, event in enumerate(events):
                if isinstance(event, AuthenticationRequested):
                    key = await authenticate(event) if authenticate is not None else None
                    if key is None:
                        conn.reject_authentication()
                        await transport.send_all(conn.data_to_send())
                        raise RemoteProtocolError(
                            "authentication failed", ErrorCode.AUTHENTICATION_FAILED
                        )
                    handshake = conn.accept_authentication(key)
                elif isinstance(event, HandshakeComplete):
                    handshake = event
                    # Frames that followed AUTH_OK in the same read belong to the tunnel.
                    pending = events[index + 1 :]
                    break
                elif isinstance(event, ConnectionTerminated):
                    raise RemoteProtocolError(
                        f"peer refused the handshake: {ErrorCode.describe(event.error_code)}",
                        event.error_code,
                    )
                elif isinstance(event, ConnectionClosed):
                    raise RemoteProtocolError("peer closed the connection during handshake")
    except RemoteProtocolError:
        out = conn.data_to_send()
        if out:
            with trio.move_on_after(1.0), _ignoring_transport_errors():
                await transport.send_all(out)
        await trio.aclose_forcefully(transport)
        raise
    except BaseException:
        await trio.aclose_forcefully(transport)
        raise


class _ignoring_transport_errors:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, value: object, traceback: object) -> bool:
        return isinstance(value, TRANSPORT_ERRORS)
