"""What both of the central system's backends (SQLite, PostgreSQL) must keep alike: revisions in
commit order with several writers, and versioned schema migrations."""

from __future__ import annotations

import hashlib
import threading

import pytest

from sync import protocol
from sync.central.connection import SchemaError
from sync.central.db import MIGRATIONS, CentralDB
from sync.protocol import Revocation, RevokeCode

WRITERS = 4
BATCHES = 40


def _revocation(writer: int, batch: int, i: int) -> RevokeCode:
    digest = hashlib.sha256(f"{writer}/{batch}/{i}".encode()).digest()[:16]
    return RevokeCode(digest, Revocation.REVOKED)


def test_a_reader_never_skips_a_revision_that_commits_later(central_target: str) -> None:
    """Writers on separate connections commit concurrently; a reader following the log sees
    every change exactly once, with no gap, while they write."""
    dbs = [CentralDB(central_target) for _ in range(3)]
    reader_db = dbs[2]
    published: list[RevokeCode] = []
    lock = threading.Lock()
    done = threading.Event()
    errors: list[BaseException] = []

    def write(writer: int) -> None:
        try:
            for batch in range(BATCHES):
                changes = [_revocation(writer, batch, i) for i in range(1 + batch % 3)]
                dbs[writer % 2].log.publish(changes)
                with lock:
                    published.extend(changes)
        except BaseException as err:
            errors.append(err)

    seen: list[protocol.Change] = []

    def follow() -> None:
        while True:
            finished = done.is_set()
            first, wire, head = reader_db.log.changes_since(len(seen), 7)
            assert first == len(seen)
            seen.extend(protocol.change_from_wire(c, "test") for c in wire)
            if finished and len(seen) == head:
                return

    writers = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
    reader = threading.Thread(target=follow)
    reader.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    reader.join(60)
    try:
        assert not errors, errors
        assert not reader.is_alive()
        assert len(seen) == len(published) == len(set(published))
        assert set(seen) == set(published)
        head = reader_db.log.head()
        assert head == len(published)
        # What the reader saw while they wrote is the log as it stands: nothing was skipped.
        assert seen == [
            protocol.change_from_wire(c, "t") for c in reader_db.log.changes_since(0, head)[1]
        ]
    finally:
        for db in dbs:
            db.close()


def test_schema_versions_migrate_forward_and_a_newer_database_is_refused(
    central_target: str,
) -> None:
    db = CentralDB(central_target)
    try:
        assert db.connection.migrate(MIGRATIONS) == len(MIGRATIONS)  # nothing to do
        later = (*MIGRATIONS, "CREATE TABLE later (later_id INTEGER PRIMARY KEY, note BLOB);")
        assert db.connection.migrate(later) == len(MIGRATIONS)
        with db.connection.transaction() as conn:
            row = conn.execute(
                "INSERT INTO later (later_id, note) VALUES (NULL, ?) RETURNING later_id", (b"x",)
            ).fetchone()
        assert row[0] == 1  # an INTEGER PRIMARY KEY left NULL is numbered, on both backends
    finally:
        db.close()
    with pytest.raises(SchemaError, match="newer than this edge-central knows"):
        CentralDB(central_target)
