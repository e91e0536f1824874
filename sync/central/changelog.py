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
        at = now_ms()
        rows = []
        for change in changes:
            wire = protocol.pack(change_to_wire(change))
            rows.append((at, wire))
            _view(conn, change, wire)
        conn.executemany("INSERT INTO changes (at_ms, change) VALUES (?, ?)", rows)
        if rows:
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


def _view(conn: SQL, change: Change, wire: bytes) -> None:
    """Keep the snapshot view of a change's kind equal to the state after it."""
    match change:
        case KeyChange():
            conn.execute(
                "INSERT INTO view_keys VALUES (?, ?)"
                " ON CONFLICT (key_id) DO UPDATE SET change = excluded.change",
                (change.key_id, wire),
            )
        case CredentialChange():
            conn.execute(
                "INSERT INTO view_credentials VALUES (?, ?)"
                " ON CONFLICT (credential_id) DO UPDATE SET change = excluded.change",
                (change.credential_id, wire),
            )
        case PlainCodeChange():
            conn.execute(
                "INSERT INTO view_plain_codes VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET change = excluded.change",
                (change.code_hash, wire),
            )
        case RevokeCode():
            conn.execute(
                "INSERT INTO view_revoked_codes VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET change = excluded.change",
                (change.code_hash, wire),
            )
        case RevokeCredential():
            conn.execute(
                "INSERT INTO view_revoked_credentials VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET change = excluded.change",
                (change.credential_id, wire),
            )
        case RevokeProduct():
            conn.execute(
                "INSERT INTO view_revoked_products VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET change = excluded.change",
                (change.product_id, wire),
            )
        case CancelEvent():
            conn.execute(
                "INSERT INTO view_cancelled_events VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET change = excluded.change",
                (change.event_id, wire),
            )
        case Passage():
            conn.execute(
                "INSERT INTO view_passages VALUES (?, ?, ?)"
                " ON CONFLICT (device, seq) DO UPDATE SET change = excluded.change",
                (change.device, change.seq, wire),
            )
