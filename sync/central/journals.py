"""The gates' journals as the central system holds them: uploads, passages, reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edge.core.codes import PolicyKind
from sync.central.changelog import ChangeLog, now_ms
from sync.central.connection import SQL, Connection
from sync.protocol import Change, JournalRecord, Passage


@dataclass(frozen=True, slots=True)
class DoubleEntry:
    """A credential admitted more often than its policy allows, at gates cut off from each other."""

    credential_id: int
    device: str
    seq: int
    at_ms: int
    lane: str
    entries: int
    allowed: int


class Journals:
    """Journal rows, each stored once; admitted passages are published to every edge."""

    def __init__(self, connection: Connection, log: ChangeLog) -> None:
        self._connection = connection
        self._log = log

    def ingest(self, device: str, records: Sequence[JournalRecord]) -> tuple[int, int]:
        """Store journal rows once each; publish admitted passages. (new, duplicates)."""
        new = 0
        received = now_ms()
        with self._connection.transaction() as conn:
            changes: list[Change] = []
            for r in records:
                cursor = conn.execute(
                    "INSERT INTO journal VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT DO NOTHING",
                    (
                        device,
                        r.seq,
                        r.at_ms,
                        r.lane,
                        r.direction,
                        r.reason,
                        int(r.admitted),
                        r.code_hash,
                        r.credential_id,
                        received,
                    ),
                )
                if not cursor.rowcount:
                    continue
                new += 1
                if r.admitted and r.credential_id is not None:
                    entry = r.direction == "entry"
                    changes.append(Passage(device, r.seq, r.credential_id, r.at_ms, r.lane, entry))
                    if entry:
                        _check_double(conn, device, r)
            self._log.append(conn, changes)
        return new, len(records) - new

    def double_entries(self) -> list[DoubleEntry]:
        """Admissions beyond a credential's allowed entries, oldest first."""
        rows = self._connection.rows(
            "SELECT credential_id, device, seq, at_ms, lane, entries, allowed FROM double_entries"
            " ORDER BY at_ms"
        )
        return [DoubleEntry(*r) for r in rows]

    def count(self, device: str | None = None) -> int:
        """Journal rows held (of one device, or all)."""
        if device is None:
            return int(self._connection.row("SELECT count(*) FROM journal")[0])
        return int(self._connection.row("SELECT count(*) FROM journal WHERE device = ?", device)[0])

    def admitted_entries(self) -> dict[int, int]:
        """Admitted entries per credential, at every gate."""
        rows = self._connection.rows(
            "SELECT credential_id, count(*) FROM journal WHERE admitted = 1"
            " AND direction = 'entry' AND credential_id IS NOT NULL GROUP BY credential_id"
        )
        return {int(c): int(n) for c, n in rows}

    def seqs(self, device: str) -> list[int]:
        """Sequence numbers held for a device (tests: exactly once, none missing)."""
        return [
            int(r[0])
            for r in self._connection.rows(
                "SELECT seq FROM journal WHERE device = ? ORDER BY seq", device
            )
        ]


def _check_double(conn: SQL, device: str, r: JournalRecord) -> None:
    """Record an admitted entry beyond what its credential's policy allows."""
    row = conn.execute(
        "SELECT p.policy, p.uses FROM credentials c JOIN products p USING (product_id)"
        " WHERE c.credential_id = ?",
        (r.credential_id,),
    ).fetchone()
    if row is None or row[0] == int(PolicyKind.UNLIMITED):
        return
    (count,) = conn.execute(
        "SELECT count(*) FROM journal WHERE credential_id = ? AND admitted = 1"
        " AND direction = 'entry'",
        (r.credential_id,),
    ).fetchone()
    if count > row[1]:
        conn.execute(
            "INSERT INTO double_entries VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (r.credential_id, device, r.seq, r.at_ms, r.lane, count, row[1]),
        )
