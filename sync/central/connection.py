"""The central system's one SQLite connection, shared by every part of its database."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

BUSY_TIMEOUT_MS = 10_000


class Connection:
    """One SQLite connection behind one lock; safe to share between threads."""

    def __init__(self, path: str, schema: str) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = FULL")
        self._conn.executescript(schema)
        self._lock = threading.RLock()

    def close(self) -> None:
        """Close the file."""
        self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection under the lock, for reads that must see one state."""
        with self._lock:
            yield self._conn

    def row(self, sql: str, *args: Any) -> Any:
        """The first row of a query, or None."""
        with self._lock:
            return self._conn.execute(sql, args).fetchone()

    def rows(self, sql: str, *args: Any) -> list[Any]:
        """Every row of a query."""
        with self._lock:
            return self._conn.execute(sql, args).fetchall()
