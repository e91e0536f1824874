"""The store's base: its two files, their connections, the write paths and the migrations.

A store is two SQLite files: the main file (edge.db: the synced facts, cursors, print and desk
queues, pretix's positions) and its journal file (edge.journal.db: the journal, the passages
per credential, the central system's answers). Each has its own write lock and WAL, so a
lane's journal record never waits for a bulk write's transaction (a bootstrap part's fsync
took 5-180 ms with the lock held), and its fsync carries only its own pages.

Reads go through one direct sqlite3 connection on the event loop's thread that sees both files
(the journal file attached; one prepared statement, ~10 µs). Every write is a job for one
file's writer thread (edge/store/writer.py): journal records urgent and group-committed on the
journal file's, everything else in bounded bulk parts, each durable (synchronous=FULL) before
its call returns. A write transaction never spans both files. Only the owner modules of this
package use `_reader`, `_urgent`, `_bulk` and `_journal_bulk`; nothing outside `edge/store/`
runs SQL on the store.
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


JOURNAL_SCHEMA = "journal_file"  # the journal file's name on connections that attach it


def journal_path(path: str) -> str:
    """The journal file of the store at `path`: edge.db -> edge.journal.db."""
    store = Path(path)
    return str(store.with_name(f"{store.stem}.journal{store.suffix or '.db'}"))


def _migrate(
    conn: sqlite3.Connection,
    path: str,
    migrations: Sequence[str] = schema.MIGRATIONS,
    upto: int | None = None,
) -> int:
    """Bring the file to version `upto` (default: the last of `migrations`) in one write
    transaction; returns the version it had.

    The version is read inside that transaction (BEGIN IMMEDIATE takes the write lock first),
    so when several processes open a file at once, one migrates and the others see its result.
    """
    latest = len(migrations)
    target = latest if upto is None else upto
    conn.execute("BEGIN IMMEDIATE")
    try:
        (found,) = conn.execute("PRAGMA user_version").fetchone()
        if found > latest:
            raise StoreError(
                f"{path}: schema version {found} is newer than this edge understands "
                f"({latest}); install a newer edge"
            )
        for number in range(found + 1, target + 1):
            for statement in statements(migrations[number - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    if found < target:
        _LOGGER.info("%s: migrated schema from version %d to %d", path, found, target)
    return int(found)


def _kept_name(path: str) -> str:
    """Where `edge init` moves a file it replaces: beside it, named for the time."""
    return f"{path}.replaced-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def _create(path: str, migrations: Sequence[str] = schema.MIGRATIONS) -> bool:
    """Create a store file at `path` whole: built under a temporary name, then linked in place.

    A file at `path` is therefore always a migrated store file; returns False if another
    process linked its new file first (then that one is used).
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
            _migrate(conn, path, migrations)
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
        _LOGGER.info("%s: created a new store file (schema version %d)", path, len(migrations))
        return True
    except sqlite3.Error as err:
        raise StoreError(f"{path}: cannot create the store: {err}") from err
    finally:
        for leftover in (temporary, f"{temporary}-wal", f"{temporary}-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(leftover).unlink()


def _refuse_if_not_a_store(conn: sqlite3.Connection, path: str, what: str = "store") -> None:
    """A file that exists but holds no edge schema (0 bytes, a bare header) is never re-created.

    Such a file is what a lost or truncated store looks like; starting it afresh would forget
    every ticket used here and admit them again. Only `edge init` replaces it.
    """
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version != 0:
        return
    (tables,) = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    size = Path(path).stat().st_size
    state = "is empty (0 bytes)" if size == 0 else f"holds no edge schema ({tables} tables)"
    raise StoreRefusedError(
        f"{path}: the {what} file {state}: it was lost, truncated or is another program's file, "
        f"and a new {what} would forget every entry recorded here (tickets already used would "
        f"be admitted again). Restore it from a backup, or run `edge init --config FILE` to "
        f"start an empty {what} (the old file is kept beside it)"
    )


def _open_file(path: str, what: str) -> sqlite3.Connection:
    """A connection to an existing store file, in WAL mode; StoreError if it is not one."""
    try:
        conn = sqlite3.connect(f"file:{quote(path)}?mode=rw", isolation_level=None, uri=True)
    except sqlite3.Error as err:
        raise StoreError(f"{path}: cannot open the {what}: {err}") from err
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _refuse_if_not_a_store(conn, path, what)
        (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode != "wal":
            raise StoreError(f"{path}: cannot switch to WAL mode (journal mode is {mode})")
    except sqlite3.DatabaseError as err:
        conn.close()
        raise StoreError(f"{path}: not a usable edge {what}: {err}") from err
    except BaseException:
        conn.close()
        raise
    return conn


def _prepare(path: str) -> None:
    """Open the store's two files (creating them if no main file is there), switch them to
    WAL and migrate them, moving the journal out of a main file older than the split
    (blocking)."""
    journal = journal_path(path)
    if not os.path.lexists(path):
        if not os.path.lexists(journal):
            _create(journal, schema.JOURNAL_MIGRATIONS)  # or another process just did
        _create(path)  # the same
    conn = _open_file(path, "store")
    try:
        found = _migrate(conn, path, upto=schema.JOURNAL_MOVED - 1)
        if found < schema.JOURNAL_MOVED:  # the journal is in the main file: copy it over
            if not os.path.lexists(journal):
                _create(journal, schema.JOURNAL_MIGRATIONS)
            _prepare_journal(journal)
            _move_journal(path, journal)
        if found < schema.VERSION:  # a current file: no second write transaction
            _migrate(conn, path)
    except sqlite3.DatabaseError as err:
        raise StoreError(f"{path}: not a usable edge store: {err}") from err
    finally:
        conn.close()
    if found < schema.JOURNAL_MOVED:
        return  # its journal file was prepared for the move
    if not os.path.lexists(journal):
        raise StoreRefusedError(
            f"{journal}: the store's journal file is missing: it holds every entry recorded "
            "here, and a new one would forget them (tickets already used would be admitted "
            "again). Restore it from a backup, or run `edge init --config FILE` to start an "
            "empty journal"
        )
    _prepare_journal(journal)


def _prepare_journal(journal: str) -> None:
    conn = _open_file(journal, "journal")
    try:
        _migrate(conn, journal, schema.JOURNAL_MIGRATIONS)
    except sqlite3.DatabaseError as err:
        raise StoreError(f"{journal}: not a usable edge journal: {err}") from err
    finally:
        conn.close()


def _move_journal(path: str, journal: str) -> None:
    """Copy the journal's tables of a main file older than the split into the journal file.

    Once: the copy and the check run in one write transaction of both files, and a journal
    file that holds rows already (another process copied them, or this copy committed before
    a crash) gets nothing. The main file's migration drops the tables afterwards.
    """
    conn = sqlite3.connect(journal, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("ATTACH DATABASE ? AS old", (path,))
        conn.execute("BEGIN IMMEDIATE")
        try:
            copied = any(
                conn.execute(f"SELECT 1 FROM main.{table} LIMIT 1").fetchone()
                for table in schema.JOURNAL_TABLES
            )
            held = conn.execute(
                "SELECT 1 FROM old.sqlite_master WHERE type = 'table' AND name = 'journal'"
            ).fetchone()
            rows = 0
            if held and not copied:
                for table in schema.JOURNAL_TABLES:
                    columns = ", ".join(
                        str(row[1]) for row in conn.execute(f"PRAGMA main.table_info({table})")
                    )
                    rows += conn.execute(
                        f"INSERT INTO main.{table} ({columns}) SELECT {columns} FROM old.{table}"
                    ).rowcount
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        if rows:
            _LOGGER.info("%s: moved %d journal and passage rows to %s", path, rows, journal)
    except sqlite3.Error as err:
        raise StoreError(f"{path}: cannot move the journal to {journal}: {err}") from err
    finally:
        conn.close()


def file_version(path: str) -> int | None:
    """The schema version of a file: None if there is none, 0 if it holds no edge schema."""
    if not os.path.lexists(path):
        return None
    try:
        conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True)
        try:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return 0  # not a database at all: replaced like an empty one
    return int(version)


def _keep_aside(path: str, what: str) -> str:
    """Move an unusable file (with its -wal and -shm) aside, never deleting it."""
    kept = _kept_name(path)
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(path + suffix).rename(kept + suffix)
    _LOGGER.warning("%s: moved the unusable %s file to %s", path, what, kept)
    return kept


def initialise(path: str | Path) -> str | None:
    """Start an empty store at `path` (blocking); returns where a replaced file was kept.

    A store whose files are both usable is refused (StoreError): only a missing, empty or
    unusable file is replaced (the main file, or the journal file of a usable main file), and
    it is moved aside with its -wal and -shm, never deleted. A usable journal file stays: it
    holds the entries recorded here.
    """
    path = str(path)
    journal = journal_path(path)
    main, journaled = file_version(path), file_version(journal)
    if main and (journaled or (journaled is None and main < schema.JOURNAL_MOVED)):
        raise StoreError(
            f"{path}: already an edge store (schema version {main}); nothing to initialise"
        )
    kept = _keep_aside(path, "store") if main == 0 else None
    if journaled == 0:
        kept_journal = _keep_aside(journal, "journal")
        kept = kept or kept_journal
    if not journaled and not _create(journal, schema.JOURNAL_MIGRATIONS):
        raise StoreError(f"{journal}: another process created a journal here at the same time")
    if not main and not _create(path):
        raise StoreError(f"{path}: another process created a store here at the same time")
    return kept


def _reader(path: str, journal: str) -> sqlite3.Connection:
    """A read-only connection that sees both files (the journal file attached); neither file
    is created if it is missing."""
    reader = sqlite3.connect(
        f"file:{quote(path)}?mode=rw", isolation_level=None, check_same_thread=False, uri=True
    )
    try:
        reader.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        reader.execute(
            f"ATTACH DATABASE ? AS {JOURNAL_SCHEMA}", (f"file:{quote(journal)}?mode=rw",)
        )
        reader.execute("PRAGMA query_only = ON")
    except BaseException:
        reader.close()
        raise
    return reader


class StoreBase:
    """The connections and the write paths; `await <class>.open(path)`, then `close()`."""

    def __init__(
        self, path: str, reader: sqlite3.Connection, writer: Writer, journal: Writer
    ) -> None:
        self.path = path
        self.journal_path = journal.path
        self._reader = reader
        self._writer = writer  # the main file's
        self._journal = journal  # the journal file's

    @classmethod
    async def open(cls, path: str | Path) -> Self:
        """Open (creating and migrating as needed) the store at `path`."""
        path = str(path)
        journal_file = journal_path(path)
        started = time.monotonic()
        await asyncio.to_thread(_prepare, path)
        writer = Writer(path)
        try:
            journal = Writer(journal_file)
        except BaseException:
            await writer.close()
            raise
        try:
            reader = _reader(path, journal_file)
        except BaseException:
            await writer.close()
            await journal.close()
            raise
        writer.start()
        journal.start()
        _LOGGER.info("%s: store open in %.0f ms", path, (time.monotonic() - started) * 1000)
        return cls(path, reader, writer, journal)

    async def close(self) -> None:
        """Finish pending writes, then close every connection."""
        self._reader.close()
        await self._journal.close()
        await self._writer.close()

    def _read_here(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        """All rows of a read on a connection of its own, for a worker thread: long reads
        (a full scan of 50,000 rows takes ~0.1 s) leave the loop and the scan path's reader."""
        try:
            conn = _reader(self.path, self.journal_path)
        except sqlite3.Error as err:
            raise StoreError(f"{self.path}: read failed: {err}") from err
        try:
            return conn.execute(sql, parameters).fetchall()
        except sqlite3.Error as err:
            raise StoreError(f"{self.path}: read failed: {err}") from err
        finally:
            conn.close()

    async def _urgent(self, job: Job[T]) -> T:
        """A journal record (journal file): ahead of its bulk work, group-committed, never
        behind the main file's writes; StoreError on failure."""
        return await self._journal.urgent(job)

    async def _bulk(self, job: Job[T]) -> T:
        """One bounded write transaction of the main file; StoreError on failure, and nothing
        changed."""
        return await self._writer.bulk(job)

    async def _journal_bulk(self, job: Job[T], *, durable: bool = True) -> T:
        """One bounded write transaction of the journal file (passages, upload marks), after
        any waiting record; StoreError on failure, and nothing changed. Not `durable`: see
        Writer.bulk."""
        return await self._journal.bulk(job, durable=durable)

    async def _transaction(
        self,
        statements: Sequence[tuple[str, Iterable[Sequence[Any]]]],
        *,
        journal: bool = False,
    ) -> None:
        """Run executemany for each (sql, rows) in one bulk transaction (of the journal file
        with `journal`)."""
        materialized = [(sql, list(rows)) for sql, rows in statements]

        def run(conn: sqlite3.Connection) -> None:
            for sql, rows in materialized:
                conn.executemany(sql, rows)

        await (self._journal_bulk(run) if journal else self._bulk(run))
