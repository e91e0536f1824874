"""Store.apply: one transaction, idempotent, remote passages counted once, bad keys refused."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import KEY_ID, ticket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.core.codes import Kind, PlainCode, plain_hash
from edge.core.decide import Reason
from edge.core.errors import StoreError
from edge.core.facts import Credential, Direction, Revocation
from edge.store import sync as store_sync
from edge.store.database import Store
from edge.store.gate import JournalEntry
from edge.store.sync import (
    APPLY_PART,
    BOOTSTRAP_CURSOR,
    PASSAGE_PART,
    REPLACE_CURSOR,
    REVISION_CURSOR,
    Mirror,
    RemotePassage,
    SyncBatch,
)
from sync import protocol

T0 = datetime(2026, 5, 1, 10, tzinfo=UTC)
_EXAMPLES = itertools.count()  # tmp_path is shared by hypothesis examples: one store each

passages = st.lists(
    st.builds(
        RemotePassage,
        device=st.sampled_from(["north", "south"]),
        seq=st.integers(1, 6),
        credential_id=st.integers(1, 3),
        at=st.integers(0, 3600).map(lambda s: T0 + timedelta(seconds=s)),
        gate=st.sampled_from(["N1", "S1"]),
        direction=st.sampled_from(list(Direction)),
    ),
    max_size=12,
    unique_by=lambda p: (p.device, p.seq),
)


async def test_passages_go_into_the_journal_file_in_parts_a_record_can_wait_for(
    store: Store,
) -> None:
    # Each part is a transaction of the journal file, which every lane's record waits for.
    count = 2 * PASSAGE_PART + 7
    batch = [
        RemotePassage("north", seq, 1 + seq % 5, T0 + timedelta(seconds=seq), "N1",
                      Direction.ENTRY if seq % 3 else Direction.EXIT)
        for seq in range(1, count + 1)
    ]  # fmt: skip
    commits = store._journal.commits
    await store.apply(SyncBatch(passages=batch), {})
    assert store._journal.commits - commits == 3
    (counted,) = store._reader.execute("SELECT sum(count) FROM entries").fetchone()
    assert counted == sum(p.direction is Direction.ENTRY for p in batch)


def _entries(store: Store) -> list[tuple[object, ...]]:
    return store._reader.execute("SELECT * FROM entries ORDER BY credential_id").fetchall()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=passages, split=st.integers(0, 12))
async def test_passages_count_once_whatever_the_repeats_and_order(
    tmp_path: Path, batch: list[RemotePassage], split: int
) -> None:
    store = await Store.open(tmp_path / f"example-{next(_EXAMPLES)}.db")
    try:
        await store.apply(SyncBatch(passages=batch), {})
        once = _entries(store)
        # The same passages again, in two parts and reversed: nothing changes.
        await store.apply(SyncBatch(passages=batch[split:][::-1]), {})
        await store.apply(SyncBatch(passages=batch[:split]), {})
        assert _entries(store) == once
        for cid in {p.credential_id for p in batch}:
            mine = [p for p in batch if p.credential_id == cid]
            row = store._reader.execute(
                "SELECT count, first_at, last_at FROM entries WHERE credential_id = ?", (cid,)
            ).fetchone()
            assert row[0] == sum(p.direction is Direction.ENTRY for p in mine)
            assert row[2] == max(int(p.at.timestamp() * 1000) for p in mine)
    finally:
        await store.close()


async def test_apply_is_all_or_nothing(store: Store) -> None:
    before = store.stats()
    batch = SyncBatch(
        credentials=[Credential(5, Kind.TICKET)],
        revoked_codes=[(b"\x01" * 16, Revocation.REVOKED)],
        keys=[(KEY_ID, b"\x02" * 32, False)],  # another public key for a trusted id
    )
    with pytest.raises(StoreError, match="already trusted with another public key"):
        await store.apply(batch, {"sync.revision": "9"})
    assert store.stats() == before
    assert store.cursor("sync.revision") is None


async def test_apply_moves_cursors_with_the_facts(store: Store) -> None:
    await store.apply(
        SyncBatch(
            revoked_codes=[(b"\x01" * 16, Revocation.REVOKED), (b"\x01" * 16, Revocation.REPLACED)]
        ),
        {"sync.revision": "2"},
    )
    assert store.cursor("sync.revision") == "2"
    row = store._reader.execute("SELECT reason FROM revoked_codes").fetchall()
    assert row == [(2,)]  # the later reason for the same code wins


async def test_the_sync_revision_never_goes_backwards_whoever_writes_it(store: Store) -> None:
    await store.apply(SyncBatch(), {REVISION_CURSOR: "4"})
    unpaid = Credential(
        credential_id=7,
        kind=Kind.TICKET,
        event_id=1,
        product_id=1,
        policy=Credential.from_claims(ticket(7)).policy,
        validity=None,
        zones=0,
        paid=False,
    )
    with pytest.raises(StoreError, match="never goes backwards"):
        await store.apply(SyncBatch(credentials=[unpaid]), {REVISION_CURSOR: "0"})
    assert store.cursor(REVISION_CURSOR) == "4"
    assert store.stats().credentials == 0  # all or nothing: the stale fact is not applied
    with pytest.raises(StoreError, match="never goes backwards"):
        await store.set_cursor(REVISION_CURSOR, "3")
    await store.set_cursor(REVISION_CURSOR, "4")  # the same revision again is fine
    await store.apply(SyncBatch(), {REVISION_CURSOR: "10"})  # numbers, not text: 10 > 4
    assert store.cursor(REVISION_CURSOR) == "10"
    # Only forgetting it on purpose (a central system restored from a backup) starts over.
    await store.set_cursor(BOOTSTRAP_CURSOR, "somewhere")
    await store.forget_revision()
    assert (store.cursor(REVISION_CURSOR), store.cursor(BOOTSTRAP_CURSOR)) == (None, None)
    await store.set_cursor(REVISION_CURSOR, "2")
    assert store.cursor(REVISION_CURSOR) == "2"


def _credential(cid: int, event_id: int) -> Credential:
    return Credential(
        credential_id=cid,
        kind=Kind.TICKET,
        event_id=event_id,
        product_id=10,
        policy=Credential.from_claims(ticket(cid)).policy,
        validity=None,
        zones=0,
        paid=True,
    )


def _venue_batch(first: int, count: int, event_id: int, prefix: str) -> SyncBatch:
    """`count` credentials of one event, a plain code each; the first two revoked (by code
    and by credential) and the event's neighbour cancelled."""
    ids = range(first, first + count)
    return SyncBatch(
        credentials=[_credential(cid, event_id) for cid in ids],
        plain_codes=[(plain_hash(f"{prefix}{cid}"), cid) for cid in ids],
        revoked_codes=[(plain_hash(f"{prefix}{first}"), Revocation.REVOKED)],
        revoked_credentials=[(first + 1, Revocation.CANCELLED)],
        cancelled_events=[event_id + 100],
    )


_GROUP = SyncBatch(
    credentials=[_credential(1, 0)],
    plain_codes=[(plain_hash("G1"), 1)],
    revoked_products=[(99, Revocation.REVOKED)],
)
_FACT_TABLES = (
    "credentials",
    "plain_codes",
    "revoked_codes",
    "revoked_credentials",
    "revoked_products",
    "cancelled_events",
)


def _held(store: Store) -> dict[str, set[object]]:
    out: dict[str, set[object]] = {}
    for table in _FACT_TABLES:
        rows = store._reader.execute(f"SELECT * FROM {table}").fetchall()
        out[table] = {tuple(r[:-1]) for r in rows}  # without the stale mark
    return out


async def test_a_replacing_bootstrap_leaves_exactly_the_new_facts(store: Store) -> None:
    # The old venue's share is larger than one part, so marking and sweeping take several.
    arena = _venue_batch(1000, 2 * APPLY_PART + 7, 5, "A")
    await store.apply(arena, {})
    await store.apply(_GROUP, {REVISION_CURSOR: "40"})
    codes = [PlainCode(plain_hash(t)) for t in ("A1000", "A1001", "A1002", "G1", "B50")]
    before = [store.facts(c) for c in codes]
    await store.forget_revision()
    assert store.cursor(REPLACE_CURSOR) == "1"
    assert await store.mark_replaced() == sum(len(v) for v in _held(store).values())
    # Marked, the facts still decide exactly as before, until the sweep.
    assert [store.facts(c) for c in codes] == before
    assert before[2].credential is not None  # an arena ticket admits until then
    # The new snapshot: the group's facts again, and the hall's.
    hall = _venue_batch(50, 3, 6, "B")
    await store.apply(_GROUP, {})
    await store.apply(hall, {})
    expected = _held(store)  # what the new venue's gate would hold ...
    fresh = await Store.open(store.path + ".fresh")
    try:
        await fresh.apply(_GROUP, {})
        await fresh.apply(hall, {})
        expected = _held(fresh)  # ... on a store of its own
    finally:
        await fresh.close()
    removed = await store.sweep_replaced()
    assert removed == len(arena.credentials) * 2 + 3
    assert _held(store) == expected
    for table in _FACT_TABLES:
        assert store._reader.execute(f"SELECT count(*) FROM {table} WHERE stale").fetchone() == (0,)
    # The arena's codes are unknown now; the group's pass and the hall's tickets are known.
    after = [store.facts(c) for c in codes]
    assert [f.credential is not None for f in after] == [False, False, False, True, True]
    assert after[0].code_revoked is None  # its revocation went with it
    # A second sweep finds nothing; a mark without a replacing bootstrap is never left over.
    assert await store.sweep_replaced() == 0


async def test_a_fact_written_again_during_the_replacement_loses_its_mark(store: Store) -> None:
    await store.apply(_venue_batch(10, 3, 5, "A"), {REVISION_CURSOR: "9"})
    await store.forget_revision()
    await store.mark_replaced()
    await store.apply(_venue_batch(10, 3, 5, "A"), {})  # every one of them again
    assert await store.sweep_replaced() == 0
    assert store.stats().credentials == 3


async def test_an_upload_batch_packed_from_journal_rows_is_the_body_of_its_records(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "edge.db")
    try:
        at = datetime(2026, 5, 1, 9, 30, 0, 123000, tzinfo=UTC)
        for n, (reason, direction, cid, code_hash) in enumerate(
            [
                (Reason.ADMITTED, Direction.ENTRY, 11, b"a" * 16),
                (Reason.ALREADY_USED, Direction.ENTRY, 11, b"a" * 16),
                (Reason.MALFORMED, Direction.EXIT, None, None),
                (Reason.ADMITTED, Direction.EXIT, 12, b"b" * 16),
            ]
        ):
            entry = JournalEntry(at + timedelta(milliseconds=n), "lane-1", direction, reason,
                                 cid, code_hash, "…x")  # fmt: skip
            await store.record(entry)
        await store.mark_uploaded([1])
        rows = store.unsent_rows(10)
        # What the upload used to build from JournalRow objects, byte for byte.
        records = [
            protocol.JournalRecord(
                seq=row.seq,
                at_ms=int(row.entry.at.timestamp() * 1000),
                lane=row.entry.lane,
                direction=row.entry.direction.value,
                reason=row.entry.reason.value,
                admitted=row.entry.reason.admits,
                code_hash=row.entry.code_hash,
                credential_id=row.entry.credential_id,
            )
            for row in store.unsent(10)
        ]
        assert [r.seq for r in records] == [2, 3, 4]
        assert protocol.journal_rows_to_wire(rows) == protocol.journal_to_wire(records)
        assert protocol.journal_from_wire(protocol.journal_rows_to_wire(rows)) == records
        assert store.unsent_rows(1) == rows[:1]
    finally:
        await store.close()


async def test_a_mirror_never_admits_early_what_it_refuses(store: Store) -> None:
    """New facts go first in parts; what the listing revokes or blocks waits for the last
    transaction. Here that transaction fails: the early parts are in, nothing held back is."""
    count = APPLY_PART * 2 + 7
    credentials = [Credential(cid, Kind.TICKET, product_id=1) for cid in range(1, count + 1)]
    codes = [(plain_hash(f"code-{cid}"), cid) for cid in range(1, count + 1)]
    cancelled, blocked, revoked = 5, 6, 7  # the listing refuses these three
    blocked_hash, revoked_hash = codes[blocked - 1][0], codes[revoked - 1][0]
    mirror = Mirror(
        credentials=credentials,
        plain_codes=codes,
        revoked_credentials=[(cancelled, Revocation.CANCELLED)],
        revoked_codes=[(revoked_hash, Revocation.REVOKED)],
        blocks=[(blocked_hash, True)],
    )
    with sqlite3.connect(store.path) as conn:  # the last transaction writes the cursor
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON sync_cursors"
            " BEGIN SELECT RAISE(ABORT, 'refused for the test'); END"
        )
    with pytest.raises(StoreError, match="refused for the test"):
        await store.mirror(mirror, {"test": "1"})
    mapped = await store.plain_code_index()
    assert len(mapped) == count - 3
    assert not {blocked_hash, revoked_hash, codes[cancelled - 1][0]} & set(mapped)
    assert cancelled not in await store.credential_index()
    with sqlite3.connect(store.path) as conn:
        conn.execute("DROP TRIGGER refuse")
    await store.mirror(mirror, {"test": "1"})  # again, whole: the same as at once
    assert len(await store.plain_code_index()) == count
    assert store.facts(PlainCode(revoked_hash)).code_revoked is Revocation.REVOKED
    assert store.code_blocked(blocked_hash)
    facts = store.facts(PlainCode(codes[cancelled - 1][0]))
    assert facts.credential_revoked is Revocation.CANCELLED
    assert store.cursor("test") == "1"


async def test_monitoring_never_counts_a_large_backlog_on_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # /health, /metrics and the status pages show the journal backlog. Counting it walks the
    # unsent index on the thread that asks (4 ms for 100,000 rows, 58 ms for a million): on
    # the loop, every scan waited for each scrape. The loop now counts up to a limit, and a
    # larger backlog is counted in a worker thread.
    monkeypatch.setattr(store_sync, "BACKLOG_EXACT_LIMIT", 10)
    store = await Store.open(tmp_path / "edge.db")

    def entry(n: int) -> JournalEntry:
        at = datetime.now(UTC)
        return JournalEntry(at, "lane-1", Direction.ENTRY, Reason.ADMITTED, n, b"h" * 16, "…x")

    async def shows(count: int) -> bool:
        for _ in range(200):
            if store.seen_backlog() == count:
                return True
            await asyncio.sleep(0.01)
        return False

    counted_on: list[int] = []
    read_here = store._read_here

    def counted(sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        counted_on.append(threading.get_ident())
        return read_here(sql, parameters)

    monkeypatch.setattr(store, "_read_here", counted)
    on_loop: list[str] = []
    try:
        for n in range(3):
            await store.record(entry(n))
        assert store.seen_backlog() == 3  # below the limit: exact, at once
        for n in range(30):
            await store.record(entry(n))
        store._reader.set_trace_callback(on_loop.append)
        assert store.seen_backlog() >= 10  # at least the limit until the count is in
        assert await shows(33)
        assert counted_on
        assert threading.get_ident() not in counted_on
        # Each statement the loop ran on the backlog stopped at the limit.
        counts = [sql for sql in on_loop if "uploaded = 0" in sql]
        assert counts
        assert all("LIMIT 10" in sql for sql in counts)
        # An older count is taken again.
        await store.mark_uploaded(range(1, 21))
        monkeypatch.setattr(store_sync, "BACKLOG_FRESH_SECONDS", 0.0)
        assert await shows(13)
        # Drained below the limit and grown again: never the count of the older backlog.
        monkeypatch.setattr(store_sync, "BACKLOG_FRESH_SECONDS", 60.0)
        await store.mark_uploaded(range(21, 30))
        assert store.seen_backlog() == 4
        for n in range(20):
            await store.record(entry(n))
        assert store.seen_backlog() >= 10
        assert store.seen_backlog() != 13
        assert await shows(24)
    finally:
        store._reader.set_trace_callback(None)
        await store.close()


async def test_a_count_of_a_backlog_drained_meanwhile_is_not_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A count taken in the worker thread before the backlog drained below the limit, that
    # lands after it did, is history: shown, it stayed for BACKLOG_FRESH_SECONDS.
    monkeypatch.setattr(store_sync, "BACKLOG_EXACT_LIMIT", 10)
    monkeypatch.setattr(store_sync, "BACKLOG_FRESH_SECONDS", 60.0)
    store = await Store.open(tmp_path / "edge.db")
    land = threading.Event()
    read_here = store._read_here

    def counted_late(sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        rows = read_here(sql, parameters)
        land.wait(10)  # counted now, handed back later
        return rows

    monkeypatch.setattr(store, "_read_here", counted_late)
    at = datetime.now(UTC)
    try:
        for n in range(15):
            await store.record(
                JournalEntry(at, "lane-1", Direction.ENTRY, Reason.ADMITTED, n, b"h" * 16, "…x")
            )
        assert store.seen_backlog() == 10  # the count of 15 runs
        await store.mark_uploaded(range(1, 16))
        assert store.seen_backlog() == 0
        for n in range(12):
            await store.record(
                JournalEntry(at, "lane-1", Direction.ENTRY, Reason.ADMITTED, n, b"h" * 16, "…x")
            )
        land.set()
        shown = []
        for _ in range(200):
            shown.append(store.seen_backlog())
            if shown[-1] == 12:
                break
            await asyncio.sleep(0.01)
        assert shown[-1] == 12
        assert 15 not in shown
    finally:
        land.set()
        await store.close()
