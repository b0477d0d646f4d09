"""A ddnsd that answers an update with something other than ACK or ERROR: relayd answers the
agent with an error, says so once in its log, and carries on."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

import protocol
from ddnsd._channel import ServiceChannel
from tests.integration.test_relay_ddns import ddnsd_and_relay


async def _lie(self: ServiceChannel, message: protocol.DdnsUpdate) -> protocol.AppMessage:
    await trio.lowlevel.checkpoint()
    return message  # the update itself, under the relay's own id: taken as the answer


async def test_a_reply_neither_ack_nor_error_is_answered_with_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(ServiceChannel, "_update", _lie)
    caplog.set_level(logging.WARNING, logger="relayd")
    with trio.fail_after(30):
        async with ddnsd_and_relay(tmp_path) as (_, _, agent):
            for request_id in (41, 42, 43):
                await agent.send_message(
                    protocol.DdnsUpdate(request_id, "nas1", "nas1", "A", ("198.51.100.4",))
                )
                with trio.fail_after(5):
                    reply = await agent.receive_message()
                assert reply == protocol.Error(
                    protocol.ErrorCode.SERVICE_UNAVAILABLE,
                    "DNS updates are unavailable",
                    request_id,
                )
    said = [r for r in caplog.records if "DdnsUpdate" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING and said[0].exc_info is None
    assert not [r for r in caplog.records if r.exc_info is not None]
