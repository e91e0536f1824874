"""The central system's change log: one revision per change, and the state it adds up to.

Every change is appended in the transaction that made it, and the `view_*` tables are kept
equal to what an edge holds after applying the whole log: the bootstrap snapshot pages
through them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from edge.core.errors import SyncError
from sync import protocol
from sync.central.connection import SQL, Connection
from sync.protocol import (
    CancelEvent,
    Change,
    CredentialChange,
    KeyChange,
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
_KEYS = {table: tuple(key.split(", ")) for table, key in _SECTIONS.values()}
if tuple(_SECTIONS) != protocol.SNAPSHOT_SECTIONS:
    raise SyncError(
        f"the central snapshot sections {tuple(_SECTIONS)} differ from"
        f" protocol.SNAPSHOT_SECTIONS {protocol.SNAPSHOT_SECTIONS}; list them in the same order"
    )


def now_ms() -> int:
    """Wall clock in unix milliseconds."""
    return time.time_ns() // 1_000_000


class ChangeLog:
    """The revisions edges replicate, and the snapshot views they bootstrap from."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def head(self) -> int:
        """The newest revision (0: nothing yet)."""
        return int(self._connection.row("SELECT coalesce(max(revision), 0) FROM changes")[0])

    def append(self, conn: SQL, changes: Sequence[Change]) -> None:
        """Append changes in the caller's transaction, one revision each."""
        if not changes:
            return
        at = now_ms()
        # Under the write lock (every backend serialises writers): max + 1 has no gaps.
        (head,) = conn.execute("SELECT coalesce(max(revision), 0) FROM changes").fetchone()
        rows = []
        views: dict[str, list[tuple[Any, ...]]] = {}
        for revision, change in enumerate(changes, start=int(head) + 1):
            wire = protocol.pack(change_to_wire(change))
            rows.append((revision, at, wire))
            table, key = _view(change)
            views.setdefault(table, []).append((*key, wire))
        self._connection.insert_many(conn, "changes", ("revision", "at_ms", "change"), rows)
        for table, values in views.items():  # in order within a table: the last one stands
            key = _KEYS[table]
            self._connection.insert_many(conn, table, (*key, "change"), values, key=key)
        self._connection.announce(conn)

    def publish(self, changes: Sequence[Change]) -> int:
        """Publish changes as they are, one revision each (imports from another system,
        benchmarks); returns the new head."""
        with self._connection.transaction() as conn:
            self.append(conn, changes)
        return self.head()

    def changes_since(self, revision: int, limit: int) -> tuple[int, list[list[Any]], int]:
        """(first, wire changes first+1.., head): at most `limit` changes after `revision`."""
        with self._connection.reading() as conn:
            head = self.head()
            if revision > head:
                raise protocol.RequestRejectedError(
                    protocol.ErrorCode.REVISION_AHEAD,
                    f"revision {revision} is ahead of the central system's {head}; "
                    "the edge must bootstrap again",
                )
            rows = conn.execute(
                "SELECT change FROM changes WHERE revision > ? ORDER BY revision LIMIT ?",
                (revision, limit),
            ).fetchall()
        return revision, [protocol.unpack(r[0], "change", 1 << 20) for r in rows], head

    def snapshot_chunk(
        self, cursor: tuple[str, Any] | None, limit: int
    ) -> tuple[list[list[Any]], tuple[str, Any] | None]:
        """Up to `limit` state changes from `cursor` on, and the cursor after them."""
        section, after = cursor if cursor is not None else (protocol.SNAPSHOT_SECTIONS[0], None)
        names = list(protocol.SNAPSHOT_SECTIONS)
        out: list[list[Any]] = []
        with self._connection.reading() as conn:
            while len(out) < limit:
                table, key = _SECTIONS[section]
                where, args = "", tuple[Any, ...]()
                if section == "passages" and after:
                    where, args = "WHERE (device, seq) > (?, ?)", tuple(after)
                elif section != "passages" and after is not None:
                    where, args = f"WHERE {key} > ?", (after,)
                rows = conn.execute(
                    f"SELECT {key}, change FROM {table} {where} ORDER BY {key} LIMIT ?",
                    (*args, limit - len(out)),
                ).fetchall()
                out.extend(protocol.unpack(r[-1], "change", 1 << 20) for r in rows)
                if len(out) >= limit and rows:
                    last = rows[-1]
                    position = [last[0], last[1]] if section == "passages" else last[0]
                    return out, (section, position)
                index = names.index(section)
                if index + 1 == len(names):
                    return out, None
                section, after = names[index + 1], None
        return out, (section, after)


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
