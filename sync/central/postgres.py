"""The central system on PostgreSQL (asyncpg), for several `edge-central serve` processes.

The parts are synchronous and run on the server's threads (`asyncio.to_thread`), like with
SQLite; asyncpg runs on one private event loop in its own thread, and each call hops to it.
SQL arrives in the shared dialect (`sync.central.connection`): `?` placeholders become `$n`.

Revisions stay gap-free and in commit order with several processes: every write transaction
first takes one transaction-scoped advisory lock, so writers commit one after another (as with
SQLite's BEGIN IMMEDIATE), and a transaction's commit is visible before the lock passes on. A
reader's snapshot therefore always holds a prefix of the log. Commits that appended changes
or changed devices send a NOTIFY on `CHANNEL` whose payload says what (`notice_payload`);
every server LISTENs and pushes (`PostgresNotifier`) without reading the head or the devices
again for each connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import threading
from collections.abc import Awaitable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

import asyncpg

from sync.central.connection import (
    SQL,
    UNKNOWN,
    Connection,
    Notice,
    Notifier,
    SchemaError,
    insert_sql,
)

CHANNEL = "edge_central_changes"
WRITE_LOCK = 0x6564676563  # the advisory lock every write transaction holds ("edgec")
POOL_SIZE = 8
BULK_ROWS = 50_000  # rows per INSERT ... SELECT FROM unnest(...)
RECONNECT_SECONDS = 1.0
CONCATENATE_WORK_MEM = "16MB"  # for the sorts of one snapshot page's aggregates (concatenated)
# A process that vanishes inside a write transaction (its host lost, the VM paused) would hold
# the write lock until TCP notices, hours by default, and stop every write of the others (their
# gates' uploads included). PostgreSQL ends a session idle in a transaction this long instead;
# no transaction here waits that long between two statements.
IDLE_IN_TRANSACTION_SECONDS = 30.0
_LOGGER = logging.getLogger(__name__)
_T = TypeVar("_T")

VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version BIGINT NOT NULL, applied_ms BIGINT NOT NULL
)
"""


def is_dsn(target: str) -> bool:
    """Whether a --db value names a PostgreSQL database rather than a SQLite file."""
    return target.startswith(("postgresql://", "postgres://"))


@functools.lru_cache(maxsize=512)
def placeholders(sql: str) -> str:
    """`?` placeholders as `$1`, `$2`, ...; question marks inside quotes stay."""
    out: list[str] = []
    quoted = False
    n = 0
    for ch in sql:
        if ch == "'":
            quoted = not quoted
        if ch == "?" and not quoted:
            n += 1
            out.append(f"${n}")
        else:
            out.append(ch)
    return "".join(out)


_ROWID = re.compile(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+) \(\s*(\w+) INTEGER PRIMARY KEY\b")


def schema(script: str) -> str:
    """A migration written for SQLite, in PostgreSQL: 64-bit integers, BYTEA for blobs, and
    SQLite's INTEGER PRIMARY KEY behaviour (NULL becomes max + 1) as a trigger."""
    out = re.sub(r"\bINTEGER\b", "BIGINT", script)
    out = re.sub(r"\bBLOB\b", "BYTEA", out)
    out = re.sub(r"\)\s*WITHOUT ROWID", ")", out)
    triggers = []
    for table, column in _ROWID.findall(script):
        triggers.append(
            f"CREATE OR REPLACE FUNCTION {table}_rowid() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN IF NEW.{column} IS NULL THEN"
            f" SELECT coalesce(max({column}), 0) + 1 INTO NEW.{column} FROM {table};"
            " END IF; RETURN NEW; END $$;\n"
            f"DROP TRIGGER IF EXISTS {table}_rowid ON {table};\n"
            f"CREATE TRIGGER {table}_rowid BEFORE INSERT ON {table}"
            f" FOR EACH ROW EXECUTE FUNCTION {table}_rowid();\n"
        )
    return out + "\n" + "".join(triggers)


class _Rows:
    """A statement's rows, read like a sqlite3 cursor."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self._next = 0
        self.rowcount = rowcount

    def fetchone(self) -> Any:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self) -> list[Any]:
        rest = self._rows[self._next :]
        self._next = len(self._rows)
        return rest


def _returns_rows(sql: str) -> bool:
    text = sql.lstrip().upper()
    return text.startswith(("SELECT", "WITH", "VALUES")) or " RETURNING " in text


class _Session:
    """One pooled asyncpg connection, used synchronously from one thread."""

    def __init__(self, owner: PostgresConnection, conn: asyncpg.Connection) -> None:
        self._owner = owner
        self.conn = conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> _Rows:
        query = placeholders(sql)
        if _returns_rows(sql):
            records = self._owner.call(self.conn.fetch(query, *parameters))
            return _Rows([tuple(r) for r in records], len(records))
        status = self._owner.call(self.conn.execute(query, *parameters))
        count = status.rsplit(" ", 1)[-1]
        return _Rows([], int(count) if count.isdigit() else -1)

    def executemany(self, sql: str, parameters: Sequence[Sequence[Any]], /) -> None:
        if parameters:
            self._owner.call(self.conn.executemany(placeholders(sql), parameters))


class PostgresConnection(Connection):
    """A pool of asyncpg connections on a private event loop thread."""

    errors = (asyncpg.PostgresError, OSError)

    def __init__(
        self, dsn: str, *, idle_in_transaction_seconds: float = IDLE_IN_TRANSACTION_SECONDS
    ) -> None:
        self.dsn = dsn
        self._idle_ms = str(int(idle_in_transaction_seconds * 1000))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="central-postgres", daemon=True
        )
        self._thread.start()
        self._local = threading.local()
        self._column_types: dict[str, dict[str, str]] = {}
        try:
            self._pool: asyncpg.Pool = self.call(self._create_pool())
        except BaseException:
            self._stop()
            raise

    async def _create_pool(self) -> asyncpg.Pool:
        # Created on the private loop: the pool binds to the loop it is made in.
        return await asyncpg.create_pool(
            self.dsn,
            min_size=1,
            max_size=POOL_SIZE,
            server_settings={"idle_in_transaction_session_timeout": self._idle_ms},
        )

    def call(self, work: Awaitable[_T]) -> _T:
        """Run a coroutine on the private loop and wait for it."""

        async def run() -> _T:
            return await work

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result()

    def close(self) -> None:
        self.call(self._pool.close())
        self._stop()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def migrate(self, migrations: Sequence[str]) -> int:
        with self.transaction() as conn:
            conn.execute(VERSION_TABLE)
            row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
            version = int(row[0])
            if version > len(migrations):
                raise SchemaError(
                    f"PostgreSQL: schema version {version} is newer than this edge-central"
                    f" knows ({len(migrations)}); install a newer edge-central"
                )
            for number, script in enumerate(migrations[version:], start=version + 1):
                conn.execute(schema(script))  # one simple-protocol call: many statements
                _LOGGER.info("PostgreSQL: migrated schema to version %d", number)
                conn.execute(
                    "INSERT INTO schema_version"
                    " VALUES (?, (extract(epoch FROM now()) * 1000)::bigint)",
                    (number,),
                )
        return version

    @contextmanager
    def _session(self, begin: str) -> Iterator[SQL]:
        current: _Session | None = getattr(self._local, "session", None)
        if current is not None:  # nested in this thread's transaction: the same one
            yield current
            return
        conn = self.call(self._pool.acquire())
        session = _Session(self, conn)
        self._local.session = session
        try:
            self.call(conn.execute(begin))
            try:
                yield session
            except BaseException:
                # A session the server ended (the idle timeout) has rolled back already.
                with contextlib.suppress(asyncpg.InterfaceError):
                    self.call(conn.execute("ROLLBACK"))
                raise
            self.call(conn.execute("COMMIT"))
        finally:
            self._local.session = None
            self.call(self._pool.release(conn))

    def transaction(self) -> AbstractContextManager[SQL]:
        return self._session(f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})")

    def reading(self) -> AbstractContextManager[SQL]:
        return self._session("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def row(self, sql: str, *args: Any) -> Any:
        with self.reading() as conn:
            return conn.execute(sql, args).fetchone()

    def rows(self, sql: str, *args: Any) -> list[Any]:
        with self.reading() as conn:
            return conn.execute(sql, args).fetchall()

    def insert_many(
        self,
        conn: SQL,
        table: str,
        columns: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
        *,
        key: Sequence[str] = (),
    ) -> None:
        # One statement per chunk over unnest()ed arrays: a few times faster than a row each.
        if key:  # one statement may not update a row twice: the last row of a key stands
            width = [columns.index(k) for k in key]
            rows = list({tuple(r[i] for i in width): r for r in rows}.values())
        types = self._types(conn, table)
        arrays = ", ".join(f"${n}::{types[c]}[]" for n, c in enumerate(columns, start=1))
        sql = insert_sql(table, columns, key, f"SELECT * FROM unnest({arrays})")
        if not isinstance(conn, _Session):
            raise TypeError("insert_many runs in a transaction of its PostgresConnection")
        for start in range(0, len(rows), BULK_ROWS):
            chunk = rows[start : start + BULK_ROWS]
            self.call(conn.conn.execute(sql, *[list(c) for c in zip(*chunk, strict=True)]))

    def _types(self, conn: SQL, table: str) -> dict[str, str]:
        known = self._column_types.get(table)
        if known is None:
            known = dict(
                conn.execute(
                    "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
                    " WHERE attrelid = ?::regclass AND attnum > 0 AND NOT attisdropped",
                    (table,),
                ).fetchall()
            )
            self._column_types[table] = known
        return known

    def concatenated(
        self, conn: SQL, sql: str, args: Sequence[Any], keys: Sequence[str], blob: str
    ) -> tuple[int, bytes, tuple[Any, ...] | None]:
        if len(keys) != 1:
            return super().concatenated(conn, sql, args, keys, blob)
        # Joined by the server: one row comes back instead of a Python object per row. The
        # aggregates sort their page (a bootstrap chunk: 2.5-3.5 MB), which spills to temporary
        # files at PostgreSQL's default work_mem of 4 MB.
        conn.execute(f"SET LOCAL work_mem = '{CONCATENATE_WORK_MEM}'")
        (key,) = keys
        row = conn.execute(
            f"SELECT count(*), string_agg({blob}, ''::bytea ORDER BY {key}),"
            f" (array_agg({key} ORDER BY {key}))[count(*)] FROM ({sql}) AS page",
            args,
        ).fetchone()
        if row is None or not row[0]:
            return 0, b"", None
        return int(row[0]), bytes(row[1] or b""), (row[2],)

    def announce(self, conn: SQL, notice: Notice) -> None:
        conn.execute("SELECT pg_notify(?, ?)", (CHANNEL, notice_payload(notice)))

    def notifier(self) -> Notifier:
        return PostgresNotifier(self.dsn)


def notice_payload(notice: Notice) -> str:
    """A notice as a NOTIFY payload: `head=N` and/or `devices`."""
    words = [] if notice.head is None else [f"head={notice.head}"]
    return " ".join([*words, "devices"] if notice.devices else words)


def parse_notice(payload: str) -> Notice:
    """A NOTIFY payload as a notice; one it cannot read (an older server's empty one, say)
    means anything may have changed."""
    head, devices = None, False
    for word in payload.split():
        if word == "devices":
            devices = True
        elif word.startswith("head=") and word[5:].isdigit() and len(word) <= 24:
            head = int(word[5:])
        else:
            return UNKNOWN
    if head is None and not devices:
        return UNKNOWN
    return Notice(head, devices)


class PostgresNotifier(Notifier):
    """LISTENs on its own connection in the server's loop; reconnects when it drops."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._event = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._pending: Notice | None = None  # what the notices since the last wait said

    def _note(self, notice: Notice) -> None:
        self._pending = notice if self._pending is None else self._pending.merge(notice)
        self._event.set()

    async def __aenter__(self) -> PostgresNotifier:
        await self._listen()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._conn is not None:
            await self._conn.close()

    async def _listen(self) -> None:
        self._conn = await asyncpg.connect(self._dsn)
        await self._conn.add_listener(CHANNEL, self._notified)
        self._conn.add_termination_listener(self._lost)

    def _notified(self, conn: object, pid: object, channel: object, payload: object) -> None:
        del conn, pid, channel
        self._note(parse_notice(payload) if isinstance(payload, str) else UNKNOWN)

    def _lost(self, *args: object) -> None:
        del args
        self._conn = None
        self._note(UNKNOWN)

    async def wait(self) -> Notice:
        while self._conn is None:
            try:
                await self._listen()
            except (OSError, asyncpg.PostgresError) as err:
                _LOGGER.warning("LISTEN on PostgreSQL failed (%s); retrying", err)
                await asyncio.sleep(RECONNECT_SECONDS)
                continue
            self._note(UNKNOWN)  # changes may have been missed while away: look
        await self._event.wait()
        self._event.clear()
        notice, self._pending = self._pending or UNKNOWN, None
        return notice
