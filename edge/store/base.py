"""The store's base: its two connections, the single write path and the migrations.

Reads go through a direct sqlite3 connection on the event loop's thread (one prepared
statement, ~10 µs); every write is a job for the store's writer thread (edge/store/writer.py):
journal records urgent and group-committed, everything else in bounded bulk parts, each
durable (synchronous=FULL) before its call returns. Only the owner modules of this package use
`_reader`, `_urgent` and `_bulk`; nothing outside `edge/store/` runs SQL on the store.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self, TypeVar

from edge.core.errors import StoreError
from edge.core.facts import Revocation
from edge.store import schema
from edge.store.writer import Job, Writer

T = TypeVar("T")

_LOGGER = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000  # another process (edge check, edge import) may hold the write lock
REVOCATION_CODES = {Revocation.REVOKED: 1, Revocation.REPLACED: 2, Revocation.CANCELLED: 3}
REVOCATIONS = {number: revocation for revocation, number in REVOCATION_CODES.items()}


def to_ms(moment: datetime) -> int:
    """Unix milliseconds of an aware datetime."""
    return int(moment.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    """Aware UTC datetime of unix milliseconds."""
    return datetime.fromtimestamp(ms / 1000, UTC)


def now_ms() -> int:
    """The wall clock in unix milliseconds."""
    return to_ms(datetime.now(UTC))


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


class StoreBase:
    """The connections and the write path; `await <class>.open(path)`, then `close()`."""

    def __init__(self, path: str, reader: sqlite3.Connection, writer: Writer) -> None:
        self.path = path
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, path: str | Path) -> Self:
        """Open (creating and migrating as needed) the store at `path`."""
        path = str(path)
        started = time.monotonic()
        await asyncio.to_thread(_prepare, path)
        writer = Writer(path)
        try:
            reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            reader.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            reader.execute("PRAGMA query_only = ON")
        except BaseException:
            await writer.close()
            raise
        writer.start()
        _LOGGER.info("%s: store open in %.0f ms", path, (time.monotonic() - started) * 1000)
        return cls(path, reader, writer)

    async def close(self) -> None:
        """Finish pending writes, then close both connections."""
        self._reader.close()
        await self._writer.close()

    def _read_here(self, sql: str) -> list[Any]:
        """All rows of a read on a connection of its own, for a worker thread: long reads
        (a full scan of 50,000 rows takes ~0.1 s) leave the loop and the scan path's reader."""
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA query_only = ON")
            return conn.execute(sql).fetchall()
        except sqlite3.Error as err:
            raise StoreError(f"{self.path}: read failed: {err}") from err
        finally:
            conn.close()

    async def _urgent(self, job: Job[T]) -> T:
        """A journal write: ahead of bulk work, group-committed; StoreError on failure."""
        return await self._writer.urgent(job)

    async def _bulk(self, job: Job[T]) -> T:
        """One bounded write transaction; StoreError on failure, and nothing changed."""
        return await self._writer.bulk(job)

    async def _transaction(self, statements: Sequence[tuple[str, Iterable[Sequence[Any]]]]) -> None:
        """Run executemany for each (sql, rows) in one bulk transaction."""
        materialized = [(sql, list(rows)) for sql, rows in statements]

        def run(conn: sqlite3.Connection) -> None:
            for sql, rows in materialized:
                conn.executemany(sql, rows)

        await self._bulk(run)
