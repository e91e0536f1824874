"""The gate's part of the store: facts of a code, the journal of decisions, recent decisions."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge.core.decide import Reason
from edge.core.errors import StoreError
from edge.core.facts import Direction
from edge.store.base import from_ms, to_ms
from edge.store.facts import FactsStore

_JOURNAL_SQL = (
    "INSERT INTO journal (at, lane, direction, reason, admitted, code_hash, code_hint,"
    " credential_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)

_ENTRY_SQL = """
INSERT INTO entries (credential_id, count, first_at, first_gate, last_at, last_direction, last_gate)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (credential_id) DO UPDATE SET
    count = count + excluded.count,
    first_at = coalesce(first_at, excluded.first_at),
    first_gate = coalesce(first_gate, excluded.first_gate),
    last_at = excluded.last_at,
    last_direction = excluded.last_direction,
    last_gate = excluded.last_gate
"""

JOURNAL_COLUMNS = "seq, at, lane, direction, reason, credential_id, code_hash, code_hint, uploaded"


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One decision as the journal keeps it."""

    at: datetime
    lane: str
    direction: Direction
    reason: Reason
    credential_id: int | None
    code_hash: bytes | None  # None for input that was not a code
    code_hint: str  # masked code text, never the whole code


@dataclass(frozen=True, slots=True)
class JournalRow:
    """A journal entry with its sequence number."""

    seq: int
    entry: JournalEntry
    uploaded: bool


class GateStore(FactsStore):
    """What a gate may do: read a code's facts, journal a decision, list recent decisions."""

    async def record(self, entry: JournalEntry) -> int:
        """Journal a decision (and an admitted passage) durably; returns its sequence number.

        One hop to the store's writer, ahead of any bulk write, committed together with the
        other lanes' records that wait at the same moment.
        """
        at = to_ms(entry.at)
        admitted = entry.reason.admits
        journal = (
            at,
            entry.lane,
            entry.direction.value,
            entry.reason.value,
            int(admitted),
            entry.code_hash,
            entry.code_hint,
            entry.credential_id,
        )
        passage = None
        if admitted and entry.credential_id is not None:
            is_entry = entry.direction is Direction.ENTRY
            passage = (
                entry.credential_id,
                int(is_entry),
                at if is_entry else None,
                entry.lane if is_entry else None,
                at,
                entry.direction.value,
                entry.lane,
            )

        def write(conn: sqlite3.Connection) -> int | None:
            seq = conn.execute(_JOURNAL_SQL, journal).lastrowid
            if passage is not None:
                conn.execute(_ENTRY_SQL, passage)
            return seq

        seq = await self._urgent(write)
        if seq is None:  # an INSERT into a rowid table always sets it
            raise StoreError(f"{self.path}: journal insert returned no row id")
        return seq

    async def record_clock_jump(self, at: datetime, jump_ms: int) -> None:
        """Record that the wall clock stepped by `jump_ms` (journal rows before it used the old)."""
        row = (to_ms(at), jump_ms)

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO clock_jumps (at, jump_ms, after_seq)"
                " VALUES (?, ?, (SELECT max(seq) FROM journal))",
                row,
            )

        await self._urgent(write)  # beside the journal rows it explains

    def clock_jumps(self, limit: int = 10) -> list[tuple[datetime, int, int | None]]:
        """The last clock steps, newest first: (at, jump in ms, last journal seq before it)."""
        rows = self._reader.execute(
            "SELECT at, jump_ms, after_seq FROM clock_jumps ORDER BY seq DESC LIMIT ?", (limit,)
        ).fetchall()
        return [(from_ms(at), int(jump), after) for at, jump, after in rows]

    def recent(self, limit: int = 20) -> list[JournalRow]:
        """The last `limit` journal entries, newest first."""
        rows = self._reader.execute(
            f"SELECT {JOURNAL_COLUMNS} FROM journal ORDER BY seq DESC LIMIT ?", (limit,)
        ).fetchall()
        return journal_rows(rows)

    def admitted_hashes(self) -> set[bytes]:
        """Hashes of every admitted code in the journal (tests and audits)."""
        rows = self._reader.execute(
            "SELECT code_hash FROM journal WHERE admitted = 1 AND code_hash IS NOT NULL"
        )
        return {bytes(h) for (h,) in rows}


def journal_rows(rows: Iterable[Any]) -> list[JournalRow]:
    """Journal rows read as JOURNAL_COLUMNS (for the owners in this package)."""
    return [
        JournalRow(
            seq,
            JournalEntry(
                from_ms(at), lane, Direction(direction), Reason(reason), cid, code_hash, hint
            ),
            bool(uploaded),
        )
        for seq, at, lane, direction, reason, cid, code_hash, hint, uploaded in rows
    ]
