"""How a tunnel ended: each kind of exception classified, logged once at its level, swallowed."""

from __future__ import annotations

import logging
import ssl

import pytest
import trio

import protocol
from tunnel import Ending, tunnel_ending

log = logging.getLogger("test.ending")


def _group(*excs: Exception) -> ExceptionGroup[Exception]:
    return ExceptionGroup("from a nursery", list(excs))


REFUSAL = protocol.RemoteProtocolError("authentication failed", protocol.ErrorCode.CANCEL)


@pytest.mark.parametrize(
    ("client", "exc", "ending", "level", "text"),
    [
        (True, REFUSAL, Ending.REFUSED, logging.WARNING, "peer refused: authentication failed"),
        (False, REFUSAL, Ending.REFUSED, logging.WARNING, "peer refused: authentication failed"),
        (True, trio.TooSlowError(), Ending.GONE, logging.WARNING, "peer unreachable: TooSlowError"),
        (False, trio.TooSlowError(), Ending.REFUSED, logging.WARNING, "peer refused: TooSlowError"),
        (True, ConnectionRefusedError("no"), Ending.GONE, logging.WARNING, "peer unreachable: no"),
        (True, ssl.SSLError("bad cert"), Ending.GONE, logging.WARNING, "peer unreachable:"),
        (False, trio.BrokenResourceError("reset"), Ending.GONE, logging.DEBUG, "peer gone: reset"),
        (False, trio.ClosedResourceError(), Ending.GONE, logging.DEBUG, "ClosedResourceError"),
        (True, KeyError("bug"), Ending.FAILED, logging.ERROR, "peer failed"),
        (False, KeyError("bug"), Ending.FAILED, logging.ERROR, "peer failed"),
    ],
)
@pytest.mark.parametrize("grouped", [False, True])
def test_classified_and_logged_once(
    caplog: pytest.LogCaptureFixture,
    client: bool,
    exc: Exception,
    ending: Ending,
    level: int,
    text: str,
    grouped: bool,
) -> None:
    caplog.set_level(logging.DEBUG, "test.ending")
    with tunnel_ending(log, "peer", client=client) as end:
        raise _group(exc) if grouped else exc
    assert end.ending is ending
    [record] = caplog.records
    assert record.levelno == level
    assert text in record.getMessage()
    if ending is Ending.FAILED:
        assert record.exc_info is not None
    else:
        assert end.error is exc


def test_a_clean_exit_is_closed_and_silent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "test.ending")
    with tunnel_ending(log, "peer", client=True) as end:
        pass
    assert end.ending is Ending.CLOSED and end.error is None
    assert not caplog.records


def test_refused_level_is_the_callers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "test.ending")
    with tunnel_ending(log, "peer", client=True, refused_level=logging.ERROR):
        raise REFUSAL
    [record] = caplog.records
    assert record.levelno == logging.ERROR


def test_a_refusal_beats_the_transport_errors_it_caused(caplog: pytest.LogCaptureFixture) -> None:
    with tunnel_ending(log, "peer", client=False) as end:
        raise _group(trio.BrokenResourceError(), _group(REFUSAL))
    assert end.ending is Ending.REFUSED and end.error is REFUSAL
    assert len(caplog.records) == 1


def test_a_bug_among_transport_errors_is_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    with tunnel_ending(log, "peer", client=False) as end:
        raise _group(trio.BrokenResourceError(), ZeroDivisionError())
    assert end.ending is Ending.FAILED
    assert len(caplog.records) == 1


async def test_a_cancel_is_raised_on() -> None:
    with trio.CancelScope() as scope, tunnel_ending(log, "peer", client=False):
        scope.cancel()
        await trio.sleep_forever()
    assert scope.cancelled_caught


def test_a_keyboard_interrupt_is_raised_on_and_the_rest_is_handled() -> None:
    with pytest.raises(BaseExceptionGroup) as info, tunnel_ending(log, "peer", client=False):
        raise BaseExceptionGroup("both", [KeyboardInterrupt(), OSError("gone")])
    assert info.group_contains(KeyboardInterrupt)
    assert not info.group_contains(OSError)
