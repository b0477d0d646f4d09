"""What is PostgreSQL's own in the registry (the shared tests run on both engines through
the `registry` fixture): its types, two nodes migrating at once, writes in series, a pool's
calls at once, changes heard by another node, erasure held up by a reader, a registry that
is not there or is gone, and a SQLite registry copied into it whole."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest
import trio

from registry import (
    MIGRATIONS,
    TABLES,
    AccessLogKeys,
    AccessMode,
    AccessRecord,
    Conflict,
    DnsRRset,
    NotFound,
    PostgresBackend,
    Registry,
    RegistryGone,
    TokenKind,
)
from tests.postgres import PostgresServer

from .conftest import NOW, Clock

KEY = bytes(range(32))


@pytest.fixture
def database(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database()


async def test_serials_and_byte_counts_past_two_to_the_31(database: str) -> None:
    registry = Registry.open(database)
    try:
        account = await registry.create_account("a@example.org", "A")
        await registry.enrol_device(account.account_id, "nas1", KEY)
        rrset = DnsRRset("nas1", "A", "nas1", 60, ("192.0.2.1",))
        await registry.commit_dns([rrset], {"dyn.test": 4_000_000_000})
        assert await registry.load_dns() == ([rrset], {"dyn.test": 4_000_000_000})
    finally:
        await registry.aclose()
    with psycopg.connect(database) as connection:
        types: dict[str, str] = dict(
            connection.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'access_stats' OR table_name = 'devices'"
            ).fetchall()
        )
    assert types["bytes_in"] == "bigint"
    assert types["public_key"] == "bytea"
    assert types["created_at"] == "double precision"


async def test_two_nodes_opening_a_new_database_at_once_migrate_it_once(database: str) -> None:
    opened: list[PostgresBackend] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            opened.append(PostgresBackend(database))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [backend.schema_version() for backend in opened] == [len(MIGRATIONS)] * 4
    with psycopg.connect(database) as connection:
        assert connection.execute("SELECT count(*) FROM schema_version").fetchone() == (1,)
    for backend in opened:
        backend.close()


async def test_one_pairing_code_taken_on_two_nodes_at_once_gives_one_device(
    database: str,
) -> None:
    """Writes are serial on PostgreSQL as on SQLite: the code's check and the device it
    enrols are one step, whichever node asks."""
    first, second = Registry.open(database), Registry.open(database)
    try:
        alice = await first.create_account("alice@example.org", "Alice")
        bob = await first.create_account("bob@example.org", "Bob")
        for round_ in range(20):
            code = await first.create_pairing(bytes([round_]) * 32, 600)
            outcomes: list[str] = []

            async def take(
                registry: Registry, account: str, name: str, code: str, outcomes: list[str]
            ) -> None:
                try:
                    await registry.complete_pairing(code, account, name)
                    outcomes.append("paired")
                except (NotFound, Conflict):
                    outcomes.append("refused")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(take, first, alice.account_id, f"a{round_}", code, outcomes)
                nursery.start_soon(take, second, bob.account_id, f"b{round_}", code, outcomes)
            assert sorted(outcomes) == ["paired", "refused"]
        assert len(await first.list_devices()) == 20
    finally:
        await first.aclose()
        await second.aclose()


async def test_calls_run_at_once_up_to_the_pool(database: str) -> None:
    registry = Registry.open(database)
    meet = threading.Barrier(4, timeout=10)
    original = registry.backend.list_accounts

    def together() -> list:  # type: ignore[type-arg]
        meet.wait()  # only if four calls are in their threads at the same time
        return original()

    registry.backend.list_accounts = together  # type: ignore[method-assign]
    try:
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(registry.list_accounts)
    finally:
        await registry.aclose()


async def test_a_change_on_one_node_is_heard_on_another_at_once(database: str) -> None:
    writer, listener = Registry.open(database), Registry.open(database)
    try:
        account = await writer.create_account("a@example.org", "A")
        seen = await listener.wait_change(0, 5.0)  # the first: listening began
        assert seen >= 1
        heard: list[float] = []
        for name in ("nas1", "nas2", "nas3"):
            await writer.enrol_device(account.account_id, name, bytes([len(heard)]) * 32)
            started = time.monotonic()
            seen = await listener.wait_change(seen, 5.0)
            heard.append(time.monotonic() - started)
        await writer.delete_device("nas2")
        started = time.monotonic()
        seen = await listener.wait_change(seen, 5.0)
        heard.append(time.monotonic() - started)
        assert max(heard) < 1.0, heard  # notified, not the 5 s timeout
        # Nothing changed: the wait lasts its whole timeout.
        started = time.monotonic()
        assert await listener.wait_change(seen, 0.3) == seen
        assert time.monotonic() - started >= 0.29
        # A write that changes no device notifies nothing.
        await writer.create_token(TokenKind.API, account_id=account.account_id)
        assert await listener.wait_change(seen, 0.3) == seen
    finally:
        await writer.aclose()
        await listener.aclose()


async def test_an_erasure_waits_out_a_reader_holding_the_table(
    postgres_server: PostgresServer, database: str
) -> None:
    """A long reader holds a lock VACUUM (FULL) needs: the erasure is pending, not done,
    until it lets go, and then leaves no bytes."""
    backend = PostgresBackend(database)
    backend.erase_lock_timeout_ms = 100
    registry = Registry(backend)
    try:
        account = await registry.create_account("a@example.org", "A")
        marker = b"\x5a" * 16 + b"ERASE-ME-LATER-2"
        await registry.enrol_device(account.account_id, "reader-held-device", marker)
        reader = psycopg.connect(database)
        reader.execute("SELECT count(*) FROM devices").fetchone()  # in a transaction
        assert await registry.delete_device("reader-held-device")
        assert registry.erasure_pending()
        assert marker in postgres_server.database_bytes(database)
        assert not await registry.finish_erasure(timeout_s=0.3)
        reader.rollback()
        reader.close()
        assert await registry.finish_erasure()
        stored = postgres_server.database_bytes(database)
        assert marker not in stored and b"reader-held-device" not in stored
    finally:
        await registry.aclose()


async def test_a_database_with_no_registry_and_a_server_not_there(
    postgres_server: PostgresServer, database: str, tmp_path: Path
) -> None:
    with pytest.raises(RegistryGone, match="no registry in this database"):
        PostgresBackend(database, create=False)
    nowhere = f"postgresql://nascloud:hunter2@/none?host={tmp_path}&connect_timeout=1"
    started = time.monotonic()
    with pytest.raises(RegistryGone, match="cannot be reached") as caught:
        PostgresBackend(nowhere, connect_timeout_s=1.0)
    assert "hunter2" not in str(caught.value) and "***" in str(caught.value)
    assert time.monotonic() - started < 5


async def test_a_registry_whose_tables_were_dropped_is_gone(database: str) -> None:
    registry = Registry.open(database)
    try:
        await registry.create_account("a@example.org", "A")
        with psycopg.connect(database, autocommit=True) as connection:
            connection.execute("DROP TABLE devices CASCADE")
        with pytest.raises(RegistryGone, match="does not exist"):
            await registry.list_devices()
        assert registry.gone is not None
    finally:
        await registry.aclose()


async def test_a_sqlite_registry_copied_whole(tmp_path: Path, database: str, clock: Clock) -> None:
    """Every table with rows, copied: what each engine answers is the same, the copy goes
    on making ids where the source stopped, and a second copy into it is refused."""
    source = Registry.open(tmp_path / "registry.sqlite3", clock=clock)
    keys = AccessLogKeys(tmp_path / "keys.json")
    owner = await source.create_owner("alice-copied", "$argon2id$stand-in", "Alice")
    await source.create_session(b"\x01" * 32, owner.account_id, 3600)
    await source.set_totp(owner.account_id, b"\x02" * 20, ["AAAA-BBBB"])
    await source.add_passkey(owner.account_id, b"\x03" * 16, b"cose", 7, "laptop")
    await source.enrol_device(owner.account_id, "nas1", KEY)
    await source.set_feature("nas1", "link", False)
    friend = await source.create_account("bob@example.org", "Bob")
    await source.set_access("nas1", AccessMode.CUSTOM, (friend.account_id,))
    await source.trust_computer(b"\x04" * 32, owner.account_id, 3600)
    await source.create_token(TokenKind.DYNDNS2, device_name="nas1", name="router")
    await source.create_tsig_key("nas1", "nas1.dyn.test")
    await source.commit_dns([DnsRRset("nas1", "A", "nas1", 60, ("192.0.2.1",))], {"dyn.test": 7})
    await source.create_pairing(bytes(range(1, 33)), 600)
    await source.register_install("K7QD-XM2P-9HTA", bytes(range(2, 34)), (), 80, "192.0.2.9", 60)
    visit = AccessRecord(NOW, NOW + 5, "nas1", "203.0.113.7", "https", 1, 2, "ok")
    await source.log_access([visit], keys)
    target = Registry.open(database, clock=clock)
    try:
        copied = await source.copy_to(target)
        assert set(copied) == set(TABLES)
        assert [table for table in TABLES if not copied[table]] == []
        exported = await source.export_account(owner.account_id, [keys])
        assert exported["account"]["account_name"] == "alice-copied"
        assert await target.export_account(owner.account_id, [keys]) == exported
        assert await source.load_dns() == await target.load_dns()
        later = AccessRecord(NOW + 9, NOW + 10, "nas1", "203.0.113.8", "https", 1, 2, "ok")
        await target.log_access([later], keys)
        assert len(await target.read_access(keys)) == 2
        with pytest.raises(Conflict, match="not empty"):
            await source.copy_to(target)
    finally:
        await target.aclose()
        await source.aclose()
