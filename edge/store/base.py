"""The store's base: its two connections, the single write path and the migrations.

Reads go through a direct sqlite3 connection on the event loop's thread (one prepared
statement, ~10 µs); every write goes through aiosqlite, off the loop, one transaction per
call, durable (synchronous=FULL) before the call returns. Only the owner modules of this
package use `_reader` and `_write`; nothing outside `edge/store/` runs SQL on the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import aiosqlite

from edge.core.errors import StoreError
from edge.core.facts import Revocation
from edge.store import schema

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

    def __init__(self, path: str, reader: sqlite3.Connection, writer: aiosqlite.Connection) -> None:
        self.path = path
        self._reader = reader
        self._writer = writer
        # One writer connection: transactions of concurrent callers (two lanes, sync) must
        # not interleave on it, or one caller's BEGIN/ROLLBACK lands in the other's.
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | Path) -> Self:
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
