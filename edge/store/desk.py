"""The pass desk's part of the store: its operations queue, and what it reads of passes."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from edge.core.codes import Kind
from edge.store.facts import FactsStore


class OpState(enum.Enum):
    """Where a desk operation is."""

    QUEUED = "queued"  # stored, not yet answered by the central system
    SENT = "sent"  # the central system did it (or had done it: a repeat)
    REJECTED = "rejected"  # the central system refused it; `detail` says why


@dataclass(frozen=True, slots=True)
class DeskOperation:
    """An operation as the desk's queue keeps it (without its body)."""

    seq: int
    key: str
    operation: str
    state: OpState
    detail: str | None  # the central system's answer (JSON) or refusal
    created_ms: int  # unix milliseconds


@dataclass(frozen=True, slots=True)
class QueuedOperation:
    """An operation waiting to be sent, with its msgpack request body."""

    seq: int
    operation: str
    body: bytes


@dataclass(frozen=True, slots=True)
class SyncedPass:
    """A credential as the synced copy knows it (a pass looked up by its number)."""

    credential_id: int
    kind: Kind
    valid_from: int | None  # unix seconds
    valid_until: int | None
    revoked: bool


_OPERATION = "SELECT seq, key, operation, state, detail, created_at FROM desk_operations"


def _operation(row: Any) -> DeskOperation:
    seq, key, operation, state, detail, created = row
    return DeskOperation(
        int(seq),
        str(key),
        str(operation),
        OpState(state),
        None if detail is None else str(detail),
        int(created),
    )


class DeskStore(FactsStore):
    """What the desk may do: read codes' facts and synced passes, keep its operations queue."""

    def synced_pass(self, credential_id: int) -> SyncedPass | None:
        """A credential from the synced copy, with whether it is revoked."""
        row = self._reader.execute(
            "SELECT kind, valid_from, valid_until,"
            " EXISTS (SELECT 1 FROM revoked_credentials WHERE credential_id = :cid)"
            " FROM credentials WHERE credential_id = :cid",
            {"cid": credential_id},
        ).fetchone()
        if row is None:
            return None
        kind, start, end, revoked = row
        return SyncedPass(credential_id, Kind(kind), start, end, bool(revoked))

    def voucher_issued(self, voucher_hash: bytes) -> bool:
        """True if this desk stored an issue for the voucher that was not refused."""
        row = self._reader.execute(
            "SELECT 1 FROM desk_operations WHERE voucher_hash = ? AND state != 'rejected'",
            (voucher_hash,),
        ).fetchone()
        return row is not None

    async def add_desk_operation(
        self, key: str, operation: str, body: bytes, voucher_hash: bytes | None, created_ms: int
    ) -> None:
        """Queue an operation (its key is unique)."""
        await self._transaction(
            [
                (
                    (
                        "INSERT INTO desk_operations (key, operation, body, voucher_hash, state,"
                        " created_at) VALUES (?, ?, ?, ?, 'queued', ?)"
                    ),
                    [(key, operation, body, voucher_hash, created_ms)],
                )
            ]
        )

    def desk_operation(self, key: str) -> DeskOperation | None:
        """An operation by its key."""
        row = self._reader.execute(f"{_OPERATION} WHERE key = ?", (key,)).fetchone()
        return None if row is None else _operation(row)

    def desk_operations(self, limit: int = 20) -> list[DeskOperation]:
        """The latest operations, newest first."""
        rows = self._reader.execute(f"{_OPERATION} ORDER BY seq DESC LIMIT ?", (limit,))
        return [_operation(row) for row in rows]

    def desk_counts(self) -> dict[OpState, int]:
        """Operations per state (states without any are left out)."""
        rows = self._reader.execute("SELECT state, count(*) FROM desk_operations GROUP BY state")
        return {OpState(state): int(count) for state, count in rows}

    def queued_desk_operations(self) -> list[QueuedOperation]:
        """Operations not answered yet, oldest first."""
        rows = self._reader.execute(
            "SELECT seq, operation, body FROM desk_operations WHERE state = 'queued' ORDER BY seq"
        ).fetchall()
        return [QueuedOperation(int(s), str(o), bytes(b)) for s, o, b in rows]

    async def answer_desk_operation(
        self, seq: int, state: OpState, detail: str, sent_ms: int
    ) -> None:
        """Record the central system's answer to an operation."""
        await self._transaction(
            [
                (
                    "UPDATE desk_operations SET state = ?, detail = ?, sent_at = ? WHERE seq = ?",
                    [(state.value, detail, sent_ms, seq)],
                )
            ]
        )
