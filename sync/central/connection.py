"""The central system's one SQLite connection, shared by every part of its database."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sync.central.errors import CentralError

_LOGGER = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000


class SchemaError(CentralError):
    """The file's schema is newer than this edge-central knows."""


def _statements(script: str) -> list[str]:
    """A migration script's statements one by one (comments may hold semicolons)."""
    found, pending = [], ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n\t;"):
                found.append(pending.strip())
            pending = ""
    return found


def migrate(conn: sqlite3.Connection, path: str, migrations: Sequence[str]) -> int:
    """Apply the migrations the file lacks in one write transaction; returns its old version.

    `PRAGMA user_version` counts the migrations applied. It is read after BEGIN IMMEDIATE has
    the write lock, so of several processes opening one file at once exactly one migrates.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        (found,) = conn.execute("PRAGMA user_version").fetchone()
        if found > len(migrations):
            raise SchemaError(
                f"{path}: schema version {found} is newer than this edge-central knows "
                f"({len(migrations)}); install a newer edge-central"
            )
        for number in range(found + 1, len(migrations) + 1):
            for statement in _statements(migrations[number - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    if found < len(migrations):
        _LOGGER.info("%s: migrated schema from version %d to %d", path, found, len(migrations))
    return int(found)


class Connection:
    """One SQLite connection behind one lock; safe to share between threads."""

    def __init__(self, path: str, migrations: Sequence[str]) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            migrate(self._conn, path, migrations)
        except BaseException:
            self._conn.close()
            raise
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
