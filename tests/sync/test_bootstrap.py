"""The bootstrap pipeline: chunks over two bulk workers at the gate, the next part read ahead
by the central system, cursors in order, a refused chunk stopping it cleanly."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import until
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pgcluster import Cluster

from edge.store.database import Store
from sync import protocol
from sync.central import server as central_server
from sync.central.changelog import snapshot_query
from sync.central.db import CentralDB
from sync.central.postgres import CONCATENATE_WORK_MEM, PostgresConnection
from sync.central.server import Central, serve
from sync.client import replicator as replicator_module
from sync.client.bulk import BulkWorker, Opened
from sync.client.replicator import Replicator
from sync.client.settings import SyncConfig
from sync.client.state import BOOTSTRAP_CURSOR, REVISION_CURSOR
from sync.protocol import CredentialChange, Revocation, RevokeCode

CREDENTIALS = 40
REVOCATIONS = 30
CHUNK = 7  # items per chunk: ten chunks, the keys in the first
WORK_MEM = "SELECT current_setting('work_mem')"


def _prepare(db: CentralDB) -> None:
    db.keys.add()
    db.log.publish(
        [
            CredentialChange(cid, 0, 7, 10, 0, 1, 0, None, None, 0, paid=True)
            for cid in range(1, CREDENTIALS + 1)
        ]
    )
    db.log.publish([RevokeCode(os.urandom(16), Revocation.REVOKED) for _ in range(REVOCATIONS)])


@pytest.fixture
async def central(central_target: str) -> AsyncIterator[tuple[CentralDB, str]]:
    """A central system holding CREDENTIALS credentials and REVOCATIONS revocations, served
    on 127.0.0.1."""
    db = CentralDB(central_target)
    _prepare(db)
    server_db = CentralDB(central_target)
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(server_db, "127.0.0.1", 0, ready.set_result))
    try:
        yield db, await ready
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        server_db.close()
        db.close()


async def _client(
    tmp_path: Path, db: CentralDB, url: str, workers: int
) -> tuple[Store, Replicator]:
    identity = Ed25519PrivateKey.generate()
    db.devices.add("gate-1", protocol.public_bytes(identity))
    store = await Store.open(tmp_path / "edge.db")
    await store.put_keys(list(db.keys.public_keys()))
    settings = SyncConfig(
        url=url, channel=False, push_listen=False, pull_interval_seconds=3600, timeout_seconds=5
    )
    client = Replicator(
        settings, store, device="gate-1", identity=identity, bootstrap_workers=workers
    )
    return store, client


def _held(path: Path) -> tuple[int, int]:
    conn = sqlite3.connect(path)
    try:
        return (
            int(conn.execute("SELECT count(*) FROM credentials").fetchone()[0]),
            int(conn.execute("SELECT count(*) FROM revoked_codes").fetchone()[0]),
        )
    finally:
        conn.close()


async def test_chunks_over_two_workers_arrive_whole_with_their_cursors_in_order(
    central: tuple[CentralDB, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, url = central
    monkeypatch.setattr(replicator_module, "SNAPSHOT_LIMIT", CHUNK)
    store, client = await _client(tmp_path, db, url, workers=2)
    # Observed, not replaced: which worker writes each chunk, and what the store holds
    # whenever a bootstrap cursor moves.
    writers: list[int] = []
    moves: list[tuple[str, tuple[int, int]]] = []
    write = BulkWorker.write

    async def recorded_write(worker: BulkWorker, opened: Opened, since: int | None = None) -> None:
        writers.append(id(worker))
        await write(worker, opened, since)

    apply = store.apply

    async def recorded_apply(batch: Any, cursors: dict[str, str]) -> None:
        await apply(batch, cursors)
        if BOOTSTRAP_CURSOR in cursors:
            moves.append((cursors[BOOTSTRAP_CURSOR], _held(tmp_path / "edge.db")))

    monkeypatch.setattr(BulkWorker, "write", recorded_write)
    monkeypatch.setattr(store, "apply", recorded_apply)
    task = asyncio.create_task(client.run())
    try:
        head = db.log.head()
        await until(lambda: client.state.revision == head, "the bootstrap", seconds=30)
        assert _held(tmp_path / "edge.db") == (CREDENTIALS, REVOCATIONS)
        chunks = -(-(1 + CREDENTIALS + REVOCATIONS) // CHUNK)
        assert len(writers) == chunks
        assert len(set(writers)) == 2  # both workers wrote
        assert writers[0::2] == [writers[0]] * len(writers[0::2])  # in turn
        # One cursor move per chunk, in chunk order, each once every fact of the chunks up to
        # it is in: the store never says it is further than it is.
        assert len(moves) == chunks
        assert moves[-1][0] == ""
        for i, (_, (credentials, revoked)) in enumerate(moves[:-1], start=1):
            assert credentials + revoked >= min(i * CHUNK - 1, CREDENTIALS + REVOCATIONS)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await store.close()


async def test_a_refused_chunk_stops_the_bootstrap_after_the_chunks_before_it(
    central: tuple[CentralDB, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, url = central
    monkeypatch.setattr(replicator_module, "SNAPSHOT_LIMIT", CHUNK)
    store, client = await _client(tmp_path, db, url, workers=2)
    post = client._post
    asked: list[Any] = []
    saved: list[str | None] = []

    async def tampering_post(path: str, body: bytes, base: str | None = None) -> bytes:
        data = await post(path, body, base)
        if path != "/v1/snapshot":
            return data
        asked.append(protocol.unpack(body, "request", 1 << 12)["cursor"])
        saved.append(store.cursor(BOOTSTRAP_CURSOR))
        if len(asked) == 5:  # the fifth chunk, altered on the way: its signature fails
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0x55]) + data[middle + 1 :]
        return data

    monkeypatch.setattr(client, "_post", tampering_post)
    task = asyncio.create_task(client.run())
    try:
        head = db.log.head()
        await until(lambda: client.state.revision == head, "the bootstrap", seconds=30)
        assert _held(tmp_path / "edge.db") == (CREDENTIALS, REVOCATIONS)
        # The fifth chunk was refused, then asked for again from the same cursor: the four
        # before it were written and their cursors moved, nothing after it was taken.
        assert asked[5] == asked[4]
        assert saved[5] is not None
        assert saved[5] != saved[4]  # the fourth chunk's cursor moved only after it was asked
        assert store.cursor(REVISION_CURSOR) == str(head)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await store.close()


async def test_the_next_part_is_read_ahead_once_and_only_its_own_request_takes_it(
    central_target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = CentralDB(central_target)
    try:
        _prepare(db)
        central = Central(db)
        reads: list[tuple[Any, int, str | None]] = []
        part = db.log.snapshot_part

        def recorded_part(
            cursor: tuple[str, Any] | None, limit: int, venue: str | None = None
        ) -> tuple[protocol.PackedChanges, tuple[str, Any] | None]:
            reads.append((cursor, limit, venue))
            return part(cursor, limit, venue)

        monkeypatch.setattr(db.log, "snapshot_part", recorded_part)
        _, cursor = await central._snapshot_part("gate-1", None, CHUNK, None)
        assert cursor is not None
        central._read_ahead("gate-1", cursor, CHUNK, None)
        # Asked for exactly that: answered from the read ahead, no second read.
        ahead = await central._snapshot_part("gate-1", cursor, CHUNK, None)
        assert ahead == part(cursor, CHUNK, None)
        assert reads == [(None, CHUNK, None), (cursor, CHUNK, None)]
        # Asked for something else (another limit): read afresh, the read ahead dropped.
        central._read_ahead("gate-1", cursor, CHUNK, None)
        await asyncio.sleep(0)
        other = await central._snapshot_part("gate-1", cursor, CHUNK + 1, None)
        assert other == part(cursor, CHUNK + 1, None)
        assert reads[-1] == (cursor, CHUNK + 1, None)
        assert "gate-1" not in central._ahead
        # Bounded: READ_AHEAD_DEVICES devices at once; one not asked for in time is dropped.
        monkeypatch.setattr(central_server, "READ_AHEAD_DEVICES", 2)
        for name in ("gate-1", "gate-2", "gate-3"):
            central._read_ahead(name, cursor, CHUNK, None)
        assert set(central._ahead) == {"gate-1", "gate-2"}
        monkeypatch.setattr(central_server, "READ_AHEAD_SECONDS", -1.0)
        central._read_ahead("gate-3", cursor, CHUNK, None)
        assert set(central._ahead) == {"gate-3"}
        await central._snapshot_part("gate-3", cursor, CHUNK, None)
    finally:
        db.close()


def test_a_snapshot_page_sorts_in_memory_on_postgresql(postgres: Cluster) -> None:
    """The page's aggregates sort 2.5-3.5 MB for a 50,000-item chunk: above PostgreSQL's
    default work_mem (4 MB minus overhead spills to temporary files), so the page raises it
    for its own transaction only."""
    db = CentralDB(postgres.database())
    try:
        _prepare(db)
        connection = db.connection
        assert isinstance(connection, PostgresConnection)
        with connection.reading() as conn:
            before = conn.execute(WORK_MEM).fetchone()[0]
            sql, args = snapshot_query("credentials", None, None, CHUNK)
            rows, _, last = connection.concatenated(conn, sql, args, ("credential_id",), "change")
            assert (rows, last) == (CHUNK, (CHUNK,))
            assert conn.execute(WORK_MEM).fetchone()[0] == CONCATENATE_WORK_MEM
        assert connection.row(WORK_MEM)[0] == before  # only in that transaction
    finally:
        db.close()
