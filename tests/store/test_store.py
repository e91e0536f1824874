"""edge.store: migrations, refusal of foreign files, facts from every table, the journal."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import KEY_ID, OTHER_PRIVATE, PRIVATE, mint_code, public_bytes, ticket
from racing import run_at_once

from edge.core.codes import EntryPolicy, Kind, PlainCode, SignedCode, Validity, parse, plain_hash
from edge.core.decide import Reason
from edge.core.errors import StoreError, StoreRefusedError
from edge.core.facts import Credential, Direction, EntryState, Revocation
from edge.store import base as store_base
from edge.store import schema
from edge.store.base import initialise
from edge.store.database import Store
from edge.store.gate import JournalEntry

AT = datetime(2026, 6, 1, 9, 30, 15, 123000, tzinfo=UTC)


def signed(text: str) -> SignedCode:
    """The parsed signed code."""
    code = parse(text.encode())
    assert isinstance(code, SignedCode)
    return code


CODE = signed(mint_code(ticket(1001, event_id=42, product_id=10)))


def _user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _columns(path: Path, table: str) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
    finally:
        conn.close()


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _entry(reason: Reason = Reason.ADMITTED, **changes: object) -> JournalEntry:
    fields: dict[str, object] = {
        "at": AT,
        "lane": "North 1",
        "direction": Direction.ENTRY,
        "reason": reason,
        "credential_id": 1001,
        "code_hash": CODE.hash,
        "code_hint": "EDGE:…ABCD",
    }
    fields.update(changes)
    return JournalEntry(**fields)  # type: ignore[arg-type]


async def _recorded(db: Path) -> None:
    """A store at `db` that journaled one admitted scan of CODE, closed."""
    store = await Store.open(db)
    await store.put_keys([(KEY_ID, public_bytes(PRIVATE), False)])
    await store.record(_entry())
    await store.close()


def _emptied(path: Path) -> None:
    """What a full disk, a bad card or a careless copy leaves: the file empty, no WAL."""
    path.write_bytes(b"")
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


# -- migrations ------------------------------------------------------------------------------


async def test_migrates_an_empty_file_to_the_current_version(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    store = await Store.open(db)
    try:
        assert store.stats().schema_version == schema.VERSION
        assert store.stats().journal == 0
    finally:
        await store.close()
    assert _user_version(db) == schema.VERSION
    journal = tmp_path / "new.journal.db"
    assert _user_version(journal) == schema.JOURNAL_VERSION
    assert "uploaded" in _columns(journal, "journal")
    for table in schema.JOURNAL_TABLES:
        assert _columns(db, table) == []  # only in the journal file


async def test_an_existing_empty_file_is_refused_not_recreated(tmp_path: Path) -> None:
    db = tmp_path / "edge.db"
    content = b""
    db.write_bytes(content)
    with pytest.raises(StoreRefusedError, match=r"empty \(0 bytes\).*edge init"):
        await Store.open(db)
    assert db.read_bytes() == content
    assert _names(tmp_path) == ["edge.db"]


async def test_a_database_without_the_edge_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "edge.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode = WAL")  # what a crash after the first pragma leaves
    conn.close()
    size = db.stat().st_size
    with pytest.raises(StoreRefusedError, match="holds no edge schema"):
        await Store.open(db)
    assert db.stat().st_size == size
    assert _user_version(db) == 0


async def test_a_used_ticket_stays_used_when_the_store_file_is_emptied(tmp_path: Path) -> None:
    db = tmp_path / "edge.db"
    await _recorded(db)
    _emptied(db)
    with pytest.raises(StoreRefusedError):
        await Store.open(db)  # never a fresh store that would admit the ticket again


async def test_initialise_moves_an_unusable_file_aside_and_starts_empty(tmp_path: Path) -> None:
    db = tmp_path / "edge.db"
    db.write_bytes(b"")
    kept = initialise(db)
    assert kept is not None
    assert (tmp_path / Path(kept).name).stat().st_size == 0
    assert _user_version(db) == schema.VERSION
    store = await Store.open(db)
    await store.close()


async def test_initialise_refuses_a_store_and_creates_a_missing_one(tmp_path: Path) -> None:
    db = tmp_path / "edge.db"
    assert initialise(db) is None
    assert _user_version(db) == schema.VERSION
    with pytest.raises(StoreError, match="already an edge store"):
        initialise(db)
    assert [n for n in _names(tmp_path) if "replaced" in n] == []


# -- the journal file ------------------------------------------------------------------------


def _store_of_version_10(db: Path) -> None:
    """A main file as edge wrote it before the journal file: every journal table with rows."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for migration in schema.MIGRATIONS[: schema.JOURNAL_MOVED - 1]:
        conn.executescript(migration)
    conn.execute(f"PRAGMA user_version = {schema.JOURNAL_MOVED - 1}")
    conn.execute("INSERT INTO keys VALUES (?, ?, 0)", (KEY_ID, public_bytes(PRIVATE)))
    for n in (1, 2, 3):
        conn.execute(
            "INSERT INTO journal (at, lane, direction, reason, admitted, code_hash, code_hint,"
            " credential_id, uploaded) VALUES (?, 'North 1', 'entry', 'admitted', 1, ?,"
            " 'EDGE:…ABCD', 1001, ?)",
            (2000 + n, CODE.hash, int(n == 1)),
        )
    conn.execute("INSERT INTO entries VALUES (1001, 3, 2001, 'North 1', 2003, 'entry', 'North 1')")
    conn.execute("INSERT INTO journal_replies VALUES (1, 2500, 'ok', '')")
    conn.execute("INSERT INTO clock_jumps (at, jump_ms, after_seq) VALUES (2002, 3600000, 1)")
    conn.execute("INSERT INTO remote_passages VALUES ('gate-7', 41)")
    conn.close()


def _counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return {
            table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            for table in schema.JOURNAL_TABLES
        }
    finally:
        conn.close()


_MOVED = {"journal": 3, "entries": 1, "journal_replies": 1, "clock_jumps": 1, "remote_passages": 1}


def test_thirty_processes_opening_a_store_of_version_10_move_its_journal_once(
    tmp_path: Path,
) -> None:
    db = tmp_path / "edge.db"
    _store_of_version_10(db)
    failures = run_at_once(_OPEN_ONE, str(db))
    assert failures == [], "\n\n".join(failures)
    assert _user_version(db) == schema.VERSION
    assert _counts(tmp_path / "edge.journal.db") == _MOVED  # each row once
    for table in schema.JOURNAL_TABLES:
        assert _columns(db, table) == []


async def test_the_moved_journal_keeps_its_rows_and_its_sequence(tmp_path: Path) -> None:
    db = tmp_path / "edge.db"
    _store_of_version_10(db)
    store = await Store.open(db)
    try:
        rows = store.recent()
        assert [(r.seq, r.uploaded) for r in rows] == [(3, False), (2, False), (1, True)]
        assert store.reply(1) == ("ok", "")
        assert store.stats().journal_unsent == 2
        assert [jump for _, jump, _ in store.clock_jumps()] == [3_600_000]
        facts = store.facts(CODE)
        assert facts.entries is not None
        assert facts.entries.count == 3  # a used ticket stays used across the move
        assert await store.record(_entry()) == 4  # never a sequence number the central has
    finally:
        await store.close()


async def test_a_move_cut_short_after_the_copy_is_not_repeated(tmp_path: Path) -> None:
    # A crash after the journal file's copy committed and before the main file dropped its
    # tables: the next open finds the rows in the journal file and copies nothing again.
    db = tmp_path / "edge.db"
    _store_of_version_10(db)
    journal = tmp_path / "edge.journal.db"
    conn = sqlite3.connect(journal, isolation_level=None)
    conn.executescript(schema.JOURNAL_MIGRATIONS[0])
    conn.execute(f"PRAGMA user_version = {schema.JOURNAL_VERSION}")
    conn.execute(f"ATTACH DATABASE '{db}' AS old")
    for table in schema.JOURNAL_TABLES:
        conn.execute(f"INSERT INTO main.{table} SELECT * FROM old.{table}")
    conn.close()
    store = await Store.open(db)
    await store.close()
    assert _counts(journal) == _MOVED
    assert _user_version(db) == schema.VERSION


async def test_a_missing_journal_file_is_refused_and_edge_init_starts_an_empty_one(
    tmp_path: Path,
) -> None:
    db = tmp_path / "edge.db"
    await _recorded(db)
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"edge.journal.db{suffix}").unlink(missing_ok=True)
    with pytest.raises(StoreRefusedError, match=r"journal file is missing.*edge init"):
        await Store.open(db)  # never a fresh journal that would admit the ticket again
    assert not (tmp_path / "edge.journal.db").exists()
    assert initialise(db) is None  # the operator's decision: an empty journal
    store = await Store.open(db)
    try:
        assert store.recent() == []
        assert store.stats().keys == 1  # the main file was kept
    finally:
        await store.close()


async def test_an_emptied_journal_file_is_refused_and_kept_aside_by_edge_init(
    tmp_path: Path,
) -> None:
    db = tmp_path / "edge.db"
    await _recorded(db)
    journal = tmp_path / "edge.journal.db"
    _emptied(journal)
    with pytest.raises(StoreRefusedError, match=r"journal file is empty \(0 bytes\)"):
        await Store.open(db)
    assert journal.read_bytes() == b""
    kept = initialise(db)
    assert kept is not None
    assert Path(kept).name.startswith("edge.journal.db.replaced-")
    assert _user_version(journal) == schema.JOURNAL_VERSION


async def test_edge_init_of_a_lost_main_file_keeps_the_journal_and_its_entries(
    tmp_path: Path,
) -> None:
    db = tmp_path / "edge.db"
    await _recorded(db)
    _emptied(db)  # the main file lost; its journal file is fine
    kept = initialise(db)
    assert kept is not None
    store = await Store.open(db)
    try:
        assert [r.entry.credential_id for r in store.recent()] == [1001]
        facts = store.facts(CODE)
        assert facts.entries is not None
        assert facts.entries.count == 1  # the ticket stays used
    finally:
        await store.close()


_OPEN_ONE = """
import asyncio, sys
from edge.store.database import Store

async def main() -> None:
    store = await Store.open(sys.argv[1])
    await store.close()

asyncio.run(main())
"""


@pytest.mark.parametrize("existing", [False, True], ids=["new-store", "old-schema"])
def test_thirty_processes_opening_one_store_at_once_all_succeed(
    tmp_path: Path, existing: bool
) -> None:
    db = tmp_path / "edge.db"
    if existing:  # a store of schema 1: every opener wants to migrate it
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(schema.MIGRATIONS[0])
        conn.execute("PRAGMA user_version = 1")
        conn.close()
    failures = run_at_once(_OPEN_ONE, str(db))
    assert failures == [], "\n\n".join(failures)
    assert _user_version(db) == schema.VERSION
    assert [n for n in _names(tmp_path) if ".new-" in n] == []


async def test_migrates_a_file_of_the_previous_schema_keeping_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "v1.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript(schema.MIGRATIONS[0])
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO keys VALUES (?, ?, 0)", (KEY_ID, public_bytes(PRIVATE)))
    conn.execute("INSERT INTO credentials VALUES (1001, 0, 42, 10, 1, 3, 0, NULL, NULL, 0, 1)")
    conn.execute("INSERT INTO revoked_products VALUES (99, 3)")
    conn.execute("INSERT INTO entries VALUES (1001, 1, 1000, 'North 1', 2000, 'entry', 'North 1')")
    conn.execute(
        "INSERT INTO journal (at, lane, direction, reason, admitted, code_hash, code_hint,"
        " credential_id) VALUES (2000, 'North 1', 'entry', 'admitted', 1, ?, 'EDGE:…ABCD', 1001)",
        (CODE.hash,),
    )
    conn.execute("INSERT INTO sync_cursors VALUES ('revision', '17')")
    conn.close()
    assert "uploaded" not in _columns(db, "journal")

    store = await Store.open(db)
    try:
        assert store.stats().schema_version == schema.VERSION
        (row,) = store.recent()
        assert row.entry.reason is Reason.ADMITTED
        assert row.entry.code_hash == CODE.hash
        assert row.entry.credential_id == 1001
        assert row.uploaded is False  # the new column's default for old rows
        assert store.stats().journal_unsent == 1
        assert store.cursor("revision") == "17"
        facts = store.facts(CODE)
        assert facts.key is not None
        assert facts.key.key_id == KEY_ID
        assert facts.credential is not None
        assert facts.credential.policy == EntryPolicy.multi(3)
        assert facts.entries is not None
        assert facts.entries.count == 1
        assert facts.entries.first_gate == "North 1"
        assert store.stats().revoked_products == 1
        # The migrated file takes new rows with the new column.
        await store.record(_entry())
        assert store.stats().journal == 2
    finally:
        await store.close()
    journal = tmp_path / "v1.journal.db"  # the journal moved to its own file
    assert "uploaded" in _columns(journal, "journal")
    assert _columns(db, "journal") == []
    conn = sqlite3.connect(journal)
    indexes = {row[1] for row in conn.execute("PRAGMA index_list(journal)")}
    conn.close()
    assert {"journal_unsent", "journal_credential"} <= indexes


async def test_reopening_a_current_file_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "edge.db"
    store = await Store.open(db)
    await store.record(_entry())
    await store.close()
    migrations: list[tuple[str, int | None]] = []
    migrate = store_base._migrate

    def counted(conn: sqlite3.Connection, path: str, *args: Any, **kwargs: Any) -> int:
        migrations.append((Path(path).name, kwargs.get("upto")))
        return migrate(conn, path, *args, **kwargs)

    monkeypatch.setattr(store_base, "_migrate", counted)
    store = await Store.open(db)
    try:
        assert len(store.recent()) == 1
        assert store.stats().schema_version == schema.VERSION
        # One look at each file's version (each a write transaction): before, the main file
        # had a second, empty one.
        assert migrations == [
            ("edge.db", schema.JOURNAL_MOVED - 1),
            ("edge.journal.db", None),
        ]
    finally:
        await store.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "future.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {schema.VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this edge understands"):
        await Store.open(db)
    assert _user_version(db) == schema.VERSION + 1


@pytest.mark.parametrize(
    "content",
    [
        b"this is a configuration file, not a database\n" * 200,
        bytes(range(256)) * 64,
        b"SQLite format 3\x00" + b"\xff" * 4080,  # the magic, then garbage
        b"hello\n",  # shorter than a database header
    ],
    ids=["text", "binary", "bad-header", "tiny"],
)
async def test_a_file_that_is_not_a_store_is_refused_and_left_unchanged(
    tmp_path: Path, content: bytes
) -> None:
    db = tmp_path / "notes.txt"
    db.write_bytes(content)
    with pytest.raises(StoreError, match=str(db)):
        await Store.open(db)
    assert db.read_bytes() == content
    assert _names(tmp_path) == ["notes.txt"]  # no -wal or -shm file left beside it


async def test_a_path_that_cannot_be_opened_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="missing-dir"):
        await Store.open(tmp_path / "missing-dir" / "edge.db")
    with pytest.raises(StoreError, match=str(tmp_path)):
        await Store.open(tmp_path)  # a directory


async def test_wal_mode_is_on(store: Store) -> None:
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


# -- facts from every table ------------------------------------------------------------------


async def test_facts_of_an_unknown_code_are_empty_but_name_the_key(store: Store) -> None:
    facts = store.facts(CODE)
    assert facts.key is not None
    assert facts.key.key_id == KEY_ID
    assert facts.key.verify(CODE.signed, CODE.signature)
    assert not facts.key.retired
    assert facts.credential is None
    assert facts.code_revoked is facts.credential_revoked is facts.product_revoked is None
    assert not facts.event_cancelled
    assert facts.entries is None


async def test_untrusted_and_retired_keys(store: Store) -> None:
    other = signed(mint_code(ticket(5, key_id=9), OTHER_PRIVATE))
    assert store.facts(other).key is None
    await store.put_keys([(9, public_bytes(OTHER_PRIVATE), False)])
    key = store.facts(other).key
    assert key is not None
    assert key.verify(other.signed, other.signature)
    assert store.facts(CODE).key is not None  # several keys at once
    await store.put_keys([(9, public_bytes(OTHER_PRIVATE), True)])
    retired = store.facts(other).key
    assert retired is not None
    assert retired.retired
    still = store.facts(CODE).key
    assert still is not None
    assert not still.retired


@pytest.mark.parametrize(
    "keys",
    [[(70_000, b"k" * 32, False)], [(1, b"short", False)], [(-1, b"k" * 32, False)]],
)
async def test_put_keys_refuses_bad_keys(store: Store, keys: list[tuple[int, bytes, bool]]) -> None:
    with pytest.raises(StoreError):
        await store.put_keys(keys)
    assert store.stats().keys == 1


@pytest.mark.parametrize("revocation", list(Revocation))
async def test_revocation_by_code(store: Store, revocation: Revocation) -> None:
    await store.revoke_codes([(CODE.hash, revocation)])
    assert store.facts(CODE).code_revoked is revocation
    assert store.facts(CODE).credential_revoked is None
    # Another code of the same credential (a replacement card) is not affected.
    replacement = parse(mint_code(ticket(1001, reissue=1)).encode())
    assert store.facts(replacement).code_revoked is None


@pytest.mark.parametrize("revocation", list(Revocation))
async def test_revocation_by_credential(store: Store, revocation: Revocation) -> None:
    await store.revoke_credentials([(1001, revocation)])
    assert store.facts(CODE).credential_revoked is revocation
    assert store.facts(CODE).code_revoked is None
    replacement = parse(mint_code(ticket(1001, reissue=1)).encode())
    assert store.facts(replacement).credential_revoked is revocation
    assert store.facts(parse(mint_code(ticket(1002)).encode())).credential_revoked is None


async def test_revocation_by_product_and_cancelled_event_use_the_claims(store: Store) -> None:
    await store.revoke_products([(10, Revocation.CANCELLED)])
    await store.cancel_events([42])
    facts = store.facts(CODE)
    assert facts.product_revoked is Revocation.CANCELLED
    assert facts.event_cancelled
    other = parse(mint_code(ticket(1002, event_id=43, product_id=11)).encode())
    assert store.facts(other).product_revoked is None
    assert not store.facts(other).event_cancelled


async def test_synced_event_and_product_override_the_claims(store: Store) -> None:
    # The central system moved the credential to event 43 / product 11.
    await store.put_credentials([Credential(1001, Kind.TICKET, event_id=43, product_id=11)])
    await store.cancel_events([42])
    await store.revoke_products([(10, Revocation.REVOKED)])
    facts = store.facts(CODE)
    assert not facts.event_cancelled
    assert facts.product_revoked is None
    await store.cancel_events([43])
    assert store.facts(CODE).event_cancelled


async def test_synced_credential_round_trips(store: Store) -> None:
    credential = Credential(
        1001,
        Kind.PASS,
        event_id=0,
        product_id=20,
        policy=EntryPolicy.unlimited(15),
        validity=Validity(datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        zones=0b101,
        paid=False,
    )
    await store.put_credentials([credential])
    assert store.facts(CODE).credential == credential


async def test_plain_codes_find_their_credential(store: Store) -> None:
    plain = parse(b"0123456789012")
    assert isinstance(plain, PlainCode)
    assert store.facts(plain).credential is None
    assert store.facts(plain).key is None
    credential = Credential(77, Kind.TICKET, 42, 10)
    await store.put_credentials([credential], plain_codes=[(plain_hash("0123456789012"), 77)])
    await store.revoke_credentials([(77, Revocation.REPLACED)])
    await store.cancel_events([42])
    facts = store.facts(plain)
    assert facts.credential == credential
    assert facts.credential_revoked is Revocation.REPLACED
    assert facts.event_cancelled
    assert store.facts(parse(b"0123456789013")).credential is None


async def test_revocation_of_a_plain_code_by_hash(store: Store) -> None:
    plain = parse(b"0123456789012")
    await store.put_credentials(
        [Credential(77, Kind.TICKET)], plain_codes=[(plain_hash("0123456789012"), 77)]
    )
    await store.revoke_codes([(plain.hash, Revocation.CANCELLED)])
    facts = store.facts(plain)
    assert facts.code_revoked is Revocation.CANCELLED
    assert facts.credential_revoked is None


# -- the journal and entries -----------------------------------------------------------------


async def test_record_journals_and_counts_entries(store: Store) -> None:
    seq1 = await store.record(_entry())
    facts = store.facts(CODE)
    assert facts.entries == EntryState(
        count=1,
        first_at=AT,
        first_gate="North 1",
        last_at=AT,
        last_direction=Direction.ENTRY,
        last_gate="North 1",
    )
    later = AT + timedelta(minutes=30)
    seq2 = await store.record(_entry(Reason.EXIT, at=later, direction=Direction.EXIT, lane="S"))
    seq3 = await store.record(_entry(at=later + timedelta(minutes=1), lane="South 2"))
    assert seq1 < seq2 < seq3
    entries = store.facts(CODE).entries
    assert entries is not None
    assert entries.count == 2
    assert (entries.first_at, entries.first_gate) == (AT, "North 1")
    assert entries.last_gate == "South 2"
    assert entries.last_direction is Direction.ENTRY
    assert [row.seq for row in store.recent()] == [seq3, seq2, seq1]
    assert store.recent()[1].entry.direction is Direction.EXIT
    assert store.admitted_hashes() == {CODE.hash}


async def test_an_exit_first_sets_no_first_entry(store: Store) -> None:
    await store.record(_entry(Reason.EXIT, direction=Direction.EXIT))
    entries = store.facts(CODE).entries
    assert entries is not None
    assert entries.count == 0
    assert entries.first_at is None
    assert entries.first_gate is None


async def test_rejections_are_journaled_without_a_passage(store: Store) -> None:
    await store.record(_entry(Reason.ALREADY_USED))
    await store.record(
        _entry(Reason.MALFORMED, credential_id=None, code_hash=None, code_hint="<3 bytes>")
    )
    assert store.facts(CODE).entries is None
    assert store.stats().journal == 2
    assert store.admitted_hashes() == set()
    (malformed, used) = store.recent()
    assert malformed.entry.code_hash is None
    assert malformed.entry.code_hint == "<3 bytes>"
    assert used.entry == _entry(Reason.ALREADY_USED)
    assert used.entry.at == AT  # milliseconds survive


async def test_concurrent_writes_each_commit_whole(store: Store) -> None:
    # Two lanes (or a lane and sync) write at the same time through the one store.
    other = parse(mint_code(ticket(1002)).encode())
    await asyncio.gather(
        store.record(_entry()),
        store.record(_entry(credential_id=1002, code_hash=other.hash, lane="South 2")),
        store.revoke_codes([(b"r" * 16, Revocation.REVOKED)]),
    )
    assert store.stats().journal == 2
    assert store.stats().revoked_codes == 1
    assert store.admitted_hashes() == {CODE.hash, other.hash}


async def test_a_failed_write_beside_another_leaves_no_passage_without_its_journal_row(
    store: Store,
) -> None:
    # Principle 3: a passage (entries row) exists only together with its journal row.
    other = parse(mint_code(ticket(1002)).encode())
    await asyncio.gather(
        store.record(_entry()),
        store.record(_entry(credential_id=1002, code_hash=other.hash, lane="South 2")),
        return_exceptions=True,
    )
    journaled = {row.entry.credential_id for row in store.recent()}
    for code, cid in ((CODE, 1001), (other, 1002)):
        if store.facts(code).entries is not None:
            assert cid in journaled, f"credential {cid} marked used without a journal row"


async def test_put_operations_are_idempotent(store: Store) -> None:
    credential = Credential(1001, Kind.TICKET, 42, 10)
    plain = (plain_hash("0123456789012"), 1001)
    for _ in range(2):
        await store.put_keys([(KEY_ID, public_bytes(PRIVATE), False)])
        await store.put_credentials([credential], plain_codes=[plain])
        await store.revoke_codes([(CODE.hash, Revocation.REVOKED)])
        await store.revoke_credentials([(1001, Revocation.CANCELLED)])
        await store.revoke_products([(10, Revocation.REPLACED)])
        await store.cancel_events([42, 42])
        await store.set_cursor("revision", "5")
    stats = store.stats()
    assert (
        stats.keys,
        stats.credentials,
        stats.plain_codes,
        stats.revoked_codes,
        stats.revoked_credentials,
        stats.revoked_products,
        stats.cancelled_events,
    ) == (1, 1, 1, 1, 1, 1, 1)
    assert store.cursor("revision") == "5"
    assert store.cursor("other") is None


async def test_put_credentials_replaces_older_facts(store: Store) -> None:
    await store.put_credentials([Credential(1001, Kind.TICKET, 42, 10, paid=False)])
    await store.put_credentials([Credential(1001, Kind.TICKET, 42, 10, paid=True)])
    facts = store.facts(CODE)
    assert facts.credential is not None
    assert facts.credential.paid
    assert store.stats().credentials == 1


async def test_rows_survive_reopening(tmp_path: Path) -> None:
    db = tmp_path / "edge.db"
    store = await Store.open(db)
    await store.put_keys([(KEY_ID, public_bytes(PRIVATE), False)])
    await store.revoke_codes([(CODE.hash, Revocation.REPLACED)])
    await store.record(_entry())
    await store.close()
    store = await Store.open(db)
    try:
        facts = store.facts(CODE)
        assert facts.code_revoked is Revocation.REPLACED
        assert facts.entries is not None
        assert facts.entries.count == 1
    finally:
        await store.close()
