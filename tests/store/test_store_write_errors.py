"""A failing write (full disk, I/O error) surfaces as StoreError and changes nothing."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.core.decide import Reason
from edge.core.errors import StoreError
from edge.core.facts import Direction, Revocation
from edge.store.database import Store
from edge.store.gate import JournalEntry


def _fail_inserts_into(db: Path, table: str) -> None:
    # A trigger makes SQLite itself fail the statement, as a full disk would, mid-transaction.
    conn = sqlite3.connect(db)
    conn.execute(
        f"CREATE TRIGGER fail_{table} BEFORE INSERT ON {table} "
        "BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END"
    )
    conn.commit()
    conn.close()


async def test_failed_journal_write_is_a_store_error_and_rolls_back(tmp_path: Path) -> None:
    db = tmp_path / "edge.db"
    store = await Store.open(db)
    try:
        _fail_inserts_into(tmp_path / "edge.journal.db", "entries")
        entry = JournalEntry(
            datetime.now(UTC), "lane", Direction.ENTRY, Reason.ADMITTED, 5, b"h" * 16, "…1234"
        )
        with pytest.raises(StoreError, match="write failed: database or disk is full"):
            await store.record(entry)
        assert store.recent() == []  # the journal row of the failed transaction is gone too
        await store.revoke_codes([(b"x" * 16, Revocation.REVOKED)])  # the store still works
        assert store.stats().revoked_codes == 1
    finally:
        await store.close()


async def test_failed_bulk_write_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "edge.db"
    store = await Store.open(db)
    try:
        _fail_inserts_into(db, "plain_codes")
        with pytest.raises(StoreError):
            await store.put_credentials([], plain_codes=[(b"p" * 16, 1)])
        await store.revoke_codes([(bytes([i]) * 16, Revocation.REVOKED) for i in range(3)])
        assert store.stats().revoked_codes == 3
        assert store.stats().plain_codes == 0
    finally:
        await store.close()
