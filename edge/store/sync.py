"""Sync's part of the store: synced facts (keys, credentials, revocations, passages), sync
cursors, and the journal's way to the central system (unsent rows, marks, replies)."""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge.core.errors import StoreError
from edge.core.facts import Credential, Direction, EntryState, Revocation
from edge.store.base import REVOCATION_CODES, StoreBase, from_ms, now_ms, to_ms
from edge.store.gate import JOURNAL_COLUMNS, JournalRow, journal_rows

# The central system's sync cursors; schema version 7 keeps the revision from going down.
REVISION_CURSOR = "sync.revision"  # the revision the store holds (absent: never bootstrapped)
BOOTSTRAP_CURSOR = "sync.bootstrap"  # where an interrupted bootstrap resumes
# Set (non-empty) while a bootstrap replaces the facts held (schema version 10): after a
# revision-ahead refusal (the device moved to another venue, the central lost revisions).
REPLACE_CURSOR = "sync.replace"
# The venue whose share the store holds, from its last bootstrap ("": every venue's; absent:
# bootstrapped before venues were recorded). Offline bundles must be of the same.
VENUE_CURSOR = "sync.venue"

_KEY_SQL = (
    "INSERT INTO keys (key_id, public_key, retired) VALUES (?, ?, ?)"
    " ON CONFLICT (key_id) DO UPDATE SET retired = max(retired, excluded.retired)"
)
_CREDENTIAL_COLUMNS = (
    "credential_id, kind, event_id, product_id, policy, uses, passback_minutes,"
    " valid_from, valid_until, zones, paid"
)
_CREDENTIAL_SQL = (
    f"INSERT OR REPLACE INTO credentials ({_CREDENTIAL_COLUMNS})"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# Every write names its columns and replaces: a fact written again loses the stale mark.
_PLAIN_CODE_SQL = "INSERT OR REPLACE INTO plain_codes (code_hash, credential_id) VALUES (?, ?)"
_REVOKED_CODE_SQL = "INSERT OR REPLACE INTO revoked_codes (code_hash, reason) VALUES (?, ?)"
_REVOKED_CREDENTIAL_SQL = (
    "INSERT OR REPLACE INTO revoked_credentials (credential_id, reason) VALUES (?, ?)"
)
_REVOKED_PRODUCT_SQL = "INSERT OR REPLACE INTO revoked_products (product_id, reason) VALUES (?, ?)"
_CANCELLED_EVENT_SQL = "INSERT OR REPLACE INTO cancelled_events (event_id) VALUES (?)"
# The synced facts a replacing bootstrap marks and sweeps, by key column: what admits first
# (a credential, a plain code), then what refuses, so no part of the sweep leaves a fact that
# admits without the revocation that held it back.
_REPLACED = (
    ("credentials", "credential_id"),
    ("plain_codes", "code_hash"),
    ("revoked_codes", "code_hash"),
    ("revoked_credentials", "credential_id"),
    ("revoked_products", "product_id"),
    ("cancelled_events", "event_id"),
)
_CURSOR_SQL = "INSERT OR REPLACE INTO sync_cursors VALUES (?, ?)"
# Rows marked uploaded per transaction: about 0.3 ms of SQLite work in one statement (a
# thousand rows through executemany took 2-10 ms with the journal file's write lock held,
# which the lanes' records wait for).
MARK_PART = 250
_UPLOADED_SQL = "UPDATE journal SET uploaded = 1 WHERE seq IN (SELECT value FROM json_each(?))"
_BACKLOG_SQL = "SELECT count(*) FROM journal WHERE uploaded = 0"
_BACKLOG_UPTO_SQL = "SELECT count(*) FROM (SELECT 1 FROM journal WHERE uploaded = 0 LIMIT ?)"
BACKLOG_EXACT_LIMIT = 2_000  # unsent rows counted on the loop at most (4 ms per 100,000)
BACKLOG_FRESH_SECONDS = 1.0  # age of a worker thread's count of a larger backlog

# Passages another system saw, merged so that nothing counts twice: the count never drops
# (the central system's count includes this gate's uploaded passages), the first entry is
# the earliest, the last passage the latest. SET expressions see the row before the update.
_MERGE_ENTRY_SQL = """
INSERT INTO entries (credential_id, count, first_at, first_gate, last_at, last_direction, last_gate)
{source}
ON CONFLICT (credential_id) DO UPDATE SET
    count = max(count, excluded.count),
    first_at = CASE WHEN excluded.first_at < coalesce(first_at, excluded.first_at + 1)
               THEN excluded.first_at ELSE first_at END,
    first_gate = CASE WHEN excluded.first_at < coalesce(first_at, excluded.first_at + 1)
                 THEN excluded.first_gate ELSE first_gate END,
    last_at = max(last_at, excluded.last_at),
    last_direction = CASE WHEN excluded.last_at > last_at
                     THEN excluded.last_direction ELSE last_direction END,
    last_gate = CASE WHEN excluded.last_at > last_at THEN excluded.last_gate ELSE last_gate END
"""

# A passage from another gate: counted once per (device, seq), and it only moves "first" to an
# earlier entry and "last" to a later passage, so arrival order does not matter.
_REMOTE_ENTRY_SQL = """
INSERT INTO entries (credential_id, count, first_at, first_gate, last_at, last_direction, last_gate)
SELECT credential_id, entry, CASE WHEN entry THEN at END, CASE WHEN entry THEN gate END,
       at, direction, gate
FROM temp.incoming_passages i
WHERE NOT EXISTS (SELECT 1 FROM remote_passages r WHERE r.device = i.device AND r.seq = i.seq)
ORDER BY at
ON CONFLICT (credential_id) DO UPDATE SET
    count = count + excluded.count,
    first_gate = CASE WHEN excluded.first_at IS NOT NULL
        AND (first_at IS NULL OR excluded.first_at < first_at)
        THEN excluded.first_gate ELSE first_gate END,
    first_at = CASE WHEN excluded.first_at IS NOT NULL
        AND (first_at IS NULL OR excluded.first_at < first_at)
        THEN excluded.first_at ELSE first_at END,
    last_direction = CASE WHEN excluded.last_at > last_at
        THEN excluded.last_direction ELSE last_direction END,
    last_gate = CASE WHEN excluded.last_at > last_at THEN excluded.last_gate ELSE last_gate END,
    last_at = max(last_at, excluded.last_at)
"""


@dataclass(frozen=True, slots=True)
class RemotePassage:
    """A passage admitted at another device, as the central system relays it."""

    device: str
    seq: int  # the journal sequence number on that device: (device, seq) is unique
    credential_id: int
    at: datetime
    gate: str
    direction: Direction


@dataclass(frozen=True, slots=True)
class SyncBatch:
    """Synced facts that are applied together, in one transaction (sync, offline bundles)."""

    keys: Sequence[tuple[int, bytes, bool]] = ()
    credentials: Sequence[Credential] = ()
    plain_codes: Sequence[tuple[bytes, int]] = ()
    revoked_codes: Sequence[tuple[bytes, Revocation]] = ()
    revoked_credentials: Sequence[tuple[int, Revocation]] = ()
    revoked_products: Sequence[tuple[int, Revocation]] = ()
    cancelled_events: Sequence[int] = ()
    passages: Sequence[RemotePassage] = ()


@dataclass(frozen=True, slots=True)
class Refusal:
    """An uploaded journal row the central system refused or the uploader could not send."""

    seq: int
    at: datetime  # when the scan was decided
    lane: str
    direction: Direction
    code_hint: str
    status: str  # the stored answer status, e.g. "error" (pretix's refusal) or "unmapped"
    detail: str  # the reason, e.g. pretix's "product"


@dataclass(frozen=True, slots=True)
class Mirror:
    """A full listing from a central system as changes to the store (SyncStore.mirror).

    Order inside the final transaction: clear, then revoke (a revocation seen in the same pull
    wins), so a scan never sees a half-applied listing's refusals.
    """

    credentials: Sequence[Credential] = ()  # added or replaced
    removed: Sequence[int] = ()  # credential ids that left the listing: facts and revocation go
    plain_codes: Sequence[tuple[bytes, int]] = ()  # added or re-pointed
    dropped_codes: Sequence[bytes] = ()  # plain code hashes that no longer name a credential
    cleared_codes: Sequence[bytes] = ()  # hashes whose code revocation no longer holds
    revoked_codes: Sequence[tuple[bytes, Revocation]] = ()
    revoked_credentials: Sequence[tuple[int, Revocation]] = ()
    restored_credentials: Sequence[int] = ()  # credential revocations that no longer hold
    blocks: Sequence[tuple[bytes, bool]] = ()  # (hash, blocked) in order: the last one wins


def _credential_row(credential: Credential) -> tuple[Any, ...]:
    validity = credential.validity
    return (
        credential.credential_id,
        int(credential.kind),
        credential.event_id,
        credential.product_id,
        int(credential.policy.kind),
        credential.policy.uses,
        credential.policy.passback_minutes,
        int(validity.start.timestamp()) if validity else None,
        int(validity.end.timestamp()) if validity else None,
        credential.zones,
        int(credential.paid),
    )


def _key_rows(keys: Iterable[tuple[int, bytes, bool]]) -> list[tuple[int, bytes, int]]:
    """Key rows, checked before any transaction starts."""
    rows = [(kid, bytes(public), int(retired)) for kid, public, retired in keys]
    for kid, public, _ in rows:
        if len(public) != 32 or not 0 <= kid <= 0xFFFF:
            raise StoreError(f"key {kid}: an Ed25519 public key has 32 bytes, ids 0..65535")
    return rows


def _put_keys(conn: sqlite3.Connection, rows: Sequence[tuple[int, bytes, int]]) -> None:
    """Write checked key rows inside the caller's transaction (put_keys and apply)."""
    for kid, public, _ in rows:
        known = conn.execute("SELECT public_key FROM keys WHERE key_id = ?", (kid,)).fetchone()
        if known is not None and bytes(known[0]) != public:
            raise StoreError(
                f"key {kid} is already trusted with another public key; "
                "key ids are never reused, give the new key a new id"
            )
    conn.executemany(_KEY_SQL, rows)


# Rows per bulk transaction when applying a batch: about a millisecond of SQLite work (500
# sorted revocations into 800,000: 1.4 ms at the median on one core, 2,000 took 4.7), so a
# journal write, which goes first whenever one waits, and another process's (`edge import`
# beside the daemon: it polls for the lock) never waits longer than one part.
APPLY_PART = 500
# Passages per transaction of the journal file, where every lane's record waits for the part
# being written: each passage updates its credential's entry (the merge below) and is kept
# for de-duplication, about 9 us a passage on one core, so 500 held a record 4-5 ms.
PASSAGE_PART = 100

_Piece = tuple[int, Callable[[sqlite3.Connection], None]]  # rows, and how to write them


def _pieces(
    sql: str, rows: Sequence[Any], convert: Callable[[Sequence[Any]], Sequence[Any]] | None = None
) -> list[_Piece]:
    """Slices of at most APPLY_PART rows, converted to SQL rows in the writer thread."""

    def piece(part: Sequence[Any]) -> Callable[[sqlite3.Connection], None]:
        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(sql, convert(part) if convert is not None else part)

        return write

    return [
        (len(rows[i : i + APPLY_PART]), piece(rows[i : i + APPLY_PART]))
        for i in range(0, len(rows), APPLY_PART)
    ]


def _revoked_code_rows(part: Sequence[tuple[bytes, Revocation]]) -> list[tuple[bytes, int]]:
    # Sorted by hash (stably: a later reason for the same hash still wins): rows in key order
    # go into the B-tree several times faster.
    return sorted(((bytes(h), REVOCATION_CODES[r]) for h, r in part), key=lambda row: row[0])


def _hash_key(row: tuple[bytes, Revocation]) -> bytes:
    return bytes(row[0])


def _reason_rows(part: Sequence[tuple[int, Revocation]]) -> list[tuple[int, int]]:
    return [(i, REVOCATION_CODES[r]) for i, r in part]


def _event_rows(part: Sequence[int]) -> list[tuple[int]]:
    return [(eid,) for eid in part]


def _credential_rows(part: Sequence[Credential]) -> list[tuple[Any, ...]]:
    return [_credential_row(c) for c in part]


def _apply_passages(conn: sqlite3.Connection, passages: Sequence[RemotePassage]) -> None:
    """Count other devices' passages once each, inside the caller's transaction."""
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS incoming_passages (device TEXT, seq INTEGER,"
        " credential_id INTEGER, at INTEGER, gate TEXT, direction TEXT, entry INTEGER,"
        " PRIMARY KEY (device, seq))"
    )
    conn.executemany(
        "INSERT OR IGNORE INTO temp.incoming_passages VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (
                p.device,
                p.seq,
                p.credential_id,
                to_ms(p.at),
                p.gate,
                p.direction.value,
                int(p.direction is Direction.ENTRY),
            )
            for p in passages
        ],
    )
    conn.execute(_REMOTE_ENTRY_SQL)
    conn.execute(
        "INSERT OR IGNORE INTO remote_passages SELECT device, seq FROM temp.incoming_passages"
    )
    conn.execute("DELETE FROM temp.incoming_passages")


def _mark(
    conn: sqlite3.Connection, *, seqs: str, replies: Sequence[tuple[int, int, str, str]] = ()
) -> None:
    """Mark the journal rows of `seqs` (a JSON list) uploaded, storing `replies` first."""
    if replies:
        conn.executemany("INSERT OR REPLACE INTO journal_replies VALUES (?, ?, ?, ?)", replies)
    conn.execute(_UPLOADED_SQL, (seqs,))


def _passage_piece(
    passages: Sequence[RemotePassage], start: int
) -> Callable[[sqlite3.Connection], None]:
    part = passages[start : start + PASSAGE_PART]
    return lambda conn: _apply_passages(conn, part)


def _steps(
    steps: Sequence[Callable[[sqlite3.Connection], None]],
) -> Callable[[sqlite3.Connection], None]:
    def write(conn: sqlite3.Connection) -> None:
        for step in steps:
            step(conn)

    return write


def _jobs(pieces: Sequence[_Piece]) -> list[list[Callable[[sqlite3.Connection], None]]]:
    """Pieces packed in order into transactions of at most APPLY_PART rows each."""
    jobs: list[list[Callable[[sqlite3.Connection], None]]] = [[]]
    size = 0
    for rows, write in pieces:
        if size and size + rows > APPLY_PART:
            jobs.append([])
            size = 0
        jobs[-1].append(write)
        size += rows
    return jobs


def _mark_part(conn: sqlite3.Connection, table: str, key: str, after: Any) -> tuple[bool, Any, int]:
    """Mark the next APPLY_PART rows of a table by key after `after` (None: from the start):
    (done, the last key marked, rows marked)."""
    where, args = (f"WHERE {key} > ?", (after,)) if after is not None else ("", ())
    bound = conn.execute(
        f"SELECT {key} FROM {table} {where} ORDER BY {key} LIMIT 1 OFFSET {APPLY_PART - 1}", args
    ).fetchone()
    if bound is None:
        count = conn.execute(f"UPDATE {table} SET stale = 1 {where}", args).rowcount
        return True, after, int(count)
    upper = f"{where} AND {key} <= ?" if where else f"WHERE {key} <= ?"
    count = conn.execute(f"UPDATE {table} SET stale = 1 {upper}", (*args, bound[0])).rowcount
    return False, bound[0], int(count)


def _delete_part(conn: sqlite3.Connection, sql: str) -> int:
    return int(conn.execute(sql).rowcount)


class SyncStore(StoreBase):
    """What sync may do: apply synced facts, keep cursors, upload the journal."""

    _seen_backlog: tuple[float, int] | None = None  # (monotonic time counted, count)
    _backlog_counting = False
    _backlog_epoch = 0  # moves on when the backlog drains below the limit: older counts are void

    # -- synced facts: one transaction each ----------------------------------------------------

    async def put_keys(self, keys: Iterable[tuple[int, bytes, bool]]) -> None:
        """Trust keys: (key id, 32-byte Ed25519 public key, retired).

        Retiring is final: a key once retired stays retired, whoever lists it again (the
        configuration's start set on every restart, an old bundle). A key id never changes
        its public key.
        """
        rows = _key_rows(keys)
        await self._bulk(lambda conn: _put_keys(conn, rows))

    async def put_credentials(
        self, credentials: Iterable[Credential], plain_codes: Iterable[tuple[bytes, int]] = ()
    ) -> None:
        """Add or replace synced credential facts, and map plain code hashes to credentials."""
        await self._transaction(
            [
                (_CREDENTIAL_SQL, map(_credential_row, credentials)),
                (_PLAIN_CODE_SQL, plain_codes),
            ]
        )

    async def revoke_codes(self, revocations: Iterable[tuple[bytes, Revocation]]) -> None:
        """Revoke single codes by hash (a replaced card's old code, a cancelled ticket)."""
        # Sorted keys append to the B-tree in order: bulk loads run several times faster.
        rows = sorted((bytes(h), REVOCATION_CODES[r]) for h, r in revocations)
        await self._transaction([(_REVOKED_CODE_SQL, rows)])

    async def revoke_credentials(self, revocations: Iterable[tuple[int, Revocation]]) -> None:
        """Revoke every code of the given credentials."""
        rows = [(cid, REVOCATION_CODES[r]) for cid, r in revocations]
        await self._transaction([(_REVOKED_CREDENTIAL_SQL, rows)])

    async def revoke_products(self, revocations: Iterable[tuple[int, Revocation]]) -> None:
        """Revoke every credential of the given products."""
        rows = [(pid, REVOCATION_CODES[r]) for pid, r in revocations]
        await self._transaction([(_REVOKED_PRODUCT_SQL, rows)])

    async def cancel_events(self, event_ids: Iterable[int]) -> None:
        """Cancel events: every ticket for them is rejected."""
        rows = [(eid,) for eid in event_ids]
        await self._transaction([(_CANCELLED_EVENT_SQL, rows)])

    async def block_codes(self, changes: Iterable[tuple[bytes, bool]]) -> None:
        """Block (True) or unblock (False) single codes by hash; a block can be lifted."""
        rows = [(bytes(h), blocked) for h, blocked in changes]
        await self._transaction(
            [
                (
                    "INSERT OR IGNORE INTO blocked_codes VALUES (?)",
                    [(h,) for h, blocked in rows if blocked],
                ),
                ("DELETE FROM blocked_codes WHERE code_hash = ?", [(h,) for h, b in rows if not b]),
            ]
        )

    async def merge_entries(self, states: Iterable[tuple[int, EntryState]]) -> None:
        """Merge passages the central system knows (other devices' check-ins) per credential."""
        rows = [
            (
                cid,
                state.count,
                to_ms(state.first_at) if state.first_at else None,
                state.first_gate,
                to_ms(state.last_at),
                state.last_direction.value,
                state.last_gate,
            )
            for cid, state in states
        ]
        source = "VALUES (?, ?, ?, ?, ?, ?, ?)"
        await self._transaction([(_MERGE_ENTRY_SQL.format(source=source), rows)], journal=True)

    async def move_entries(self, moves: Iterable[tuple[int, int]]) -> None:
        """Move passages from one credential id to another (old id, new id), merging."""
        pairs = [(new, old) for old, new in moves]
        source = (
            "SELECT ?, count, first_at, first_gate, last_at, last_direction, last_gate"
            " FROM entries WHERE credential_id = ?"
        )
        await self._transaction(
            [
                (_MERGE_ENTRY_SQL.format(source=source), pairs),
                ("DELETE FROM entries WHERE credential_id = ?", [(old,) for _, old in pairs]),
            ],
            journal=True,
        )

    async def apply(self, batch: SyncBatch, cursors: Mapping[str, str]) -> None:
        """Apply synced facts, then move sync cursors: all or nothing for the cursors' readers.

        The facts go in parts of at most APPLY_PART rows, each its own short transaction, so
        a lane's journal write never waits long; the cursors move in the last one, after
        every part committed. A reader that sees the new cursor sees every fact of the batch;
        one that reads between parts may see some new facts under the old cursor (a
        revocation that takes effect early is only stricter), and a failure or crash part way
        leaves the old cursor, so the batch is applied again: every part is idempotent, and
        within a part later items win, so a batch may hold several versions of a credential.
        """
        keys = _key_rows(batch.keys)
        pieces: list[_Piece] = [(len(keys), lambda conn: _put_keys(conn, keys))]
        pieces += _pieces(_CREDENTIAL_SQL, batch.credentials, _credential_rows)
        pieces += _pieces(_PLAIN_CODE_SQL, batch.plain_codes)
        # In key order across the whole batch, not only within a part: the table is a B-tree by
        # hash and hashes are random, so a part of unsorted hashes rewrites a page for nearly
        # every row (2,000 pages of WAL), a part of sorted ones a few dozen. The sort is stable:
        # of several versions of one code, the later still wins.
        revoked = sorted(batch.revoked_codes, key=_hash_key)
        pieces += _pieces(_REVOKED_CODE_SQL, revoked, _revoked_code_rows)
        pieces += _pieces(_REVOKED_CREDENTIAL_SQL, batch.revoked_credentials, _reason_rows)
        pieces += _pieces(_REVOKED_PRODUCT_SQL, batch.revoked_products, _reason_rows)
        pieces += _pieces(_CANCELLED_EVENT_SQL, batch.cancelled_events, _event_rows)
        moves = list(cursors.items())

        def move(conn: sqlite3.Connection) -> None:
            conn.executemany(_CURSOR_SQL, moves)

        pieces.append((len(moves), move))
        # Passages live in the journal file: they go first, so the cursors (main file) never
        # move past passages a crash lost; applied again, a passage counts once.
        passages = batch.passages
        for i in range(0, len(passages), PASSAGE_PART):
            await self._journal_bulk(_passage_piece(passages, i))
        for job in _jobs(pieces):
            await self._bulk(_steps(job))

    async def mirror(self, mirror: Mirror, cursors: Mapping[str, str]) -> None:
        """Apply a full listing's changes and move sync cursors.

        Only what differs from the store is written (read first, off the loop), so a re-sync
        of an unchanged list holds the write lock, which the lanes' journal needs, briefly.
        Only sync writes these tables, so nothing changes them between the read and the write.
        New and changed credentials and code mappings go first, in parts of APPLY_PART rows
        (a first pull of 50,000 in one transaction held the lock for ~0.5 s), except those
        the listing also revokes or blocks: they go with everything else in one last
        transaction, so nothing admits early that the listing refuses.
        """
        credentials, restored, revocations = await asyncio.to_thread(self._mirror_diff, mirror)
        held_ids = {cid for cid, _ in mirror.revoked_credentials}
        held_codes = {bytes(h) for h, _ in mirror.revoked_codes}
        held_codes.update(bytes(h) for h, blocked in mirror.blocks if blocked)
        early = [row for row in credentials if row[0] not in held_ids]
        credentials = [row for row in credentials if row[0] in held_ids]
        early_codes = [
            (bytes(h), cid)
            for h, cid in mirror.plain_codes
            if bytes(h) not in held_codes and cid not in held_ids
        ]
        early_hashes = {h for h, _ in early_codes}
        codes = [(bytes(h), cid) for h, cid in mirror.plain_codes if bytes(h) not in early_hashes]
        for start in range(0, max(len(early), len(early_codes)), APPLY_PART):
            await self._transaction(
                [
                    (_CREDENTIAL_SQL, early[start : start + APPLY_PART]),
                    (_PLAIN_CODE_SQL, early_codes[start : start + APPLY_PART]),
                ]
            )
        revoked = sorted(
            ((bytes(h), REVOCATION_CODES[r]) for h, r in mirror.revoked_codes),
            key=lambda row: row[0],
        )
        blocks: dict[bytes, bool] = {}
        for code_hash, blocked in mirror.blocks:
            blocks[bytes(code_hash)] = blocked
        removed = [(cid,) for cid in mirror.removed]
        statements: list[tuple[str, Sequence[Any]]] = [
            ("DELETE FROM credentials WHERE credential_id = ?", removed),
            ("DELETE FROM revoked_credentials WHERE credential_id = ?", [*removed, *restored]),
            (
                # A dropped mapping re-pointed early is the new one now: it stays.
                "DELETE FROM plain_codes WHERE code_hash = ?",
                [(bytes(h),) for h in mirror.dropped_codes if bytes(h) not in early_hashes],
            ),
            (_CREDENTIAL_SQL, credentials),
            (_PLAIN_CODE_SQL, codes),
            (
                "DELETE FROM revoked_codes WHERE code_hash = ?",
                [(bytes(h),) for h in mirror.cleared_codes],
            ),
            (_REVOKED_CODE_SQL, revoked),
            (_REVOKED_CREDENTIAL_SQL, revocations),
            (
                "INSERT OR IGNORE INTO blocked_codes VALUES (?)",
                [(h,) for h, blocked in blocks.items() if blocked],
            ),
            (
                "DELETE FROM blocked_codes WHERE code_hash = ?",
                [(h,) for h, blocked in blocks.items() if not blocked],
            ),
            (_CURSOR_SQL, list(cursors.items())),
        ]

        def write(conn: sqlite3.Connection) -> None:
            for sql, rows in statements:
                conn.executemany(sql, rows)

        await self._bulk(write)  # one transaction: the listing's refusals all or nothing

    def _mirror_diff(
        self, mirror: Mirror
    ) -> tuple[list[tuple[Any, ...]], list[tuple[int]], list[tuple[int, int]]]:
        """The credential rows, un-revocations and revocations that differ (in a thread)."""
        stored = {
            int(row[0]): tuple(row)
            for row in self._read_here(f"SELECT {_CREDENTIAL_COLUMNS} FROM credentials")
        }
        credentials = [
            row for row in map(_credential_row, mirror.credentials) if stored.get(row[0]) != row
        ]
        revoked_now = dict(self._read_here("SELECT credential_id, reason FROM revoked_credentials"))
        restored = [(cid,) for cid in mirror.restored_credentials if cid in revoked_now]
        revocations = [
            (cid, REVOCATION_CODES[r])
            for cid, r in mirror.revoked_credentials
            if revoked_now.get(cid) != REVOCATION_CODES[r]
        ]
        return credentials, restored, revocations

    async def credential_index(self) -> dict[int, tuple[int, int]]:
        """(event id, product id) of every synced credential by id (a full scan, off the loop)."""

        def read() -> dict[int, tuple[int, int]]:
            rows = self._read_here("SELECT credential_id, event_id, product_id FROM credentials")
            return {int(cid): (int(event), int(product)) for cid, event, product in rows}

        return await asyncio.to_thread(read)

    async def plain_code_index(self) -> dict[bytes, int]:
        """Every plain code hash with its credential id (a full scan, off the loop)."""

        def read() -> dict[bytes, int]:
            rows = self._read_here("SELECT code_hash, credential_id FROM plain_codes")
            return {bytes(h): int(cid) for h, cid in rows}

        return await asyncio.to_thread(read)

    def blocked_index(self) -> set[bytes]:
        """Every blocked code hash (a short table: blocks are set by hand)."""
        return {bytes(h) for (h,) in self._reader.execute("SELECT code_hash FROM blocked_codes")}

    # -- cursors -------------------------------------------------------------------------------

    async def set_cursor(self, name: str, value: str) -> None:
        """Remember a sync position."""
        await self._transaction([(_CURSOR_SQL, [(name, value)])])

    async def forget_revision(self) -> None:
        """Drop the revision and bootstrap cursors, the only way the revision may go down,
        and have the next bootstrap replace the facts held (REPLACE_CURSOR).

        For a device moved to another venue, or a central system restored from an older
        backup (its head is below ours): the store then bootstraps again and ends up holding
        what the central system sends it now, nothing of before. Every other write of the
        revision that would lower it fails (a trigger, schema version 7).
        """
        await self._transaction(
            [
                (
                    "DELETE FROM sync_cursors WHERE name = ?",
                    [(REVISION_CURSOR,), (BOOTSTRAP_CURSOR,)],
                ),
                (_CURSOR_SQL, [(REPLACE_CURSOR, "1")]),
            ]
        )

    async def mark_replaced(self) -> int:
        """Mark every synced fact held as stale, before a replacing bootstrap writes any;
        returns how many. Decisions do not read the mark: the facts count until swept."""
        marked = 0
        for table, key in _REPLACED:
            after: Any = None
            while True:
                done, after, count = await self._bulk(
                    functools.partial(_mark_part, table=table, key=key, after=after)
                )
                marked += count
                if done:
                    break
        return marked

    async def sweep_replaced(self) -> int:
        """Remove the facts a replacing bootstrap did not bring again (still marked stale), in
        parts, admitting facts first; returns how many."""
        removed = 0
        for table, key in _REPLACED:
            sql = (
                f"DELETE FROM {table} WHERE {key} IN"
                f" (SELECT {key} FROM {table} WHERE stale = 1 LIMIT {APPLY_PART})"
            )
            while True:
                count = await self._bulk(functools.partial(_delete_part, sql=sql))
                removed += count
                if count < APPLY_PART:
                    break
        return removed

    def cursor(self, name: str) -> str | None:
        """A sync position, if one was set."""
        row = self._reader.execute(
            "SELECT value FROM sync_cursors WHERE name = ?", (name,)
        ).fetchone()
        return None if row is None else str(row[0])

    def known_keys(self) -> dict[int, tuple[bytes, bool]]:
        """(public key, retired) by id of every key this store knows, retired ones included."""
        rows = self._reader.execute("SELECT key_id, public_key, retired FROM keys")
        return {int(kid): (bytes(public), bool(retired)) for kid, public, retired in rows}

    # -- the journal's upload ------------------------------------------------------------------

    def unsent(self, limit: int = 100, *, after: int = 0) -> list[JournalRow]:
        """The oldest `limit` journal entries not uploaded yet with seq > `after`, oldest first.

        `after` pages through the queue, so rows an uploader must leave for later do not
        hide the rows behind them.
        """
        rows = self._reader.execute(
            f"SELECT {JOURNAL_COLUMNS} FROM journal WHERE uploaded = 0 AND seq > ?"
            " ORDER BY seq LIMIT ?",
            (after, limit),
        ).fetchall()
        return journal_rows(rows)

    def unsent_rows(self, limit: int) -> list[tuple[Any, ...]]:
        """For a worker thread: the oldest `limit` unsent journal rows as plain tuples (seq,
        at in ms, lane, direction, reason, admitted, code hash, credential id), read on a
        connection of its own, so neither the loop nor the scan path's reader does it."""
        rows = self._read_here(
            "SELECT seq, at, lane, direction, reason, admitted, code_hash, credential_id"
            " FROM journal WHERE uploaded = 0 ORDER BY seq LIMIT ?",
            (limit,),
        )
        return [(*row[:5], bool(row[5]), *row[6:]) for row in rows]

    async def mark_sent(self, replies: Iterable[tuple[int, str, str]]) -> None:
        """Mark journal rows uploaded, with the central system's answer (status, detail); in
        parts, as mark_uploaded."""
        at = now_ms()
        rows = [(seq, at, status, detail) for seq, status, detail in replies]
        for i in range(0, len(rows), MARK_PART):
            part = rows[i : i + MARK_PART]
            job = functools.partial(_mark, seqs=json.dumps([row[0] for row in part]), replies=part)
            await self._journal_bulk(job, durable=False)

    async def mark_uploaded(self, seqs: Iterable[int]) -> None:
        """Record that journal entries reached their destination (any uploader).

        In parts of MARK_PART rows, each committed without waiting for the disk: a lane's
        record waits for at most one part's SQLite work. A power cut may lose the last marks;
        those rows are then uploaded again, and the central system (by device and seq) and
        pretix (by nonce) count each once.
        """
        marked = list(seqs)
        for i in range(0, len(marked), MARK_PART):
            job = functools.partial(_mark, seqs=json.dumps(marked[i : i + MARK_PART]))
            await self._journal_bulk(job, durable=False)

    def reply(self, seq: int) -> tuple[str, str] | None:
        """The central system's answer (status, detail) to an uploaded journal row."""
        row = self._reader.execute(
            "SELECT status, detail FROM journal_replies WHERE seq = ?", (seq,)
        ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def reply_counts(self) -> dict[str, int]:
        """How many uploaded journal rows got each answer status (a full scan: for status)."""
        rows = self._reader.execute("SELECT status, count(*) FROM journal_replies GROUP BY status")
        return {str(status): int(count) for status, count in rows}

    def refusals(
        self, limit: int = 10, *, accepted: Sequence[str] = ("ok", "skipped")
    ) -> list[Refusal]:
        """The newest `limit` uploaded rows whose answer is not in `accepted`, newest first."""
        marks = ", ".join("?" * len(accepted))
        rows = self._reader.execute(
            "SELECT r.seq, j.at, j.lane, j.direction, j.code_hint, r.status, r.detail"
            " FROM journal_replies r JOIN journal j ON j.seq = r.seq"
            f" WHERE r.status NOT IN ({marks}) ORDER BY r.seq DESC LIMIT ?",
            (*accepted, limit),
        ).fetchall()
        return [
            Refusal(int(seq), from_ms(at), lane, Direction(direction), hint, status, detail)
            for seq, at, lane, direction, hint, status, detail in rows
        ]

    def journal_backlog(self) -> int:
        """Journal entries not uploaded yet, counted now on the calling thread (a walk of the
        unsent index: 4 ms for 100,000 rows, 58 ms for a million: on the event loop, every scan
        would wait for it; monitoring there uses `seen_backlog`)."""
        return int(self._reader.execute(_BACKLOG_SQL).fetchone()[0])

    def seen_backlog(self) -> int:
        """The journal backlog for monitoring (/health, /metrics, status pages), on the loop,
        which never counts more than BACKLOG_EXACT_LIMIT rows (0.1 ms): exact below it; above
        it, the last count taken in a worker thread (again once it is older than
        BACKLOG_FRESH_SECONDS), and at least the limit."""
        (upto,) = self._reader.execute(_BACKLOG_UPTO_SQL, (BACKLOG_EXACT_LIMIT,)).fetchone()
        if upto < BACKLOG_EXACT_LIMIT:
            # A count of a larger backlog is history now, and so is one still running.
            self._seen_backlog = None
            self._backlog_epoch += 1
            return int(upto)
        seen = self._seen_backlog
        if seen is None or time.monotonic() - seen[0] > BACKLOG_FRESH_SECONDS:
            self._count_backlog()
        return max(int(upto), seen[1] if seen is not None else 0)

    def _count_backlog(self) -> None:
        """Count the backlog in a worker thread, one count at a time."""
        if self._backlog_counting:
            return
        self._backlog_counting = True
        started, epoch = time.monotonic(), self._backlog_epoch
        counting = asyncio.get_running_loop().run_in_executor(None, self._read_here, _BACKLOG_SQL)

        def counted(done: asyncio.Future[list[Any]]) -> None:
            self._backlog_counting = False
            if epoch == self._backlog_epoch and not done.cancelled() and done.exception() is None:
                self._seen_backlog = (started, int(done.result()[0][0]))

        counting.add_done_callback(counted)
