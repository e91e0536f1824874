"""The pretix connector's part of the store: positions as pretix's check-in sees them.

Scan path: one point query for the position by its secret's hash, one for its passages
(pulled from pretix, and admitted here since). Sync path: a pull compares what it read
with what is stored (off the loop) and writes only the positions that changed, in chunks,
then removes those the pull no longer saw: a re-sync of an unchanged event writes nothing.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge.core.facts import Direction
from edge.store.base import StoreBase, from_ms, to_ms

BLOCKED = 1  # flags: pretix blocked the position (a block can be lifted)
VALID_IF_PENDING = 2  # the order admits while pending
REQUIRE_APPROVAL = 4  # the order waits for the organizer's approval
WRITE_CHUNK = 500  # positions per write transaction: the write lock is held briefly

_COLUMNS = (
    "position_id, code_hash, item, variation, subevent, valid_from, valid_until,"
    " order_status, flags, addon_to"
)

_PUT_SQL = f"""
INSERT INTO pretix_positions ({_COLUMNS}, generation) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (position_id) DO UPDATE SET
    code_hash = excluded.code_hash, item = excluded.item, variation = excluded.variation,
    subevent = excluded.subevent, valid_from = excluded.valid_from,
    valid_until = excluded.valid_until, order_status = excluded.order_status,
    flags = excluded.flags, addon_to = excluded.addon_to, generation = excluded.generation
"""

# A passage the gate admitted counts until pretix's answer to its upload refused it.
_PASSAGES_SQL = """
SELECT at, direction, NULL FROM pretix_passages WHERE position_id = :pid
UNION ALL
SELECT j.at, j.direction, j.lane FROM journal j
WHERE j.credential_id IN (:pid, :alias) AND j.admitted = 1
  AND NOT EXISTS (SELECT 1 FROM journal_replies r WHERE r.seq = j.seq AND r.status != 'ok')
"""


@dataclass(frozen=True, slots=True)
class PretixPosition:
    """One order position as pretix's check-in decides with it."""

    position_id: int
    code_hash: bytes  # of its current secret
    item: int
    variation: int | None
    subevent: int | None
    valid_from: datetime | None
    valid_until: datetime | None
    order_status: str  # "n" pending, "p" paid, "e" expired, "c" cancelled
    flags: int = 0  # BLOCKED | VALID_IF_PENDING | REQUIRE_APPROVAL
    addon_to: int | None = None  # the position this one is an add-on of

    @property
    def blocked(self) -> bool:
        """pretix blocked it."""
        return bool(self.flags & BLOCKED)

    @property
    def valid_if_pending(self) -> bool:
        """Its order admits while pending."""
        return bool(self.flags & VALID_IF_PENDING)

    @property
    def require_approval(self) -> bool:
        """Its order waits for approval."""
        return bool(self.flags & REQUIRE_APPROVAL)


def _row(p: PretixPosition, generation: int) -> tuple[object, ...]:
    return (
        p.position_id,
        p.code_hash,
        p.item,
        p.variation,
        p.subevent,
        to_ms(p.valid_from) if p.valid_from else None,
        to_ms(p.valid_until) if p.valid_until else None,
        p.order_status,
        p.flags,
        p.addon_to,
        generation,
    )


def _position(row: Any) -> PretixPosition:
    pid, code_hash, item, variation, subevent, valid_from, valid_until, status, flags, addon = row
    return PretixPosition(
        position_id=int(pid),
        code_hash=bytes(code_hash),
        item=int(item),
        variation=variation,
        subevent=subevent,
        valid_from=from_ms(valid_from) if valid_from is not None else None,
        valid_until=from_ms(valid_until) if valid_until is not None else None,
        order_status=str(status),
        flags=int(flags),
        addon_to=addon,
    )


class PretixStore(StoreBase):
    """pretix positions and passages: point reads for the scan path, chunked pull writes."""

    def pretix_position(self, code_hash: bytes) -> PretixPosition | None:
        """The position whose current secret has this hash, if a pull saw it."""
        row = self._reader.execute(
            f"SELECT {_COLUMNS} FROM pretix_positions WHERE code_hash = ?", (code_hash,)
        ).fetchone()
        return None if row is None else _position(row)

    def pretix_addons(self, position_id: int) -> list[PretixPosition]:
        """The add-on positions of a position."""
        rows = self._reader.execute(
            f"SELECT {_COLUMNS} FROM pretix_positions WHERE addon_to = ? ORDER BY position_id",
            (position_id,),
        ).fetchall()
        return [_position(r) for r in rows]

    def pretix_passages(
        self, position_id: int, alias: int | None = None
    ) -> dict[tuple[datetime, Direction], str | None]:
        """Passages of a position on the list, with the lane for those admitted here: pulled,
        and journaled under its id or `alias` (a signed ticket's id before a pull mapped it).
        An uploaded passage comes back from pretix at the same millisecond: counted once."""
        rows = self._reader.execute(
            _PASSAGES_SQL, {"pid": position_id, "alias": position_id if alias is None else alias}
        ).fetchall()
        out: dict[tuple[datetime, Direction], str | None] = {}
        for at, direction, lane in rows:
            key = (from_ms(at), Direction(direction))
            out[key] = out.get(key) or lane
        return out

    def pretix_generation(self) -> int:
        """The newest generation a pull wrote (0 before the first)."""
        row = self._reader.execute("SELECT max(generation) FROM pretix_positions").fetchone()
        return int(row[0] or 0)

    async def put_pretix_positions(
        self,
        positions: Iterable[tuple[PretixPosition, Sequence[tuple[datetime, Direction]]]],
        generation: int,
    ) -> None:
        """Add or replace positions with their pulled passages, in short transactions."""
        chunk: list[tuple[PretixPosition, Sequence[tuple[datetime, Direction]]]] = []
        for item in positions:
            chunk.append(item)
            if len(chunk) >= WRITE_CHUNK:
                await self._put_chunk(chunk, generation)
                chunk = []
        if chunk:
            await self._put_chunk(chunk, generation)

    async def _put_chunk(
        self,
        chunk: list[tuple[PretixPosition, Sequence[tuple[datetime, Direction]]]],
        generation: int,
    ) -> None:
        ids = [(p.position_id,) for p, _ in chunk]
        # A re-issued secret moves to its position: the old row must let go of the hash.
        hashes = [(p.code_hash, p.position_id) for p, _ in chunk]
        passages = [
            (p.position_id, to_ms(at), direction.value)
            for p, seen in chunk
            for at, direction in seen
        ]
        await self._transaction(
            [
                ("DELETE FROM pretix_positions WHERE code_hash = ? AND position_id != ?", hashes),
                (_PUT_SQL, [_row(p, generation) for p, _ in chunk]),
                ("DELETE FROM pretix_passages WHERE position_id = ?", ids),
                ("INSERT OR IGNORE INTO pretix_passages VALUES (?, ?, ?)", passages),
            ]
        )

    async def mirror_pretix_positions(
        self, positions: Sequence[tuple[PretixPosition, Sequence[tuple[datetime, Direction]]]]
    ) -> tuple[int, int]:
        """Make the stored positions and pulled passages exactly these, writing only what
        differs, in short transactions; (positions written, positions removed)."""
        changed, gone = await asyncio.to_thread(self._pretix_changes, positions)
        await self.put_pretix_positions(changed, self.pretix_generation() + 1)
        for start in range(0, len(gone), WRITE_CHUNK):
            ids = [(pid,) for pid in gone[start : start + WRITE_CHUNK]]
            await self._transaction(
                [
                    ("DELETE FROM pretix_passages WHERE position_id = ?", ids),
                    ("DELETE FROM pretix_positions WHERE position_id = ?", ids),
                ]
            )
        return len(changed), len(gone)

    def _pretix_changes(
        self, positions: Sequence[tuple[PretixPosition, Sequence[tuple[datetime, Direction]]]]
    ) -> tuple[list[tuple[PretixPosition, Sequence[tuple[datetime, Direction]]]], list[int]]:
        """(positions new or different from the stored ones, stored ids not among them)."""
        stored = {
            int(row[0]): tuple(row)
            for row in self._read_here(f"SELECT {_COLUMNS} FROM pretix_positions")
        }
        passages: dict[int, set[tuple[int, str]]] = {}
        for pid, at, direction in self._read_here(
            "SELECT position_id, at, direction FROM pretix_passages"
        ):
            passages.setdefault(int(pid), set()).add((int(at), str(direction)))
        changed = [
            (p, seen)
            for p, seen in positions
            if stored.get(p.position_id) != _row(p, 0)[:-1]
            or passages.get(p.position_id, set()) != {(to_ms(at), d.value) for at, d in seen}
        ]
        listed = {p.position_id for p, _ in positions}
        return changed, [pid for pid in stored if pid not in listed]

    async def drop_pretix_positions(self, older_than: int) -> int:
        """Remove positions (and passages) no pull of generation `older_than` or later saw."""

        def write(conn: sqlite3.Connection) -> int:
            conn.execute(
                "DELETE FROM pretix_passages WHERE position_id IN"
                " (SELECT position_id FROM pretix_positions WHERE generation < ?)",
                (older_than,),
            )
            cursor = conn.execute(
                "DELETE FROM pretix_positions WHERE generation < ?", (older_than,)
            )
            return int(cursor.rowcount)

        return await self._bulk(write)
