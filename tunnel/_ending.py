"""How a tunnel ended, told once: refused, transport gone, or failed (a bug), from its exceptions.

Wraps the code that connects, runs `open_tunnel` and serves the tunnel; keeps a bug in one
tunnel from ending the process. Knows nothing of who runs the tunnel or what it carries.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

import trio

from protocol import RemoteProtocolError

__all__ = ["TRANSPORT_ERRORS", "Ending", "TunnelEnd", "tunnel_ending"]

#: What says a tunnel's transport failed or was closed (ssl.SSLError is an OSError).
TRANSPORT_ERRORS: Final = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class Ending(enum.Enum):
    CLOSED = "closed"  # no exception: the body returned (the tunnel may have ended on its own)
    REFUSED = "refused"  # the peer refused us or broke the protocol, or (server) was too slow
    GONE = "gone"  # the transport failed or was closed, or (client) the peer was unreachable
    FAILED = "failed"  # anything else: a bug


@dataclass(slots=True)
class TunnelEnd:
    """Filled in when the `tunnel_ending` block exits."""

    ending: Ending = Ending.CLOSED
    #: The first exception of that kind (for FAILED, the whole group); None if CLOSED.
    error: BaseException | None = None


@contextmanager
def tunnel_ending(
    log: logging.Logger, peer: str, *, client: bool, refused_level: int = logging.WARNING
) -> Iterator[TunnelEnd]:
    """Run a tunnel's code; on an exception, classify it, log once, and swallow it.

    `peer` names the tunnel in the log ("tunnel from 192.0.2.x"). As a client (we dialled),
    a timeout counts as GONE and GONE is a warning ("... unreachable"); as a server, a timeout
    is a refused handshake and GONE (a peer going away) is logged at debug. REFUSED is logged
    at `refused_level`, FAILED as an error with its traceback. Exceptions arrive as groups
    from open_tunnel's nursery; one that is not an Exception (a cancel) is raised on.
    """
    end = TunnelEnd()
    try:
        yield end
    except* Exception as group:
        leaves = list(_leaves(group))
        refused = (RemoteProtocolError,) if client else (RemoteProtocolError, trio.TooSlowError)
        gone = (*TRANSPORT_ERRORS, trio.TooSlowError) if client else TRANSPORT_ERRORS
        first_refused = next((e for e in leaves if isinstance(e, refused)), None)
        first_gone = next((e for e in leaves if isinstance(e, gone)), None)
        if any(not isinstance(e, (*refused, *gone)) for e in leaves):
            end.ending, end.error = Ending.FAILED, group
            log.error("%s failed", peer, exc_info=group)
        elif first_refused is not None:
            end.ending, end.error = Ending.REFUSED, first_refused
            log.log(refused_level, "%s refused: %s", peer, _describe(first_refused))
        else:
            end.ending, end.error = Ending.GONE, first_gone
            if client:
                log.warning("%s unreachable: %s", peer, _describe(first_gone))
            else:
                log.debug("%s gone: %s", peer, _describe(first_gone))


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


def _describe(exc: BaseException | None) -> str:
    # TooSlowError and some OSErrors have no message: say which it was.
    text = str(exc)
    return text if text else type(exc).__name__
