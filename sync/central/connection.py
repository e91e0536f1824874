"""The central system's database connection, shared by every part of its database.

The parts write their SQL once, in the dialect SQLite and PostgreSQL share: `?` placeholders,
`INSERT ... ON CONFLICT`, `RETURNING`, integer keys that are filled in as max + 1 when
inserted as NULL. `Connection` is that seam; `SqliteConnection` is the embedded default and
`sync.central.postgres.PostgresConnection` the production backend. Write transactions are
serialised in both (SQLite: BEGIN IMMEDIATE; PostgreSQL: one advisory lock), so revisions
commit in their order and a reader never sees a later revision before an earlier one.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from sync.central.errors import CentralError

_LOGGER = logging.getLogger(__name__)
BUSY_TIMEOUT_MS = 10_000
WATCH_INTERVAL = 0.02  # seconds between SQLite checks for commits by other processes


class SchemaError(CentralError):
    """The database's schema is newer than this edge-central knows."""


class Rows(Protocol):
    """What a statement answers: its rows and how many it changed."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class SQL(Protocol):
    """A connection inside a transaction, as the parts use it."""

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Rows: ...

    def executemany(self, sql: str, parameters: Sequence[Sequence[Any]], /) -> Any: ...


@dataclass(frozen=True, slots=True)
class Notice:
    """What commits since the last notice changed, as far as the notifier knows: the server
    re-reads only what it must, once per notice, not once per connection."""

    head: int | None = None  # the change log's head after them (None: unknown, read it)
    devices: bool = True  # devices may have been removed, moved or bootstrapped again

    def merge(self, other: Notice) -> Notice:
        """This notice and a later one, as one (an unknown head stays unknown)."""
        head = None if self.head is None or other.head is None else max(self.head, other.head)
        return Notice(head, self.devices or other.devices)


UNKNOWN = Notice()  # anything may have changed


class Notifier(abc.ABC):
    """Wakes the server when any process may have committed changes."""

    async def __aenter__(self) -> Notifier:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        del kind, err, tb

    @abc.abstractmethod
    async def wait(self) -> Notice:
        """Return once another commit may have happened: what it changed."""


class Connection(abc.ABC):
    """The database behind the parts; safe to share between threads."""

    # A database error that is the operator's or the input's, not a bug (the CLI reports it).
    errors: tuple[type[Exception], ...] = (sqlite3.Error,)

    @abc.abstractmethod
    def close(self) -> None:
        """Close the connection."""

    @abc.abstractmethod
    def migrate(self, migrations: Sequence[str]) -> int:
        """Bring the schema to version len(migrations) (migration i leads to version i + 1);
        returns the version it was at."""

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[SQL]:
        """One write transaction, serialised with every other writer: committed when the block
        ends, rolled back if it raises."""

    @abc.abstractmethod
    def reading(self) -> AbstractContextManager[SQL]:
        """A connection for reads that must see one state."""

    @abc.abstractmethod
    def row(self, sql: str, *args: Any) -> Any:
        """The first row of a query, or None."""

    @abc.abstractmethod
    def rows(self, sql: str, *args: Any) -> list[Any]:
        """Every row of a query."""

    @abc.abstractmethod
    def insert_many(
        self,
        conn: SQL,
        table: str,
        columns: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
        *,
        key: Sequence[str] = (),
    ) -> None:
        """Insert rows in the caller's transaction; with `key`, a row whose key exists
        replaces the other columns (of rows with one key, the last stands)."""

    def concatenated(
        self, conn: SQL, sql: str, args: Sequence[Any], keys: Sequence[str], blob: str
    ) -> tuple[int, bytes, tuple[Any, ...] | None]:
        """Of a query whose rows are its `keys` columns and then a `blob`, in key order: how
        many rows, their blobs one after another, and the last row's key (None: no rows)."""
        rows = conn.execute(sql, args).fetchall()
        if not rows:
            return 0, b"", None
        width = len(keys)
        return len(rows), b"".join(r[width] for r in rows), tuple(rows[-1][:width])

    @abc.abstractmethod
    def announce(self, conn: SQL, notice: Notice) -> None:
        """Tell every server, when this transaction commits, what it changed: the change
        log's new head, or the devices (`notice` says which)."""

    @abc.abstractmethod
    def notifier(self) -> Notifier:
        """A notifier for the calling event loop."""


class SqliteConnection(Connection):
    """One SQLite connection behind one lock."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = FULL")
        self._lock = threading.RLock()

    def close(self) -> None:
        self._conn.close()

    def migrate(self, migrations: Sequence[str]) -> int:
        with self.transaction() as conn:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version > len(migrations):
                raise SchemaError(
                    f"{self.path}: schema version {version} is newer than this edge-central"
                    f" knows ({len(migrations)}); install a newer edge-central"
                )
            for number in range(version + 1, len(migrations) + 1):
                for statement in statements(migrations[number - 1]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
        if version < len(migrations):
            _LOGGER.info("%s: migrated schema from version %d to %d", self.path, version,
                         len(migrations))  # fmt: skip
        return int(version)

    @contextmanager
    def transaction(self) -> Iterator[SQL]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def reading(self) -> Iterator[SQL]:
        with self._lock:
            yield self._conn

    def row(self, sql: str, *args: Any) -> Any:
        with self._lock:
            return self._conn.execute(sql, args).fetchone()

    def rows(self, sql: str, *args: Any) -> list[Any]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def insert_many(
        self,
        conn: SQL,
        table: str,
        columns: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
        *,
        key: Sequence[str] = (),
    ) -> None:
        if rows:
            conn.executemany(insert_sql(table, columns, key), rows)

    def announce(self, conn: SQL, notice: Notice) -> None:
        del conn, notice  # other processes see PRAGMA data_version move

    def notifier(self) -> Notifier:
        return _DataVersion(self)

    def data_version(self) -> int:
        """Moves when another connection commits."""
        return int(self.row("PRAGMA data_version")[0])


class _DataVersion(Notifier):
    """SQLite has no notifications: poll its data_version (which says only that something
    changed)."""

    def __init__(self, connection: SqliteConnection) -> None:
        self._connection = connection
        self._version = connection.data_version()

    async def wait(self) -> Notice:
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            version = self._connection.data_version()
            if version != self._version:
                self._version = version
                return UNKNOWN


def insert_sql(table: str, columns: Sequence[str], key: Sequence[str], values: str = "") -> str:
    """INSERT of one row (or of `values`), as an upsert on `key` if given."""
    marks = values or f"VALUES ({', '.join('?' * len(columns))})"
    sql = f"INSERT INTO {table} ({', '.join(columns)}) {marks}"
    if key:
        others = [c for c in columns if c not in key]
        sets = ", ".join(f"{c} = excluded.{c}" for c in others)
        sql += f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}"
    return sql


def statements(script: str) -> list[str]:
    """A migration script's statements one by one (comments may hold semicolons)."""
    found, pending = [], ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n\t;"):
                found.append(pending.strip())
            pending = ""
    return found
