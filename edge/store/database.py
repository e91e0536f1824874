"""The local store: SQLite in WAL mode.

Reads for the scan path use a direct sqlite3 connection on the event loop's thread (one
prepared statement, ~10 µs); every write goes through aiosqlite, off the loop, one
transaction per call, durable (synchronous=FULL) before the call returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.core.codes import Code, EntryPolicy, Kind, PolicyKind, SignedCode, Validity
from edge.core.decide import Reason
from edge.core.errors import StoreError
from edge.core.facts import Credential, Direction, EntryState, Facts, Revocation, TrustedKey
from edge.store import schema

_LOGGER = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000  # another process (edge check, edge import) may hold the write lock
_REVOCATION_CODES = {Revocation.REVOKED: 1, Revocation.REPLACED: 2, Revocation.CANCELLED: 3}
_REVOCATIONS = {number: revocation for revocation, number in _REVOCATION_CODES.items()}

# Every fact about one code in one statement: a plain code's credential is found by hash.
_FACTS_SQL = """
WITH q (cid, h) AS (
    SELECT coalesce(:cid, (SELECT credential_id FROM plain_codes WHERE code_hash = :h)), :h
)
SELECT q.cid,
       c.kind, c.event_id, c.product_id, c.policy, c.uses, c.passback_minutes,
       c.valid_from, c.valid_until, c.zones, c.paid,
       rc.reason, rv.reason,
       EXISTS (SELECT 1 FROM cancelled_events WHERE event_id = coalesce(c.event_id, :ev)),
       (SELECT reason FROM revoked_products WHERE product_id = coalesce(c.product_id, :pr)),
       e.count, e.first_at, e.first_gate, e.last_at, e.last_direction, e.last_gate,
       k.public_key, k.retired
FROM q
LEFT JOIN credentials c ON c.credential_id = q.cid
LEFT JOIN revoked_codes rc ON rc.code_hash = q.h
LEFT JOIN revoked_credentials rv ON rv.credential_id = q.cid
LEFT JOIN entries e ON e.credential_id = q.cid
LEFT JOIN keys k ON k.key_id = :kid
"""

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


def to_ms(moment: datetime) -> int:
    """Unix milliseconds of an aware datetime."""
    return int(moment.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    """Aware UTC datetime of unix milliseconds."""
    return datetime.fromtimestamp(ms / 1000, UTC)


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
class StoreStats:
    """Row counts for status output."""

    schema_version: int
    keys: int
    credentials: int
    plain_codes: int
    revoked_codes: int
    revoked_credentials: int
    revoked_products: int
    cancelled_events: int
    journal: int
    journal_unsent: int


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


def _migrate(conn: sqlite3.Connection, path: str) -> int:
    """Bring the file to the current schema; returns the version it had."""
    (found,) = conn.execute("PRAGMA user_version").fetchone()
    if found > schema.VERSION:
        raise StoreError(
            f"{path}: schema version {found} is newer than this edge understands "
            f"({schema.VERSION}); install a newer edge"
        )
    for number in range(found + 1, schema.VERSION + 1):
        script = schema.MIGRATIONS[number - 1]
        conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
        _LOGGER.info("%s: migrated schema to version %d", path, number)
    return int(found)


def _prepare(path: str) -> None:
    """Create or open the file, switch it to WAL and migrate it (blocking: run in a thread)."""
    try:
        conn = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as err:
        raise StoreError(f"{path}: cannot open the store: {err}") from err
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode != "wal":
            raise StoreError(f"{path}: cannot switch to WAL mode (journal mode is {mode})")
        _migrate(conn, path)
    except sqlite3.DatabaseError as err:
        raise StoreError(f"{path}: not a usable edge store: {err}") from err
    finally:
        conn.close()


class Store:
    """The device's SQLite store. Open with `await Store.open(path)`, close with `close()`."""

    def __init__(self, path: str, reader: sqlite3.Connection, writer: aiosqlite.Connection) -> None:
        self.path = path
        self._reader = reader
        self._writer = writer
        self._keys: dict[tuple[int, bytes, bool], TrustedKey] = {}
        # One writer connection: transactions of concurrent callers (two lanes, sync) must
        # not interleave on it, or one caller's BEGIN/ROLLBACK lands in the other's.
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | Path) -> Store:
        """Open (creating and migrating as needed) the store at `path`."""
        path = str(path)
        started = time.monotonic()
        await asyncio.to_thread(_prepare, path)
        writer = await aiosqlite.connect(path, isolation_level=None)
        try:
            await writer.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # FULL: a commit is on disk before it returns, so an acknowledged admit survives
            # a power cut, not only a crash.
            await writer.execute("PRAGMA synchronous = FULL")
            reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            reader.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            reader.execute("PRAGMA query_only = ON")
        except BaseException:
            await writer.close()
            raise
        _LOGGER.info("%s: store open in %.0f ms", path, (time.monotonic() - started) * 1000)
        return cls(path, reader, writer)

    async def close(self) -> None:
        """Close both connections."""
        self._reader.close()
        await self._writer.close()

    # -- the scan path: synchronous, no thread hop ------------------------------------------

    def facts(self, code: Code) -> Facts:
        """Everything the store knows about a parsed code (a SignedCode or PlainCode)."""
        if isinstance(code, SignedCode):
            claims = code.claims
            params = {
                "cid": claims.credential_id,
                "h": code.hash,
                "ev": claims.event_id,
                "pr": claims.product_id,
                "kid": claims.key_id,
            }
        else:
            params = {"cid": None, "h": code.hash, "ev": None, "pr": None, "kid": None}
        row = self._reader.execute(_FACTS_SQL, params).fetchone()
        cid = row[0]
        credential = None
        if row[1] is not None:
            validity = None
            if row[7] is not None:
                validity = Validity(
                    datetime.fromtimestamp(row[7], UTC), datetime.fromtimestamp(row[8], UTC)
                )
            credential = Credential(
                credential_id=cid,
                kind=Kind(row[1]),
                event_id=row[2],
                product_id=row[3],
                policy=EntryPolicy(PolicyKind(row[4]), row[5], row[6]),
                validity=validity,
                zones=row[9],
                paid=bool(row[10]),
            )
        entries = None
        if row[15] is not None:
            entries = EntryState(
                count=row[15],
                first_at=from_ms(row[16]) if row[16] is not None else None,
                first_gate=row[17],
                last_at=from_ms(row[18]),
                last_direction=Direction(row[19]),
                last_gate=row[20],
            )
        return Facts(
            key=self._key(code.claims.key_id, row[21], row[22])
            if isinstance(code, SignedCode)
            else None,
            credential=credential,
            code_revoked=_REVOCATIONS.get(row[11]),
            credential_revoked=_REVOCATIONS.get(row[12]),
            event_cancelled=bool(row[13]),
            product_revoked=_REVOCATIONS.get(row[14]),
            entries=entries,
        )

    def _key(self, key_id: int, public: bytes | None, retired: int | None) -> TrustedKey | None:
        if public is None:
            return None
        cache_key = (key_id, public, bool(retired))
        key = self._keys.get(cache_key)
        if key is None:
            # Loading a public key costs more than a lookup; keys change rarely.
            key = TrustedKey(key_id, Ed25519PublicKey.from_public_bytes(public), bool(retired))
            self._keys[cache_key] = key
        return key

    # -- writes: off the loop, one transaction each -----------------------------------------

    async def _transaction(self, statements: Sequence[tuple[str, Iterable[Sequence[Any]]]]) -> None:
        """Run executemany for each (sql, rows) in one transaction."""
        async with self._write() as conn:
            for sql, rows in statements:
                await conn.executemany(sql, rows)

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction; SQLite failures (disk full, I/O) become StoreError."""
        conn = self._writer
        async with self._write_lock:
            try:
                await conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    await conn.execute("ROLLBACK")
                    raise
                await conn.execute("COMMIT")
            except sqlite3.Error as err:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        await conn.execute("ROLLBACK")
                raise StoreError(f"{self.path}: write failed: {err}") from err

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction, for modules that own their tables (the print queue)."""
        async with self._write() as conn:
            yield conn

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read on the direct connection (cheap point reads, no thread hop)."""
        return [tuple(row) for row in self._reader.execute(sql, params).fetchall()]

    async def put_keys(self, keys: Iterable[tuple[int, bytes, bool]]) -> None:
        """Trust keys: (key id, 32-byte Ed25519 public key, retired).

        Retiring is final: a key once retired stays retired, whoever lists it again (the
        configuration's start set on every restart, an old bundle). A key id never changes
        its public key.
        """
        rows = [(kid, bytes(public), int(retired)) for kid, public, retired in keys]
        for kid, public, _ in rows:
            if len(public) != 32 or not 0 <= kid <= 0xFFFF:
                raise StoreError(f"key {kid}: an Ed25519 public key has 32 bytes, ids 0..65535")
        async with self._write() as conn:
            for kid, public, _ in rows:
                cursor = await conn.execute("SELECT public_key FROM keys WHERE key_id = ?", (kid,))
                known = await cursor.fetchone()
                if known is not None and bytes(known[0]) != public:
                    raise StoreError(
                        f"key {kid} is already trusted with another public key; "
                        "key ids are never reused, give the new key a new id"
                    )
            await conn.executemany(
                "INSERT INTO keys (key_id, public_key, retired) VALUES (?, ?, ?)"
                " ON CONFLICT (key_id) DO UPDATE SET retired = max(retired, excluded.retired)",
                rows,
            )

    async def put_credentials(
        self, credentials: Iterable[Credential], plain_codes: Iterable[tuple[bytes, int]] = ()
    ) -> None:
        """Add or replace synced credential facts, and map plain code hashes to credentials."""
        await self._transaction(
            [
                (
                    "INSERT OR REPLACE INTO credentials VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    map(_credential_row, credentials),
                ),
                ("INSERT OR REPLACE INTO plain_codes VALUES (?, ?)", plain_codes),
            ]
        )

    async def revoke_codes(self, revocations: Iterable[tuple[bytes, Revocation]]) -> None:
        """Revoke single codes by hash (a replaced card's old code, a cancelled ticket)."""
        # Sorted keys append to the B-tree in order: bulk loads run several times faster.
        rows = sorted((bytes(h), _REVOCATION_CODES[r]) for h, r in revocations)
        await self._transaction([("INSERT OR REPLACE INTO revoked_codes VALUES (?, ?)", rows)])

    async def revoke_credentials(self, revocations: Iterable[tuple[int, Revocation]]) -> None:
        """Revoke every code of the given credentials."""
        rows = [(cid, _REVOCATION_CODES[r]) for cid, r in revocations]
        await self._transaction(
            [("INSERT OR REPLACE INTO revoked_credentials VALUES (?, ?)", rows)]
        )

    async def revoke_products(self, revocations: Iterable[tuple[int, Revocation]]) -> None:
        """Revoke every credential of the given products."""
        rows = [(pid, _REVOCATION_CODES[r]) for pid, r in revocations]
        await self._transaction([("INSERT OR REPLACE INTO revoked_products VALUES (?, ?)", rows)])

    async def cancel_events(self, event_ids: Iterable[int]) -> None:
        """Cancel events: every ticket for them is rejected."""
        rows = [(eid,) for eid in event_ids]
        await self._transaction([("INSERT OR IGNORE INTO cancelled_events VALUES (?)", rows)])

    async def record(self, entry: JournalEntry) -> int:
        """Journal a decision (and an admitted passage) durably; returns its sequence number."""
        at = to_ms(entry.at)
        admitted = entry.reason.admits
        async with self._write() as conn:
            cursor = await conn.execute(
                "INSERT INTO journal (at, lane, direction, reason, admitted, code_hash, code_hint,"
                " credential_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    at,
                    entry.lane,
                    entry.direction.value,
                    entry.reason.value,
                    int(admitted),
                    entry.code_hash,
                    entry.code_hint,
                    entry.credential_id,
                ),
            )
            seq = cursor.lastrowid
            if admitted and entry.credential_id is not None:
                is_entry = entry.direction is Direction.ENTRY
                await conn.execute(
                    _ENTRY_SQL,
                    (
                        entry.credential_id,
                        int(is_entry),
                        at if is_entry else None,
                        entry.lane if is_entry else None,
                        at,
                        entry.direction.value,
                        entry.lane,
                    ),
                )
        if seq is None:  # an INSERT into a rowid table always sets it
            raise StoreError(f"{self.path}: journal insert returned no row id")
        return seq

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
        await self._transaction([(_MERGE_ENTRY_SQL.format(source=source), rows)])

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
            ]
        )

    async def mark_sent(self, replies: Iterable[tuple[int, str, str]]) -> None:
        """Mark journal rows uploaded, with the central system's answer (status, detail)."""
        at = to_ms(datetime.now(UTC))
        rows = list(replies)
        await self._transaction(
            [
                (
                    "INSERT OR REPLACE INTO journal_replies VALUES (?, ?, ?, ?)",
                    [(seq, at, status, detail) for seq, status, detail in rows],
                ),
                ("UPDATE journal SET uploaded = 1 WHERE seq = ?", [(seq,) for seq, _, _ in rows]),
            ]
        )

    async def apply(self, batch: SyncBatch, cursors: Mapping[str, str]) -> None:
        """Apply synced facts and move sync cursors in one transaction: all or nothing.

        Every part is idempotent (applying a batch twice leaves the same state), and within
        a part later items win, so a batch may hold several versions of one credential.
        """
        for kid, public, _ in batch.keys:
            if len(public) != 32 or not 0 <= kid <= 0xFFFF:
                raise StoreError(f"key {kid}: an Ed25519 public key has 32 bytes, ids 0..65535")
        async with self._write() as conn:
            for kid, public, _ in batch.keys:
                cursor = await conn.execute("SELECT public_key FROM keys WHERE key_id = ?", (kid,))
                known = await cursor.fetchone()
                if known is not None and bytes(known[0]) != public:
                    raise StoreError(f"key {kid} is already trusted with another public key")
            await conn.executemany(
                "INSERT INTO keys (key_id, public_key, retired) VALUES (?, ?, ?)"
                " ON CONFLICT (key_id) DO UPDATE SET retired = max(retired, excluded.retired)",
                [(kid, bytes(public), int(retired)) for kid, public, retired in batch.keys],
            )
            await conn.executemany(
                "INSERT OR REPLACE INTO credentials VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                map(_credential_row, batch.credentials),
            )
            await conn.executemany(
                "INSERT OR REPLACE INTO plain_codes VALUES (?, ?)", batch.plain_codes
            )
            # Sorted by hash (stably: a later reason for the same hash still wins).
            revoked = sorted(
                ((bytes(h), _REVOCATION_CODES[r]) for h, r in batch.revoked_codes),
                key=lambda row: row[0],
            )
            await conn.executemany("INSERT OR REPLACE INTO revoked_codes VALUES (?, ?)", revoked)
            await conn.executemany(
                "INSERT OR REPLACE INTO revoked_credentials VALUES (?, ?)",
                [(cid, _REVOCATION_CODES[r]) for cid, r in batch.revoked_credentials],
            )
            await conn.executemany(
                "INSERT OR REPLACE INTO revoked_products VALUES (?, ?)",
                [(pid, _REVOCATION_CODES[r]) for pid, r in batch.revoked_products],
            )
            await conn.executemany(
                "INSERT OR IGNORE INTO cancelled_events VALUES (?)",
                [(eid,) for eid in batch.cancelled_events],
            )
            if batch.passages:
                await self._apply_passages(conn, batch.passages)
            await conn.executemany(
                "INSERT OR REPLACE INTO sync_cursors VALUES (?, ?)", list(cursors.items())
            )

    @staticmethod
    async def _apply_passages(
        conn: aiosqlite.Connection, passages: Sequence[RemotePassage]
    ) -> None:
        await conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS incoming_passages (device TEXT, seq INTEGER,"
            " credential_id INTEGER, at INTEGER, gate TEXT, direction TEXT, entry INTEGER,"
            " PRIMARY KEY (device, seq))"
        )
        await conn.executemany(
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
        await conn.execute(_REMOTE_ENTRY_SQL)
        await conn.execute(
            "INSERT OR IGNORE INTO remote_passages SELECT device, seq FROM temp.incoming_passages"
        )
        await conn.execute("DELETE FROM temp.incoming_passages")

    async def mark_uploaded(self, seqs: Iterable[int]) -> None:
        """Record that journal entries reached their destination (any uploader)."""
        await self._transaction(
            [("UPDATE journal SET uploaded = 1 WHERE seq = ?", [(s,) for s in seqs])]
        )

    async def set_cursor(self, name: str, value: str) -> None:
        """Remember a sync position."""
        await self._transaction(
            [("INSERT OR REPLACE INTO sync_cursors VALUES (?, ?)", [(name, value)])]
        )

    # -- reads for operators ----------------------------------------------------------------

    def cursor(self, name: str) -> str | None:
        """A sync position, if one was set."""
        row = self._reader.execute(
            "SELECT value FROM sync_cursors WHERE name = ?", (name,)
        ).fetchone()
        return None if row is None else str(row[0])

    def code_blocked(self, code_hash: bytes) -> bool:
        """True if the code with this hash is blocked (scan path: one point query)."""
        row = self._reader.execute(
            "SELECT 1 FROM blocked_codes WHERE code_hash = ?", (code_hash,)
        ).fetchone()
        return row is not None

    def reply(self, seq: int) -> tuple[str, str] | None:
        """The central system's answer (status, detail) to an uploaded journal row."""
        row = self._reader.execute(
            "SELECT status, detail FROM journal_replies WHERE seq = ?", (seq,)
        ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def trusted_keys(self) -> dict[int, bytes]:
        """Public keys by id of every trusted key that is not retired."""
        rows = self._reader.execute("SELECT key_id, public_key FROM keys WHERE retired = 0")
        return {int(kid): bytes(public) for kid, public in rows}

    def unsent(self, limit: int = 100) -> list[JournalRow]:
        """The oldest `limit` journal entries not uploaded yet, oldest first."""
        return self._journal_rows(
            "SELECT seq, at, lane, direction, reason, credential_id, code_hash, code_hint, uploaded"
            " FROM journal WHERE uploaded = 0 ORDER BY seq LIMIT ?",
            limit,
        )

    def recent(self, limit: int = 20) -> list[JournalRow]:
        """The last `limit` journal entries, newest first."""
        return self._journal_rows(
            "SELECT seq, at, lane, direction, reason, credential_id, code_hash, code_hint, uploaded"
            " FROM journal ORDER BY seq DESC LIMIT ?",
            limit,
        )

    def _journal_rows(self, sql: str, limit: int) -> list[JournalRow]:
        rows = self._reader.execute(sql, (limit,)).fetchall()
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

    def admitted_hashes(self) -> set[bytes]:
        """Hashes of every admitted code in the journal (tests and audits)."""
        rows = self._reader.execute(
            "SELECT code_hash FROM journal WHERE admitted = 1 AND code_hash IS NOT NULL"
        )
        return {bytes(h) for (h,) in rows}

    def stats(self) -> StoreStats:
        """Row counts of every table (a full scan of the large ones: for status, not the lanes)."""

        def count(sql: str) -> int:
            return int(self._reader.execute(sql).fetchone()[0])

        return StoreStats(
            schema_version=count("PRAGMA user_version"),
            keys=count("SELECT count(*) FROM keys"),
            credentials=count("SELECT count(*) FROM credentials"),
            plain_codes=count("SELECT count(*) FROM plain_codes"),
            revoked_codes=count("SELECT count(*) FROM revoked_codes"),
            revoked_credentials=count("SELECT count(*) FROM revoked_credentials"),
            revoked_products=count("SELECT count(*) FROM revoked_products"),
            cancelled_events=count("SELECT count(*) FROM cancelled_events"),
            journal=count("SELECT count(*) FROM journal"),
            journal_unsent=count("SELECT count(*) FROM journal WHERE uploaded = 0"),
        )

    def journal_backlog(self) -> int:
        """Journal entries not uploaded yet (the partial index keeps this cheap for metrics)."""
        return int(
            self._reader.execute("SELECT count(*) FROM journal WHERE uploaded = 0").fetchone()[0]
        )
