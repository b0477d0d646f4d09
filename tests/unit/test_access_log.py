"""The encrypted access log: what is stored, tamper detection, retention and key destruction."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from registry import (
    AccessLogKeys,
    AccessLogWriter,
    AccessRecord,
    Registry,
    UnreadableRecord,
    mask_address,
    month_of,
)
from registry._sql import SQLBackend

from .conftest import NOW, Clock

DAY = 86400.0


def record(started: float, device: str = "nas1", address: str = "203.0.113.77") -> AccessRecord:
    return AccessRecord(started, started + 5, device, address, "https", 1200, 34000, "ok")


async def test_records_are_encrypted_and_read_back_with_the_key(
    registry: Registry, tmp_path: Path, registry_bytes: Callable[[], bytes]
) -> None:
    keys = AccessLogKeys(tmp_path / "keys.json")
    await registry.log_access([record(NOW), record(NOW + 1, "nas2", "2001:db8:1:2::9")], keys)
    assert stat.S_IMODE((tmp_path / "keys.json").stat().st_mode) == 0o600
    stored = registry_bytes()
    assert b"203.0.113.77" not in stored and b"2001:db8:1:2::9" not in stored
    assert b"203.0.113.0/24" in stored  # the anonymised copy keeps the masked prefix only
    assert await registry.read_access(AccessLogKeys(tmp_path / "keys.json")) == [
        record(NOW),
        record(NOW + 1, "nas2", "2001:db8:1:2::9"),
    ]
    assert await registry.read_access(keys, ["nas2"]) == [
        record(NOW + 1, "nas2", "2001:db8:1:2::9")
    ]


async def test_a_tampered_or_moved_record_does_not_decrypt(
    registry: Registry, tmp_path: Path
) -> None:
    keys = AccessLogKeys(tmp_path / "keys.json")
    await registry.log_access([record(NOW), record(NOW + 1)], keys)
    assert isinstance(registry.backend, SQLBackend)
    with registry.backend._transaction() as db:  # a hand on the storage, in either engine
        (blob,) = db.execute("SELECT ciphertext FROM access_log WHERE record_id = 1").fetchone()
        flipped = bytes([blob[0] ^ 1]) + blob[1:]
        db.execute("UPDATE access_log SET ciphertext = ? WHERE record_id = 1", (flipped,))
        db.execute("UPDATE access_log SET device_name = 'nas9' WHERE record_id = 2")
    results = await registry.read_access(keys)
    assert all(isinstance(r, UnreadableRecord) for r in results)


async def test_retention_purges_records_and_destroys_expired_keys(
    registry: Registry, tmp_path: Path, clock: Clock
) -> None:
    keys = AccessLogKeys(tmp_path / "keys.json")
    old = NOW - 200 * DAY
    await registry.log_access([record(old), record(NOW - 10 * DAY), record(NOW)], keys)
    copy_of_old = (tmp_path / "keys.json").read_bytes()
    deleted, months = await registry.purge_access(keys, 180 * DAY)
    assert deleted == 1 and months == [month_of(old)]
    left = [r.started_at for r in await registry.read_access(keys) if isinstance(r, AccessRecord)]
    assert left == [NOW - 10 * DAY, NOW]
    assert month_of(old) not in AccessLogKeys(tmp_path / "keys.json").months()
    # A backup of the old record cannot be read with the keys left.
    month, nonce, ciphertext = AccessLogKeys(tmp_path / "old-copy.json").seal(record(old))
    with pytest.raises(UnreadableRecord):
        keys.open(month, "nas1", old, nonce, ciphertext)
    assert copy_of_old != (tmp_path / "keys.json").read_bytes()


def test_masking() -> None:
    assert mask_address("203.0.113.77") == "203.0.113.0/24"
    assert mask_address("2001:db8:1:2::9") == "2001:db8:1::/48"
    assert mask_address("::ffff:198.51.100.7") == "198.51.100.0/24"
    assert mask_address("nonsense") == "invalid"


async def _addresses(registry: Registry, keys: AccessLogKeys) -> list[str]:
    return [
        r.client_address if isinstance(r, AccessRecord) else "unreadable"
        for r in await registry.read_access(keys)
    ]


async def test_writer_batches_purges_and_flushes_on_the_way_out(
    registry: Registry, tmp_path: Path, clock: Clock
) -> None:
    keys = AccessLogKeys(tmp_path / "keys.json")
    await registry.log_access([record(NOW - 200 * DAY)], keys)  # older than the retention
    writer = AccessLogWriter(registry, keys, 180, clock=clock)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run, 0.05)
        writer.add(NOW - 1, "nas1", "203.0.113.5", "https", 10, 20, "ok")
        for _ in range(200):  # one write interval (and the first purge before it), 10 s at most
            if writer.written:
                break
            await trio.sleep(0.05)
        assert writer.written == 1
        # The expired record is purged (its key destroyed), the new one written.
        assert await _addresses(registry, keys) == ["203.0.113.5"]
        writer.add(NOW, "nas2", "2001:db8::5", "rfc2136", 90, 40, "noerror")
        nursery.cancel_scope.cancel()  # queued records are not lost on shutdown
    assert writer.written == 2 and writer.dropped == 0
    assert await _addresses(registry, keys) == ["203.0.113.5", "2001:db8::5"]


async def test_writer_queue_is_bounded(registry: Registry, tmp_path: Path, clock: Clock) -> None:
    keys = AccessLogKeys(tmp_path / "keys.json")
    writer = AccessLogWriter(registry, keys, 180, clock=clock, max_pending=50)
    for _ in range(55):
        writer.add(NOW, "nas1", "203.0.113.5", "https", 1, 1, "ok")
    assert writer.dropped == 5
    await writer.flush()
    assert writer.written == 50
    assert len(await registry.read_access(keys)) == 50
