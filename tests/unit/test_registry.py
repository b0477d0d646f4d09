"""The registry over a real SQLite file: every operation, the rules it enforces, and that
erased data leaves no bytes behind."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from registry import (
    MIGRATIONS,
    TABLES,
    AccessMode,
    Conflict,
    InvalidValue,
    NotFound,
    Registry,
    RegistryGone,
    SchemaTooNew,
    SQLiteBackend,
    TokenKind,
    normalize_cloud_key,
)
from tests.database import database_bytes

from .conftest import Clock

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))


async def test_schema_and_pragmas(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path / "registry.sqlite3")
    assert backend.schema_version() == len(MIGRATIONS)
    db = backend._db
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA secure_delete").fetchone()[0] == 1
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    backend.close()
    # Re-opening migrates nothing twice.
    again = SQLiteBackend(tmp_path / "registry.sqlite3")
    assert again.schema_version() == len(MIGRATIONS)
    again.close()


async def test_schema_5_keeps_the_rrsets_and_takes_caa(tmp_path: Path) -> None:
    """A registry of schema 4 (A, AAAA, TXT only) migrates with its rows and their cascade."""
    path = tmp_path / "registry.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        db.execute("INSERT INTO schema_version VALUES (4)")
        for statements in MIGRATIONS[:4]:
            for statement in statements:
                db.execute(statement)
        db.execute("INSERT INTO accounts VALUES ('acc_1', 'a@example.org', 'A', 0)")
        db.execute("INSERT INTO devices VALUES ('nas1', 'acc_1', ?, 'public', 0, NULL)", (KEY_A,))
        db.execute("INSERT INTO dns_rrsets VALUES ('nas1', 'A', 'nas1', 60, '[\"192.0.2.1\"]')")
        with pytest.raises(sqlite3.IntegrityError):
            db.execute("INSERT INTO dns_rrsets VALUES ('nas1', 'CAA', 'nas1', 60, '[]')")
    backend = SQLiteBackend(path)
    assert backend.schema_version() == len(MIGRATIONS) >= 5
    db = backend._db
    db.execute("PRAGMA foreign_keys = ON")
    with db:
        db.execute("INSERT INTO dns_rrsets VALUES ('nas1', 'CAA', 'nas1', 60, '[]')")
    rows = db.execute("SELECT owner, rrtype FROM dns_rrsets ORDER BY rrtype").fetchall()
    assert rows == [("nas1", "A"), ("nas1", "CAA")]
    with db:
        db.execute("DELETE FROM devices WHERE name = 'nas1'")
    assert db.execute("SELECT count(*) FROM dns_rrsets").fetchone()[0] == 0
    backend.close()


async def test_a_database_from_newer_software_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite3"
    SQLiteBackend(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = 999")
    with pytest.raises(SchemaTooNew, match="newer than this software"):
        SQLiteBackend(path)


async def test_accounts(registry: Registry, clock: Clock) -> None:
    alice = await registry.create_account("alice@example.org", "Alice")
    assert alice.account_id.startswith("acc_") and alice.created_at == clock.now
    assert await registry.get_account(alice.account_id) == alice
    corrected = await registry.correct_account(alice.account_id, display_name="Alice B.")
    assert corrected.display_name == "Alice B." and corrected.email == alice.email
    assert await registry.list_accounts() == [corrected]
    with pytest.raises(NotFound):
        await registry.get_account("acc_missing")
    with pytest.raises(InvalidValue, match="not an e-mail address"):
        await registry.create_account("not-an-email", "X")
    with pytest.raises(InvalidValue, match="control characters"):
        await registry.create_account("x@example.org", "bad\x00name")


async def test_devices_names_and_conflicts(registry: Registry) -> None:
    alice = await registry.create_account("alice@example.org", "Alice")
    device = await registry.enrol_device(alice.account_id, "nas1", KEY_A)
    assert device.access_mode is AccessMode.PRIVATE and device.last_seen_at is None
    assert await registry.get_device("nas1") == device
    with pytest.raises(Conflict, match="'nas1' is taken"):
        await registry.enrol_device(alice.account_id, "nas1", KEY_B)
    for bad, words in [
        ("NAS1", "must be lower-case"),
        ("-nas", "hyphen"),
        ("a" * 64, "at most 63"),
        ("nas_1", "only a-z"),
        ("install", "reserved for the relay's own site"),  # install.<link zone> is the relay's
    ]:
        with pytest.raises(InvalidValue, match=words):
            await registry.enrol_device(alice.account_id, bad, KEY_B)
    with pytest.raises(InvalidValue, match="32 bytes"):
        await registry.enrol_device(alice.account_id, "nas2", b"short")
    with pytest.raises(NotFound):
        await registry.enrol_device("acc_missing", "nas3", KEY_B)
    await registry.device_seen("nas1")
    seen = await registry.get_device("nas1")
    assert seen is not None and seen.last_seen_at is not None


async def test_access_modes_decide_who_may_use_a_device(registry: Registry) -> None:
    owner = await registry.create_account("o@example.org", "Owner")
    friend = await registry.create_account("f@example.org", "Friend")
    stranger = await registry.create_account("s@example.org", "Stranger")
    await registry.enrol_device(owner.account_id, "nas1", KEY_A)

    async def allowed() -> list[bool]:
        device = await registry.get_device("nas1")
        assert device is not None
        return [device.may_be_used_by(a.account_id) for a in (owner, friend, stranger)]

    assert await allowed() == [True, False, False]
    await registry.set_access("nas1", AccessMode.CUSTOM, (friend.account_id,))
    assert await allowed() == [True, True, False]
    await registry.set_access("nas1", AccessMode.PUBLIC)
    assert await allowed() == [True, True, True]
    with pytest.raises(InvalidValue):
        await registry.set_access("nas1", AccessMode.PRIVATE, (friend.account_id,))
    with pytest.raises(NotFound):
        await registry.set_access("nas1", AccessMode.CUSTOM, ("acc_missing",))
    # Deleting the friend's account removes it from every access list.
    await registry.set_access("nas1", AccessMode.CUSTOM, (friend.account_id,))
    await registry.delete_account(friend.account_id)
    device = await registry.get_device("nas1")
    assert device is not None and device.access_list == ()


async def test_tokens_are_random_hashed_and_scoped(
    registry: Registry, registry_bytes: Callable[[], bytes]
) -> None:
    alice = await registry.create_account("alice@example.org", "Alice")
    await registry.enrol_device(alice.account_id, "nas1", KEY_A)
    api, api_secret = await registry.create_token(TokenKind.API, account_id=alice.account_id)
    ddns, ddns_secret = await registry.create_token(TokenKind.DYNDNS2, device_name="nas1")
    assert len(api_secret) >= 22  # 128 bits in URL-safe base64; ours carry 256
    assert api_secret != ddns_secret
    assert await registry.verify_token(TokenKind.API, api_secret) == api
    assert await registry.verify_token(TokenKind.DYNDNS2, ddns_secret) == ddns
    # A token works only for its kind, and a near miss is nothing.
    assert await registry.verify_token(TokenKind.DYNDNS2, api_secret) is None
    assert await registry.verify_token(TokenKind.API, api_secret[:-1] + "x") is None
    assert await registry.verify_token(TokenKind.API, "") is None
    # The secret itself is never written to disk.
    assert api_secret.encode() not in registry_bytes()
    assert [t.token_id for t in await registry.list_tokens(device_name="nas1")] == [ddns.token_id]
    assert await registry.revoke_token(api.token_id)
    assert await registry.verify_token(TokenKind.API, api_secret) is None
    with pytest.raises(InvalidValue):
        await registry.create_token(TokenKind.API, device_name="nas1")
    with pytest.raises(NotFound):
        await registry.create_token(TokenKind.DYNDNS2, device_name="nas9")


async def test_a_token_has_its_owners_name_and_its_last_use_to_the_minute(
    registry: Registry, clock: Clock
) -> None:
    alice = await registry.create_account("alice@example.org", "Alice")
    made, secret = await registry.create_token(
        TokenKind.API, account_id=alice.account_id, name="  backup script "
    )
    assert made.name == "backup script" and made.last_used_at is None
    for bad in ("x" * 65, "tab\there"):
        with pytest.raises(InvalidValue):
            await registry.create_token(TokenKind.API, account_id=alice.account_id, name=bad)
    [listed] = await registry.list_tokens(account_id=alice.account_id)
    assert listed.last_used_at is None  # never used
    first = clock.now
    await registry.verify_token(TokenKind.API, secret)
    clock.now += 59  # used again within the minute: not written again
    await registry.verify_token(TokenKind.API, secret)
    [listed] = await registry.list_tokens(account_id=alice.account_id)
    assert listed.last_used_at == first
    clock.now += 1
    await registry.verify_token(TokenKind.API, secret)
    [listed] = await registry.list_tokens(account_id=alice.account_id)
    assert listed.last_used_at == first + 60 and listed.name == "backup script"
    # A wrong secret is no use of anything.
    clock.now += 120
    await registry.verify_token(TokenKind.API, secret[:-1] + ("a" if secret[-1] != "a" else "b"))
    [listed] = await registry.list_tokens(account_id=alice.account_id)
    assert listed.last_used_at == first + 60


async def test_a_tsig_key_is_revoked_by_its_own_device_only(registry: Registry) -> None:
    alice = await registry.create_account("alice@example.org", "Alice")
    await registry.enrol_device(alice.account_id, "nas1", KEY_A)
    await registry.enrol_device(alice.account_id, "nas2", KEY_B)
    old = await registry.create_tsig_key("nas1", "nas1.dyn.test")
    new = await registry.create_tsig_key("nas1", "nas1-2.dyn.test")
    other = await registry.create_tsig_key("nas2", "nas2.dyn.test")
    assert not await registry.revoke_tsig_key("nas2", "nas1.dyn.test")  # not nas2's
    assert await registry.find_tsig_key("nas1.dyn.test") == old
    assert await registry.revoke_tsig_key("nas1", "NAS1.dyn.test.")  # as DNS names compare
    assert await registry.find_tsig_key("nas1.dyn.test") is None
    assert await registry.list_tsig_keys("nas1") == [new]
    assert await registry.list_tsig_keys("nas2") == [other]
    assert not await registry.revoke_tsig_key("nas1", "nas1.dyn.test")


async def test_deleting_a_device_takes_its_tokens_and_leaves_no_bytes(
    registry: Registry, registry_bytes: Callable[[], bytes]
) -> None:
    alice = await registry.create_account("alice@example.org", "Alice")
    marker_key = b"\xa5" * 16 + b"ERASE-ME-KEY-123"
    await registry.enrol_device(alice.account_id, "erasable-device-name", marker_key)
    _, secret = await registry.create_token(TokenKind.DYNDNS2, device_name="erasable-device-name")
    before = registry_bytes()
    assert marker_key in before or b"erasable-device-name" in before
    assert await registry.delete_device("erasable-device-name")
    assert await registry.get_device("erasable-device-name") is None
    assert await registry.verify_token(TokenKind.DYNDNS2, secret) is None
    remaining = registry_bytes()
    assert marker_key not in remaining
    assert b"erasable-device-name" not in remaining
    assert not await registry.delete_device("erasable-device-name")


async def test_deleting_an_account_deletes_its_devices(registry: Registry) -> None:
    alice = await registry.create_account("alice@example.org", "Alice")
    bob = await registry.create_account("bob@example.org", "Bob")
    await registry.enrol_device(alice.account_id, "nas1", KEY_A)
    await registry.enrol_device(alice.account_id, "nas2", KEY_B)
    await registry.enrol_device(bob.account_id, "bobnas", bytes(32))
    _, secret = await registry.create_token(TokenKind.API, account_id=alice.account_id)
    assert await registry.delete_account(alice.account_id) == ["nas1", "nas2"]
    assert [d.name for d in await registry.list_devices()] == ["bobnas"]
    assert await registry.verify_token(TokenKind.API, secret) is None
    with pytest.raises(NotFound):
        await registry.delete_account(alice.account_id)


async def test_install_registrations_expire(
    registry: Registry, clock: Clock, registry_bytes: Callable[[], bytes]
) -> None:
    registration = await registry.register_install(
        "k7qd-xm2p-9hta", KEY_A, ("192.168.1.30",), 8080, "198.51.100.7", lifetime_s=86400
    )
    assert registration.expires_at == clock.now + 86400
    found = await registry.find_install("K7QD XM2P 9HTA")  # as a person might type it
    assert found == registration
    assert await registry.find_install("K7QD-XM2P-9HTB") is None
    assert await registry.find_install("short") is None
    stored = registry_bytes()
    assert b"K7QDXM2P9HTA" not in stored  # stored as a hash only
    with pytest.raises(Conflict):
        await registry.register_install(
            "K7QDXM2P9HTA", KEY_B, (), 8080, "198.51.100.7", lifetime_s=60
        )
    with pytest.raises(InvalidValue, match="24 hours"):
        await registry.register_install("ABCDEFGH12", KEY_B, (), 80, "198.51.100.7", 86401)
    with pytest.raises(InvalidValue, match="http or https"):
        await registry.register_install("ABCDEFGH12", KEY_B, (), 80, "198.51.100.7", 60, "ftp")
    clock.now += 86400
    assert await registry.find_install("K7QD-XM2P-9HTA") is None  # expired: invisible at once
    assert await registry.purge_expired_installs() == 1
    assert KEY_A not in registry_bytes()


def test_cloud_key_normalization() -> None:
    assert normalize_cloud_key(" ab12-cd34 ef ") == "AB12CD34EF"
    with pytest.raises(InvalidValue):
        normalize_cloud_key("ab-12")
    with pytest.raises(InvalidValue):
        normalize_cloud_key("abcd/efgh")


async def test_blocking_calls_run_off_the_trio_thread(registry: Registry) -> None:
    seen: list[int] = []
    original = registry.backend.list_accounts

    def spy() -> list:  # type: ignore[type-arg]
        seen.append(threading.get_ident())
        return original()

    registry.backend.list_accounts = spy  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(registry.list_accounts)
    assert len(seen) == 4
    assert threading.get_ident() not in seen


async def test_an_erasure_waits_out_a_concurrent_reader_and_then_leaves_no_bytes(
    tmp_path: Path,
) -> None:
    # SQLite's own (PostgreSQL's: test_registry_postgres.py). Another process (relayd,
    # ddnsd) reading the registry holds a snapshot: the WAL cannot be truncated while it
    # does. The erasure must not report done while the old page images are still in the
    # WAL, and must finish once the reader lets go.
    registry = Registry.open_sqlite(tmp_path / "registry.sqlite3")
    alice = await registry.create_account("alice@example.org", "Alice")
    marker_key = b"\x5a" * 16 + b"ERASE-ME-LATER-1"
    await registry.enrol_device(alice.account_id, "reader-held-device", marker_key)
    path = tmp_path / "registry.sqlite3"
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM devices").fetchone()  # the snapshot is held
    assert await registry.delete_device("reader-held-device")
    assert registry.erasure_pending()
    assert marker_key in database_bytes(path)  # what the old code called erased
    assert not await registry.finish_erasure(timeout_s=0.2)  # the reader still holds it
    reader.execute("COMMIT")
    reader.close()
    await registry.finish_erasure()
    assert not registry.erasure_pending()
    remaining = database_bytes(path)
    assert marker_key not in remaining
    assert b"reader-held-device" not in remaining
    await registry.aclose()


def _sqlite_error(name: str) -> sqlite3.Error:
    error = sqlite3.OperationalError(name.lower())
    error.sqlite_errorname = name
    return error


@pytest.mark.parametrize(
    ("name", "gone"),
    [
        ("SQLITE_FULL", False),  # room may return: the reserve, or the operator
        ("SQLITE_BUSY", False),  # another process's lock ends
        ("SQLITE_BUSY_SNAPSHOT", False),
        ("SQLITE_LOCKED", False),
        ("SQLITE_NOMEM", False),
        ("SQLITE_CONSTRAINT_UNIQUE", False),  # a unit's own fault: its boundary's business
        ("SQLITE_ERROR", False),
        ("SQLITE_CORRUPT", True),
        ("SQLITE_NOTADB", True),
        ("SQLITE_READONLY_DBMOVED", True),  # SQLite's own word for a deleted file
        ("SQLITE_READONLY", True),  # a file system remounted read-only
        ("SQLITE_IOERR_SHORT_READ", True),
        ("SQLITE_CANTOPEN", True),
    ],
)
async def test_what_is_gone_for_good_and_what_heals(tmp_path: Path, name: str, gone: bool) -> None:
    backend = SQLiteBackend(tmp_path / "registry.sqlite3")
    try:
        assert (backend.why_gone(_sqlite_error(name)) is not None) is gone
        assert backend.why_gone(OSError("not SQLite's")) is None
    finally:
        backend.close()


async def test_another_file_at_the_path_is_not_the_registry(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite3"
    registry = Registry.open_sqlite(path)
    await registry.check()
    SQLiteBackend(tmp_path / "other.sqlite3").close()
    (tmp_path / "other.sqlite3").replace(path)  # a restore over the live file, say
    with pytest.raises(RegistryGone, match="another file is at this path now"):
        await registry.device_names()
    assert isinstance(registry.gone, RegistryGone)
    with trio.fail_after(1):
        assert await registry.wait_gone() is registry.gone
    await registry.aclose()  # closing still works


async def test_a_registry_that_is_gone_raises_on_every_call(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite3"
    registry = Registry.open_sqlite(path)
    path.unlink()
    for call in (registry.check, registry.device_names, registry.purge_expired_installs):
        with pytest.raises(RegistryGone, match="no such file"):
            await call()
    await registry.aclose()


async def test_the_reserve_is_made_beside_the_database_only_with_room_twice_over(
    tmp_path: Path,
) -> None:
    backend = SQLiteBackend(tmp_path / "registry.sqlite3", reserve_bytes=64 * 1024)
    assert backend.reserve_path == tmp_path / "registry.sqlite3.reserve"
    assert backend.reserve_path.stat().st_blocks * 512 >= 64 * 1024  # allocated, not a hole
    assert backend.reserve_path.read_bytes() == b"\0" * (64 * 1024)
    backend.close()
    huge = SQLiteBackend(tmp_path / "huge.sqlite3", reserve_bytes=1 << 60)
    assert huge.reserve_path is not None and not huge.reserve_path.exists()
    huge.close()
    memory = SQLiteBackend(":memory:")
    assert memory.reserve_path is None
    memory.close()


@pytest.mark.parametrize("what", ["a directory", "not a database"])
async def test_a_registry_that_cannot_be_opened_is_gone(tmp_path: Path, what: str) -> None:
    path = tmp_path / "registry.sqlite3"
    if what == "a directory":
        path.mkdir()
    else:
        path.write_bytes(b"not SQLite" * 500)
    with pytest.raises(RegistryGone, match=str(path)):
        SQLiteBackend(path)


async def test_owners_sign_in_by_name_and_sessions_expire_and_go_with_the_account(
    registry: Registry, clock: Clock, registry_bytes: Callable[[], bytes]
) -> None:
    owner = await registry.create_owner("alice-erasable", "$argon2id$v=19$stand-in", "Alice")
    assert owner.email == ""  # none unless given
    assert await registry.find_sign_in("alice-erasable") == (
        owner.account_id,
        "$argon2id$v=19$stand-in",
    )
    assert await registry.find_sign_in("bob") is None
    assert await registry.account_name(owner.account_id) == "alice-erasable"
    with pytest.raises(Conflict):
        await registry.create_owner("alice-erasable", "$argon2id$other", "Another Alice")
    for bad in ("al", "Alice", "-alice", "a" * 33, "alice smith"):
        with pytest.raises(InvalidValue):
            await registry.create_owner(bad, "$argon2id$x", "X")
    assert len(await registry.list_accounts()) == 1  # the refused ones left nothing
    session = bytes(range(32))
    await registry.create_session(session, owner.account_id, 3600)
    assert await registry.session_account(session) == owner.account_id
    clock.now += 3600
    assert await registry.session_account(session) is None  # expired
    assert await registry.purge_expired_sessions() == 1
    await registry.create_session(session, owner.account_id, 3600)
    assert await registry.end_session(session)
    assert await registry.session_account(session) is None
    await registry.create_session(b"\x01" * 32, owner.account_id, 3600)
    export = await registry.export_account(owner.account_id)
    assert export["account"]["account_name"] == "alice-erasable"
    await registry.delete_account(owner.account_id)
    assert await registry.find_sign_in("alice-erasable") is None
    assert await registry.session_account(b"\x01" * 32) is None
    stored = registry_bytes()
    assert b"alice-erasable" not in stored and b"stand-in" not in stored


async def test_a_pairing_code_enrols_its_key_once_for_the_first_owner(
    registry: Registry, clock: Clock, registry_bytes: Callable[[], bytes]
) -> None:
    alice = await registry.create_account("alice@example.org", "Alice")
    bob = await registry.create_account("bob@example.org", "Bob")
    key = bytes(range(32))
    code = await registry.create_pairing(key, 600)
    assert len(code) == 9 and code[4] == "-"
    assert code.encode() not in registry_bytes()
    # A name that cannot be, or is taken: refused, and the code still works.
    await registry.enrol_device(bob.account_id, "taken", bytes(range(1, 33)))
    with pytest.raises(InvalidValue):
        await registry.complete_pairing(code, alice.account_id, "install")
    with pytest.raises(Conflict):
        await registry.complete_pairing(code, alice.account_id, "taken")
    device = await registry.complete_pairing(
        code.lower().replace("-", " "), alice.account_id, "nas1"
    )
    assert (device.name, device.owner_id, device.public_key) == ("nas1", alice.account_id, key)
    assert await registry.paired_device(key) == "nas1"
    with pytest.raises(NotFound):  # single use: the second owner gets nothing
        await registry.complete_pairing(code, bob.account_id, "nas2")
    # The same NAS cannot be paired twice, even with a fresh code.
    again = await registry.create_pairing(key, 600)
    with pytest.raises(Conflict):
        await registry.complete_pairing(again, bob.account_id, "nas2")
    # A new code ends the key's earlier one; a code ends after its lifetime.
    other = bytes(range(2, 34))
    first = await registry.create_pairing(other, 600)
    second = await registry.create_pairing(other, 600)
    with pytest.raises(NotFound):
        await registry.complete_pairing(first, bob.account_id, "nas3")
    clock.now += 601
    with pytest.raises(NotFound):
        await registry.complete_pairing(second, bob.account_id, "nas3")
    assert await registry.purge_expired_pairings() >= 1


async def test_two_accounts_racing_for_one_device_name_get_one_device(
    registry: Registry, registry_location: Path | str
) -> None:
    """Two portals (two connections to one file) pair two NAS under the same name at the same
    moment, twenty times over: each time exactly one wins, the other is told the name is
    taken, and its code still works for another name."""
    other = Registry.open(registry_location, create=False)
    alice = await registry.create_account("alice@example.org", "Alice")
    bob = await registry.create_account("bob@example.org", "Bob")
    try:
        for round_ in range(20):
            codes = [await registry.create_pairing(bytes([round_, n]) * 16, 600) for n in (1, 2)]
            outcomes: dict[str, str] = {}
            name = f"race{round_}"
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_pair, registry, codes[0], alice.account_id, name, outcomes)
                nursery.start_soon(_pair, other, codes[1], bob.account_id, name, outcomes)
            assert sorted(outcomes.values()) == ["taken", "won"], outcomes
            loser = next(who for who, outcome in outcomes.items() if outcome == "taken")
            code = codes[0] if loser == alice.account_id else codes[1]
            await registry.complete_pairing(code, loser, f"other{round_}")
    finally:
        await other.aclose()


async def _pair(via: Registry, code: str, owner: str, name: str, outcomes: dict[str, str]) -> None:
    try:
        await via.complete_pairing(code, owner, name)
        outcomes[owner] = "won"
    except Conflict:
        outcomes[owner] = "taken"


async def test_features_turned_off_and_on_and_gone_with_the_device(registry: Registry) -> None:
    owner = await registry.create_account("f@example.org", "F")
    await registry.enrol_device(owner.account_id, "nasf", bytes(range(3, 35)))
    assert await registry.devices_with_feature_off("link") == []
    await registry.set_feature("nasf", "link", False)
    await registry.set_feature("nasf", "link", False)  # twice: still one row
    assert await registry.devices_with_feature_off("link") == ["nasf"]
    assert await registry.feature_off("nasf", "link")
    assert await registry.tunnel_key("nasf") is None  # the relay refuses its tunnel
    await registry.set_feature("nasf", "link", True)
    assert await registry.devices_with_feature_off("link") == []
    assert await registry.tunnel_key("nasf") == bytes(range(3, 35))
    assert await registry.tunnel_key("nobody") is None
    with pytest.raises(InvalidValue):
        await registry.set_feature("nasf", "teleport", False)
    with pytest.raises(NotFound):
        await registry.set_feature("nobody", "link", False)
    await registry.set_feature("nasf", "link", False)
    await registry.delete_device("nasf")
    assert await registry.devices_with_feature_off("link") == []


async def test_the_copy_order_names_every_table_after_those_it_references(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path / "registry.sqlite3")
    try:
        tables = {
            name
            for (name,) in backend._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT IN ('schema_version', 'sqlite_sequence')"
            )
        }
        assert set(TABLES) == tables and len(TABLES) == len(tables)
        for table in TABLES:
            for row in backend._db.execute(f"PRAGMA foreign_key_list({table})"):
                assert TABLES.index(row[2]) < TABLES.index(table), (table, row[2])
    finally:
        backend.close()
