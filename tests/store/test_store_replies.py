"""Journal upload bookkeeping: unsent rows oldest first, answers recorded with the mark."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from edge.core.decide import Reason
from edge.core.facts import Direction, EntryState
from edge.store.base import from_ms
from edge.store.database import Store
from edge.store.gate import JournalEntry

AT = datetime(2026, 6, 1, 12, tzinfo=UTC)


def _entry(minutes: int, reason: Reason = Reason.ADMITTED) -> JournalEntry:
    return JournalEntry(
        at=AT + timedelta(minutes=minutes),
        lane="North 1",
        direction=Direction.ENTRY,
        reason=reason,
        credential_id=minutes,
        code_hash=bytes([minutes]) * 16,
        code_hint="…abcd",
    )


async def test_unsent_oldest_first_until_marked(store: Store) -> None:
    seqs = [await store.record(_entry(m)) for m in (1, 2, 3)]
    assert [row.seq for row in store.unsent()] == seqs
    assert [row.seq for row in store.unsent(limit=2)] == seqs[:2]
    assert store.unsent()[0].entry == _entry(1)
    await store.mark_sent([(seqs[0], "ok", ""), (seqs[2], "error", "already_redeemed")])
    assert [row.seq for row in store.unsent()] == [seqs[1]]
    assert store.reply(seqs[0]) == ("ok", "")
    assert store.reply(seqs[2]) == ("error", "already_redeemed")
    assert store.reply(seqs[1]) is None
    assert store.journal_backlog() == 1
    # A retry overwrites the answer; the row stays sent.
    await store.mark_sent([(seqs[2], "ok", "")])
    assert store.reply(seqs[2]) == ("ok", "")


async def test_block_and_unblock(store: Store) -> None:
    h = b"\x07" * 16
    assert not store.code_blocked(h)
    await store.block_codes([(h, True)])
    await store.block_codes([(h, True)])  # idempotent
    assert store.code_blocked(h)
    await store.block_codes([(h, False)])
    assert not store.code_blocked(h)


def _state(count: int, first: int | None, last: int, direction: Direction, gate: str) -> EntryState:
    return EntryState(
        count=count,
        first_at=AT + timedelta(minutes=first) if first is not None else None,
        first_gate=gate if first is not None else None,
        last_at=AT + timedelta(minutes=last),
        last_direction=direction,
        last_gate=gate,
    )


def _facts(store: Store, cid: int) -> EntryState | None:
    row = store._reader.execute(
        "SELECT count, first_at, first_gate, last_at, last_direction, last_gate"
        " FROM entries WHERE credential_id = ?",
        (cid,),
    ).fetchone()
    if row is None:
        return None
    return EntryState(
        row[0],
        from_ms(row[1]) if row[1] is not None else None,
        row[2],
        from_ms(row[3]),
        Direction(row[4]),
        row[5],
    )


async def test_merge_entries_never_counts_twice(store: Store) -> None:
    await store.record(_entry(10))  # credential 10 entered here at minute 10
    local = _facts(store, 10)
    assert local is not None
    # The central system knows that entry (uploaded) and an earlier one elsewhere.
    await store.merge_entries([(10, _state(1, 5, 5, Direction.ENTRY, "pretix"))])
    merged = _facts(store, 10)
    assert merged == EntryState(
        1, AT + timedelta(minutes=5), "pretix", local.last_at, Direction.ENTRY, "North 1"
    )
    await store.merge_entries([(10, _state(3, 7, 20, Direction.EXIT, "pretix"))])
    assert _facts(store, 10) == EntryState(
        3, AT + timedelta(minutes=5), "pretix", AT + timedelta(minutes=20), Direction.EXIT, "pretix"
    )
    await store.merge_entries([(11, _state(0, None, 1, Direction.EXIT, "pretix"))])
    assert _facts(store, 11) == _state(0, None, 1, Direction.EXIT, "pretix")


async def test_move_entries_merges_into_the_new_id(store: Store) -> None:
    await store.record(_entry(3))  # credential 3
    await store.merge_entries([(-5, _state(1, 1, 1, Direction.ENTRY, "South"))])
    await store.move_entries([(-5, 3), (-6, 4)])  # -6 has no passages: nothing happens
    assert _facts(store, -5) is None
    assert _facts(store, 4) is None
    moved = _facts(store, 3)
    assert moved is not None
    assert (moved.count, moved.first_gate, moved.last_gate) == (1, "South", "North 1")
