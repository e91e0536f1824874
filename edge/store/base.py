"""The store's base: its two connections, the single write path and the migrations.

Reads go through a direct sqlite3 connection on the event loop's thread (one prepared
statement, ~10 µs); every write is a job for the store's writer thread (edge/store/writer.py):
journal records urgent and group-committed, everything else in bounded bulk parts, each
durable (synchronous=FULL) before its call returns. Only the owner modules of this package use
`_reader`, `_urgent` and `_bulk`; nothing outside `edge/store/` runs SQL on the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self, TypeVar
from urllib.parse import quote

from edge.core.errors import StoreError, StoreRefusedError
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


def statements(script: str) -> list[str]:
    """The SQL statements of a migration script, one by one (comments may hold semicolons)."""
    found, pending = [], ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n\t;"):
                found.append(pending.strip())
            pending = ""
    if pending.strip(" \n\t;"):
        raise ValueError(f"an incomplete statement ends the migration: {pending.strip()[:60]!r}")
    return found


def _migrate(conn: sqlite3.Connection, path: str) -> int:
    """Bring the file to the current schema in one write transaction; returns the version it had.

    The version is read inside that transaction (BEGIN IMMEDIATE takes the write lock first),
    so when several processes open a file at once, one migrates and the others see its result.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        (found,) = conn.execute("PRAGMA user_version").fetchone()
        if found > schema.VERSION:
            raise StoreError(
                f"{path}: schema version {found} is newer than this edge understands "
                f"({schema.VERSION}); install a newer edge"
            )
        for number in range(found + 1, schema.VERSION + 1):
            for statement in statements(schema.MIGRATIONS[number - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    if found < schema.VERSION:
        _LOGGER.info("%s: migrated schema from version %d to %d", path, found, schema.VERSION)
    return int(found)


def _kept_name(path: str) -> str:
    """Where `edge init` moves a file it replaces: beside it, named for the time."""
    return f"{path}.replaced-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def _create(path: str) -> bool:
    """Create a store at `path` whole: built under a temporary name, then linked in place.

    A file at `path` is therefore always a migrated store; returns False if another process
    linked its new store first (then that one is used).
    """
    temporary = f"{path}.new-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        conn = sqlite3.connect(temporary, isolation_level=None)
    except sqlite3.Error as err:
        raise StoreError(f"{path}: cannot create the store: {err}") from err
    try:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            _migrate(conn, path)
        finally:
            conn.close()  # the last connection checkpoints: the file alone holds everything
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        except OSError as err:
            raise StoreError(f"{path}: cannot create the store: {err.strerror}") from err
        directory = os.open(Path(path).parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        _LOGGER.info("%s: created a new store (schema version %d)", path, schema.VERSION)
        return True
    except sqlite3.Error as err:
        raise StoreError(f"{path}: cannot create the store: {err}") from err
    finally:
        for leftover in (temporary, f"{temporary}-wal", f"{temporary}-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(leftover).unlink()


def _refuse_if_not_a_store(conn: sqlite3.Connection, path: str) -> None:
    """A file that exists but holds no edge schema (0 bytes, a bare header) is never re-created.

    Such a file is what a lost or truncated store looks like; starting it afresh would forget
    every ticket used here and admit them again. Only `edge init` replaces it.
    """
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version != 0:
        return
    (tables,) = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    size = Path(path).stat().st_size
    what = "is empty (0 bytes)" if size == 0 else f"holds no edge schema ({tables} tables)"
    raise StoreRefusedError(
        f"{path}: the store file {what}: it was lost, truncated or is another program's file, "
        "and a new store would forget every entry recorded here (tickets already used would "
        "be admitted again). Restore it from a backup, or run `edge init --config FILE` to "
        "start an empty store (the old file is kept beside it)"
    )


def _prepare(path: str) -> None:
    """Open the store (creating it if no file is there), switch to WAL, migrate (blocking)."""
    if not os.path.lexists(path):
        _create(path)  # or another process just did
    try:
        conn = sqlite3.connect(f"file:{quote(path)}?mode=rw", isolation_level=None, uri=True)
    except sqlite3.Error as err:
        raise StoreError(f"{path}: cannot open the store: {err}") from err
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _refuse_if_not_a_store(conn, path)
        (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode != "wal":
            raise StoreError(f"{path}: cannot switch to WAL mode (journal mode is {mode})")
        _migrate(conn, path)
    except sqlite3.DatabaseError as err:
        raise StoreError(f"{path}: not a usable edge store: {err}") from err
    finally:
        conn.close()


def initialise(path: str | Path) -> str | None:
    """Start an empty store at `path` (blocking); returns where a replaced file was kept.

    A file that already is an edge store is refused (StoreError): only a missing, empty or
    unusable file is replaced, and it is moved aside with its -wal and -shm, never deleted.
    """
    path = str(path)
    if os.path.lexists(path):
        try:
            conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True)
            try:
                (version,) = conn.execute("PRAGMA user_version").fetchone()
            finally:
                conn.close()
        except sqlite3.Error:
            version = 0  # not a database at all: replaced like an empty one
        if version != 0:
            raise StoreError(
                f"{path}: already an edge store (schema version {version}); nothing to initialise"
            )
        kept = _kept_name(path)
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(path + suffix).rename(kept + suffix)
        _LOGGER.warning("%s: moved the unusable store file to %s", path, kept)
    else:
        kept = None
    if not _create(path):
        raise StoreError(f"{path}: another process created a store here at the same time")
    return kept


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

    def _read_here(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        """All rows of a read on a connection of its own, for a worker thread: long reads
        (a full scan of 50,000 rows takes ~0.1 s) leave the loop and the scan path's reader."""
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA query_only = ON")
            return conn.execute(sql, parameters).fetchall()
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
