"""The central system's change log: one revision per change, and the state it adds up to.

Every change is appended in the transaction that made it, and the `view_*` tables are kept
equal to what an edge holds after applying the whole log: the bootstrap snapshot pages
through them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgpack

from edge.core.errors import SyncError
from sync import protocol
from sync.central.connection import SQL, Connection, Notice
from sync.protocol import (
    CancelEvent,
    Change,
    CredentialChange,
    KeyChange,
    PackedChanges,
    Passage,
    PlainCodeChange,
    RevokeCode,
    RevokeCredential,
    RevokeProduct,
    change_to_wire,
)

# Snapshot sections in order, with the table and key columns each pages through.
_SECTIONS: dict[str, tuple[str, str]] = {
    "keys": ("view_keys", "key_id"),
    "credentials": ("view_credentials", "credential_id"),
    "plain_codes": ("view_plain_codes", "key"),
    "revoked_codes": ("view_revoked_codes", "key"),
    "revoked_credentials": ("view_revoked_credentials", "key"),
    "revoked_products": ("view_revoked_products", "key"),
    "cancelled_events": ("view_cancelled_events", "key"),
    "passages": ("view_passages", "device, seq"),
}
_GROUP_SECTIONS = ("keys", "revoked_products")  # the whole group's: their views have no venue
_KEYS = {table: tuple(key.split(", ")) for table, key in _SECTIONS.values()}
if tuple(_SECTIONS) != protocol.SNAPSHOT_SECTIONS:
    raise SyncError(
        f"the central snapshot sections {tuple(_SECTIONS)} differ from"
        f" protocol.SNAPSHOT_SECTIONS {protocol.SNAPSHOT_SECTIONS}; list them in the same order"
    )


# A venue's changes: two ranges of the changes_venue index (migration 3), the venue's and the
# group's, merged in revision order; the rows of other venues are never read.
VENUE_CHANGES_SQL = (
    "SELECT revision, change FROM changes WHERE venue = ? AND revision > ? AND revision <= ?"
    " UNION ALL"
    " SELECT revision, change FROM changes WHERE venue IS NULL AND revision > ? AND revision <= ?"
    " ORDER BY revision LIMIT ?"
)


def now_ms() -> int:
    """Wall clock in unix milliseconds."""
    return time.time_ns() // 1_000_000


class ChangeLog:
    """The revisions edges replicate, and the snapshot views they bootstrap from."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def identity(self) -> bytes | None:
        """16 bytes that tell this change log from every other (None while it is empty): a
        digest of its first change and when it was made. Every process on one database
        answers the same, so a gate can tell a process of another database apart."""
        row = self._connection.row("SELECT at_ms, change FROM changes WHERE revision = 1")
        if row is None:
            return None
        return hashlib.sha256(b"%d:" % int(row[0]) + bytes(row[1])).digest()[:16]

    def head(self) -> int:
        """The newest revision (0: nothing yet)."""
        return int(self._connection.row("SELECT coalesce(max(revision), 0) FROM changes")[0])

    def append(
        self, conn: SQL, changes: Sequence[Change], codes: Mapping[bytes, int] | None = None
    ) -> None:
        """Append changes in the caller's transaction, one revision each, each noted with the
        venue it concerns. `codes`: the credential of a revoked code hash, where known."""
        if not changes:
            return
        at = now_ms()
        venues = _Venues(conn, codes or {})
        # Under the write lock (every backend serialises writers): max + 1 has no gaps.
        (head,) = conn.execute("SELECT coalesce(max(revision), 0) FROM changes").fetchone()
        rows = []
        views: dict[str, list[tuple[Any, ...]]] = {}
        for revision, change in enumerate(changes, start=int(head) + 1):
            wire = protocol.pack(change_to_wire(change))
            venue = venues.of(change)
            rows.append((revision, at, wire, venue))
            table, key = _view(change)
            views.setdefault(table, []).append((*key, wire, venue))
        columns = ("revision", "at_ms", "change", "venue")
        self._connection.insert_many(conn, "changes", columns, rows)
        for table, values in views.items():  # in order within a table: the last one stands
            key = _KEYS[table]
            if table in ("view_keys", "view_revoked_products"):  # the whole group's
                plain = [v[:-1] for v in values]
                self._connection.insert_many(conn, table, (*key, "change"), plain, key=key)
            else:
                self._connection.insert_many(
                    conn, table, (*key, "change", "venue"), values, key=key
                )
        self._connection.announce(conn, Notice(head=rows[-1][0], devices=False))

    def publish(self, changes: Sequence[Change]) -> int:
        """Publish changes as they are, one revision each (imports from another system,
        benchmarks); returns the new head."""
        with self._connection.transaction() as conn:
            self.append(conn, changes)
        return self.head()

    def changes_since(self, revision: int, limit: int) -> tuple[int, list[list[Any]], int]:
        """(first, wire changes first+1.., head): at most `limit` changes after `revision`."""
        with self._connection.reading() as conn:
            head = self._head_at_most(conn, revision)
            rows = conn.execute(
                "SELECT change FROM changes WHERE revision > ? ORDER BY revision LIMIT ?",
                (revision, limit),
            ).fetchall()
        return revision, [protocol.unpack(r[0], "change", 1 << 20) for r in rows], head

    def venue_changes_since(
        self, revision: int, limit: int, venue: str
    ) -> tuple[int, int, list[int], list[list[Any]], int]:
        """(first, last, revisions, wire changes, head) for a device of `venue`: at most
        `limit` changes after `revision` that concern the venue or the whole group. The
        range first+1..last is contiguous; the changes in it for other venues are left out."""
        with self._connection.reading() as conn:
            head = self._head_at_most(conn, revision)
            arguments = (venue, revision, head, revision, head, limit)
            rows = conn.execute(VENUE_CHANGES_SQL, arguments).fetchall()
        # Fewer than `limit`: nothing else of the venue's up to the head.
        last = int(rows[-1][0]) if len(rows) == limit else head
        changes = [protocol.unpack(r[1], "change", 1 << 20) for r in rows]
        return revision, last, [int(r[0]) for r in rows], changes, head

    def _head_at_most(self, conn: SQL, revision: int) -> int:
        (head,) = conn.execute("SELECT coalesce(max(revision), 0) FROM changes").fetchone()
        if revision > head:
            raise protocol.RequestRejectedError(
                protocol.ErrorCode.REVISION_AHEAD,
                f"revision {revision} is ahead of the central system's {head}; "
                "the edge must bootstrap again",
            )
        return int(head)

    def snapshot_chunk(
        self, cursor: tuple[str, Any] | None, limit: int, venue: str | None = None
    ) -> tuple[list[list[Any]], tuple[str, Any] | None]:
        """Up to `limit` state changes from `cursor` on, and the cursor after them; with a
        `venue`, only what concerns it or the whole group."""
        packed, next_cursor = self.snapshot_part(cursor, limit, venue)
        unpacker = msgpack.Unpacker(raw=False, max_buffer_size=max(len(packed.data), 1))
        unpacker.feed(packed.data)
        return [unpacker.unpack() for _ in range(packed.count)], next_cursor

    def snapshot_part(
        self, cursor: tuple[str, Any] | None, limit: int, venue: str | None = None
    ) -> tuple[PackedChanges, tuple[str, Any] | None]:
        """`snapshot_chunk`'s changes as the log stores them, packed: read by keyset pages
        (each section in key order from the cursor), never decoded here."""
        section, after = cursor if cursor is not None else (protocol.SNAPSHOT_SECTIONS[0], None)
        names = list(protocol.SNAPSHOT_SECTIONS)
        count, parts = 0, []
        with self._connection.reading() as conn:
            while count < limit:
                sql, args = snapshot_query(section, after, venue, limit - count)
                table, _ = _SECTIONS[section]
                rows, data, last = self._connection.concatenated(
                    conn, sql, args, _KEYS[table], "change"
                )
                count += rows
                parts.append(data)
                if count >= limit and last is not None:
                    position = list(last) if section == "passages" else last[0]
                    return PackedChanges(count, b"".join(parts)), (section, position)
                index = names.index(section)
                if index + 1 == len(names):
                    return PackedChanges(count, b"".join(parts)), None
                section, after = names[index + 1], None
        return PackedChanges(count, b"".join(parts)), (section, after)


def snapshot_query(
    section: str, after: Any, venue: str | None, limit: int
) -> tuple[str, tuple[Any, ...]]:
    """The SQL and arguments of up to `limit` rows (key columns, change) of a snapshot
    section after the key `after` (None: from its start), of a venue's device if `venue`."""
    table, key = _SECTIONS[section]
    terms, args = [], tuple[Any, ...]()
    if section == "passages" and after:
        terms, args = ["(device, seq) > (?, ?)"], tuple(after)
    elif section != "passages" and after is not None:
        terms, args = [f"{key} > ?"], (after,)
    if venue is not None and section not in _GROUP_SECTIONS:
        # Two ranges of the view's venue index (migration 3), merged in key order: the
        # venue's rows and the group's, never the other venues'.
        ranges = [
            f"SELECT {key}, change FROM {table} WHERE {' AND '.join([test, *terms])}"
            for test in ("venue = ?", "venue IS NULL")
        ]
        return f"{ranges[0]} UNION ALL {ranges[1]} ORDER BY {key} LIMIT ?", (
            venue, *args, *args, limit,
        )  # fmt: skip
    where = f"WHERE {' AND '.join(terms)}" if terms else ""
    return f"SELECT {key}, change FROM {table} {where} ORDER BY {key} LIMIT ?", (*args, limit)


class _Venues:
    """The venue each change concerns, looked up once per event, credential and device.

    An event's credentials (and their codes, revocations, cancellation) concern its venue;
    a passage concerns the venue of the gate that admitted it; a plain code revoked by its
    text, the venue it was given for. Keys, product revocations, codes of no known credential
    and anything of an event without a venue concern every venue.
    """

    def __init__(self, conn: SQL, codes: Mapping[bytes, int]) -> None:
        self._conn = conn
        self._codes = codes
        self._events: dict[int, str | None] = {}
        self._credentials: dict[int, str | None] = {}
        self._devices: dict[str, str | None] = {}

    def of(self, change: Change) -> str | None:
        match change:
            case CredentialChange():
                venue = self._event(change.event_id)
                self._credentials[change.credential_id] = venue
                return venue
            case CancelEvent():
                return self._event(change.event_id)
            case PlainCodeChange() | RevokeCredential():
                return self._credential(change.credential_id)
            case RevokeCode():
                cid = self._codes.get(change.code_hash)
                if cid is not None:
                    return self._credential(cid)
                return self._plain_code(change.code_hash)
            case Passage():
                if change.device not in self._devices:
                    row = self._conn.execute(
                        "SELECT venue FROM devices WHERE name = ?", (change.device,)
                    ).fetchone()
                    self._devices[change.device] = None if row is None else row[0]
                return self._devices[change.device]
        return None

    def _event(self, event_id: int) -> str | None:
        if event_id not in self._events:
            row = self._conn.execute(
                "SELECT venue FROM events WHERE event_id = ?", (event_id,)
            ).fetchone()
            self._events[event_id] = None if row is None else row[0]
        return self._events[event_id]

    def _plain_code(self, code_hash: bytes) -> str | None:
        """The venue of a plain code (a legacy barcode, a card's chip) the log gave a
        credential; None for any other code."""
        row = self._conn.execute(
            "SELECT venue FROM view_plain_codes WHERE key = ?", (code_hash,)
        ).fetchone()
        return None if row is None else row[0]

    def _credential(self, cid: int) -> str | None:
        if cid not in self._credentials:
            row = self._conn.execute(
                "SELECT e.venue FROM credentials c JOIN events e USING (event_id)"
                " WHERE c.credential_id = ?",
                (cid,),
            ).fetchone()
            self._credentials[cid] = None if row is None else row[0]
        return self._credentials[cid]


def _view(change: Change) -> tuple[str, tuple[Any, ...]]:
    """The snapshot view a change's kind keeps equal to the state after it, and its key."""
    match change:
        case KeyChange():
            return "view_keys", (change.key_id,)
        case CredentialChange():
            return "view_credentials", (change.credential_id,)
        case PlainCodeChange():
            return "view_plain_codes", (change.code_hash,)
        case RevokeCode():
            return "view_revoked_codes", (change.code_hash,)
        case RevokeCredential():
            return "view_revoked_credentials", (change.credential_id,)
        case RevokeProduct():
            return "view_revoked_products", (change.product_id,)
        case CancelEvent():
            return "view_cancelled_events", (change.event_id,)
        case Passage():
            return "view_passages", (change.device, change.seq)
    raise SyncError(f"no snapshot view for {type(change).__name__}")
