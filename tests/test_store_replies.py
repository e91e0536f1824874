"""Journal upload bookkeeping: unsent rows oldest first, answers recorded with the mark."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from edge.decide import Reason
from edge.facts import Direction
from edge.store import JournalEntry, Store

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
