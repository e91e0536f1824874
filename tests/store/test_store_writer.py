"""The store's writer: journal records in one hop, group-committed, ahead of bulk parts."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from threads import nice

from edge.core.decide import Reason
from edge.core.errors import StoreError
from edge.core.facts import Direction, Revocation
from edge.store import sync as store_sync
from edge.store import writer as store_writer
from edge.store.base import REVOCATION_CODES
from edge.store.database import Store
from edge.store.gate import JournalEntry
from edge.store.sync import SyncBatch
from edge.store.writer import Writer


def _entry(n: int, reason: Reason = Reason.ADMITTED) -> JournalEntry:
    return JournalEntry(datetime.now(UTC), "lane", Direction.ENTRY, reason, n, b"h" * 16, "…1")


def _size(path: Path) -> int:
    return path.stat().st_size


class _Held:
    """The writer thread inside a bulk part until `release()`: records queue behind it."""

    def __init__(self, writer: Writer) -> None:
        self._inside = threading.Event()
        self._release = threading.Event()

        def part(conn: sqlite3.Connection) -> None:
            self._inside.set()
            self._release.wait(5)

        self.done = asyncio.ensure_future(writer.bulk(part))

    async def inside(self) -> None:
        assert await asyncio.to_thread(self._inside.wait, 5)

    def release(self) -> None:
        self._release.set()


async def test_concurrent_records_share_commits_and_all_are_durable(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "edge.db")
    try:
        held = _Held(store._journal)
        await held.inside()
        before = store._journal.commits
        records = asyncio.gather(*(store.record(_entry(n)) for n in range(1, 41)))
        await asyncio.sleep(0.01)  # every record queued behind the part
        held.release()
        seqs = await records
        await held.done
        commits = store._journal.commits - before - 1
        assert sorted(seqs) == list(range(1, 41))
        assert commits < 40  # records that waited together went in one transaction
    finally:
        await store.close()
    # What a record's return promised is on disk for the next process.
    conn = sqlite3.connect(tmp_path / "edge.journal.db")
    assert conn.execute(
        "SELECT count(*), count(DISTINCT credential_id) FROM journal"
    ).fetchone() == (
        40,
        40,
    )
    assert conn.execute("SELECT sum(count) FROM entries").fetchone() == (40,)
    conn.close()


async def test_one_failing_record_in_a_group_leaves_the_others(tmp_path: Path) -> None:
    db = tmp_path / "edge.db"
    store = await Store.open(db)
    conn = sqlite3.connect(store.journal_path)
    conn.execute(
        "CREATE TRIGGER full BEFORE INSERT ON entries WHEN NEW.credential_id = 7"
        " BEGIN SELECT RAISE(FAIL, 'disk full'); END"
    )
    conn.commit()
    conn.close()
    try:
        held = _Held(store._journal)
        await held.inside()
        records = asyncio.gather(
            *(store.record(_entry(n)) for n in range(1, 11)), return_exceptions=True
        )
        await asyncio.sleep(0.01)  # all ten queued: they go in one group
        held.release()
        results = await records
        await held.done
        failed = [r for r in results if isinstance(r, BaseException)]
        assert len(failed) == 1
        assert isinstance(failed[0], StoreError)
        assert "disk full" in str(failed[0])
        kept = {row.entry.credential_id for row in store.recent(20)}
        assert kept == set(range(1, 11)) - {7}  # its journal row went with it, no other did
    finally:
        await store.close()


async def test_a_journal_record_goes_ahead_of_queued_bulk_work(tmp_path: Path) -> None:
    path = str(tmp_path / "w.db")
    sqlite3.connect(path).execute("PRAGMA journal_mode = WAL").close()
    writer = Writer(path)
    writer.start()
    release = threading.Event()
    order: list[str] = []

    def blocking(conn: sqlite3.Connection) -> None:
        release.wait(5)
        order.append("bulk 1")

    def bulk(conn: sqlite3.Connection) -> None:
        order.append("bulk 2")

    def urgent(conn: sqlite3.Connection) -> None:
        order.append("journal")

    try:
        first = asyncio.ensure_future(writer.bulk(blocking))
        await asyncio.sleep(0.05)  # the writer is inside the first bulk part
        second = asyncio.ensure_future(writer.bulk(bulk))
        record = asyncio.ensure_future(writer.urgent(urgent))
        await asyncio.sleep(0.01)
        release.set()
        await asyncio.gather(first, second, record)
        assert order == ["bulk 1", "journal", "bulk 2"]
    finally:
        await writer.close()


async def test_a_record_with_the_writer_idle_is_committed_on_the_callers_thread(
    tmp_path: Path,
) -> None:
    db = tmp_path / "edge.db"
    store = await Store.open(db)
    threads: list[int] = []
    try:
        before = store._journal.commits
        original = store._journal._conn

        def job(conn: sqlite3.Connection) -> int:
            threads.append(threading.get_ident())
            assert conn is original
            return 7

        assert await store._journal.urgent(job) == 7
        seq = await store.record(_entry(1))
        assert threads == [threading.get_ident()]  # no hop to the writer thread
        assert store._journal.commits - before == 2
        # Committed when it returned: another connection (another process) sees it.
        other = sqlite3.connect(store.journal_path)
        assert other.execute("SELECT seq FROM journal").fetchall() == [(seq,)]
        other.close()
    finally:
        await store.close()


async def test_a_slow_disk_sends_records_to_the_writer_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On a disk whose fsync is slow the loop must not hold every commit: once SLOW_COMMITS of
    # the last commits slept longer than the limit (as an fsync on a slow disk does), records
    # go through the writer thread for a while.
    store = await Store.open(tmp_path / "edge.db")
    threads: list[int] = []
    slow = {1, 5, 9}  # the jobs that wait for "the disk": the third makes it a slow disk
    try:

        def job(conn: sqlite3.Connection) -> None:
            del conn
            threads.append(threading.get_ident())
            if len(threads) in slow:
                time.sleep(3 * store_writer.SLOW_COMMIT_SECONDS)

        for _ in range(9):
            await store._journal.urgent(job)
        assert threads == [threading.get_ident()] * 9  # all here, the slow ones too
        await store._journal.urgent(job)
        await store.record(_entry(1))
        assert threading.get_ident() not in threads[9:]  # then: the writer thread
        monkeypatch.setattr(store_writer, "SLOW_COMMIT_PAUSE", 0.0)
        store._journal._direct_after = 0.0
        await store._journal.urgent(job)
        assert threads[-1] == threading.get_ident()  # the pause over: here again
    finally:
        await store.close()


async def test_one_slow_commit_now_and_then_keeps_records_on_the_callers_thread(
    tmp_path: Path,
) -> None:
    # A shared disk's or an SD card's occasional slow fsync is not a slow disk: before, one
    # such commit sent every record of the next minute through two thread switches.
    store = await Store.open(tmp_path / "edge.db")
    threads: list[int] = []
    try:

        def job(conn: sqlite3.Connection) -> None:
            del conn
            threads.append(threading.get_ident())
            if len(threads) % store_writer.SLOW_COMMIT_WINDOW == 1:
                time.sleep(3 * store_writer.SLOW_COMMIT_SECONDS)

        for _ in range(3 * store_writer.SLOW_COMMIT_WINDOW):
            await store._journal.urgent(job)
        assert threads == [threading.get_ident()] * (3 * store_writer.SLOW_COMMIT_WINDOW)
        assert store._journal._direct_after == 0.0
    finally:
        await store.close()


@pytest.fixture
def memory_path() -> Iterator[Path]:
    """A scratch directory in memory (tmpfs) where there is one: no fsync waits for a disk."""
    shm = Path("/dev/shm")
    directory = Path(tempfile.mkdtemp(dir=shm if shm.is_dir() else None))
    yield directory
    shutil.rmtree(directory)


async def test_a_commit_slowed_by_a_busy_core_stays_on_the_callers_thread(
    memory_path: Path,
) -> None:
    # A commit that was slow because the core was busy (bulk work, another process) did not
    # wait for the disk: the writer thread would wait for the same core, two switches later.
    # The loop's thread shares one CPU with a busy process while a job computes for 20 ms of
    # its own CPU time: the commit takes twice that and more, and records stay here. The store
    # is in memory (tmpfs), so no wait is the disk's: this machine's disk is shared.
    store = await Store.open(memory_path / "edge.db")
    cpu = min(os.sched_getaffinity(0))
    allowed = os.sched_getaffinity(0)
    neighbour = await asyncio.create_subprocess_exec(
        sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass"
    )
    threads: list[int] = []
    took: list[float] = []
    try:
        os.sched_setaffinity(0, {cpu})  # this thread only (Linux: affinity is per thread)

        def job(conn: sqlite3.Connection) -> None:
            del conn
            threads.append(threading.get_ident())
            if len(threads) == 1:
                started, ran = time.monotonic(), time.thread_time()
                while time.thread_time() - ran < 0.02:
                    pass
                took.append(time.monotonic() - started)

        await asyncio.sleep(0.1)  # the neighbour runs
        for _ in range(3):
            await store._journal.urgent(job)
        await store.record(_entry(1))
        assert took[0] > 10 * store_writer.SLOW_COMMIT_SECONDS  # a slow commit it was
        assert threads == [threading.get_ident()] * 3  # and every record stayed here
        assert store._journal._direct_after == 0.0
    finally:
        os.sched_setaffinity(0, allowed)
        neighbour.kill()
        await neighbour.wait()
        await store.close()


async def test_a_failing_record_on_the_callers_thread_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "edge.db"
    store = await Store.open(db)
    conn = sqlite3.connect(store.journal_path)
    conn.execute(
        "CREATE TRIGGER full BEFORE INSERT ON entries WHEN NEW.credential_id = 2"
        " BEGIN SELECT RAISE(FAIL, 'disk full'); END"
    )
    conn.commit()
    conn.close()
    try:
        await store.record(_entry(1))
        with pytest.raises(StoreError, match="disk full"):
            await store.record(_entry(2))
        await store.record(_entry(3))
        assert [r.entry.credential_id for r in store.recent()] == [3, 1]
    finally:
        await store.close()


async def test_a_record_waiting_for_another_process_leaves_the_loop_free(tmp_path: Path) -> None:
    db = tmp_path / "edge.db"
    store = await Store.open(db)
    # Another process writing the journal file (a bulk worker's passages, an uploader's marks).
    other = sqlite3.connect(store.journal_path, isolation_level=None, check_same_thread=False)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    ticker = asyncio.ensure_future(tick())
    try:
        other.execute("BEGIN IMMEDIATE")
        threading.Timer(0.2, lambda: other.execute("COMMIT")).start()
        await store.record(_entry(1))
        assert ticks >= 10  # the wait was the writer thread's, not the loop's
        assert [r.entry.credential_id for r in store.recent()] == [1]
    finally:
        ticker.cancel()
        other.close()
        await store.close()


async def test_a_record_never_waits_for_a_write_of_the_main_file(tmp_path: Path) -> None:
    # A bulk writer (a bootstrap worker, `edge import`) holds the main file's write lock for a
    # part and its fsync (5-180 ms measured during a bootstrap): the journal has its own file,
    # so a record neither waits for it nor leaves the caller's thread. Before the split it
    # waited for the whole transaction.
    db = tmp_path / "edge.db"
    store = await Store.open(db)
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    threads: list[int] = []
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO sync_cursors VALUES ('bulk', 'part')")
        seq = await asyncio.wait_for(store.record(_entry(1)), 2.0)

        def job(conn: sqlite3.Connection) -> None:
            threads.append(threading.get_ident())

        await store._urgent(job)
        assert threads == [threading.get_ident()]  # committed here, no hop
        assert [r.seq for r in store.recent()] == [seq]
        other.execute("COMMIT")
    finally:
        other.close()
        await store.close()


async def test_the_wal_starts_over_when_a_commit_came_in_during_the_checkpoint(
    tmp_path: Path,
) -> None:
    # SQLite writes the WAL from its start again only at a commit that began after a checkpoint
    # had copied every frame. A commit that began while the checkpointer copied (a lane's
    # record, an upload's mark) left it a frame short, and so did every later one: the WAL grew
    # with each commit for as long as commits kept coming (61 MB after 3,000 records in a row),
    # each appending to the file. The writer now copies what the checkpointer left.
    path = tmp_path / "w.db"
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("PRAGMA journal_mode = WAL")
    setup.execute("CREATE TABLE t (n INTEGER)")
    writer = Writer(str(path))
    writer._thread.start()  # the checkpoints are run by hand below
    checkpointer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def insert(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES (1)")

    wal = Path(f"{path}-wal")
    try:
        for _ in range(50):
            await writer.urgent(insert)
        inside, release = threading.Event(), threading.Event()

        def held(conn: sqlite3.Connection) -> None:
            insert(conn)
            inside.set()
            release.wait(5)

        holding = asyncio.ensure_future(writer.bulk(held))  # a commit begins before the
        assert await asyncio.to_thread(inside.wait, 5)  # checkpoint ends...
        writer._checkpoint(checkpointer)
        release.set()
        await holding  # ... and commits after it
        await asyncio.sleep(0.1)  # the writer thread's turn
        size = _size(wal)
        for _ in range(50):
            await writer.urgent(insert)
        # The WAL started over: the commits went to its start (a busy machine may let some
        # append before the writer thread's turn). Before, each of the 50 appended a frame.
        assert _size(wal) - size < 50 * (4096 + 24)
        assert setup.execute("SELECT count(*) FROM t").fetchone() == (101,)
    finally:
        checkpointer.close()
        await writer.close()
        setup.close()


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
async def test_yield_cpu_lowers_only_the_calling_thread_and_the_checkpointer_runs_lowered(
    tmp_path: Path,
) -> None:
    main = threading.get_native_id()
    base = nice(main)
    seen: list[int] = []

    def background() -> None:
        store_writer.yield_cpu()
        store_writer.yield_cpu()  # again: stays where it is
        seen.append(nice(threading.get_native_id()))

    thread = threading.Thread(target=background)
    thread.start()
    thread.join()
    assert seen == [max(base, store_writer.BACKGROUND_NICE)]
    assert nice(main) == base
    store = await Store.open(tmp_path / "edge.db")
    try:
        writer, checkpointer = store._writer._thread, store._writer._checkpointer
        assert writer.native_id is not None
        assert checkpointer.native_id is not None
        assert nice(writer.native_id) == base  # it holds the write lock: never lowered
        tid = checkpointer.native_id

        def lowered() -> int:  # the thread lowers itself as it starts
            deadline = time.monotonic() + 5
            while nice(tid) == base and time.monotonic() < deadline:
                time.sleep(0.01)
            return nice(tid)

        assert await asyncio.to_thread(lowered) == max(base, store_writer.BACKGROUND_NICE)
    finally:
        await store.close()


async def test_a_write_waits_for_another_process_briefly_and_gives_up_after_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "edge.db"
    store = await Store.open(db)
    other = sqlite3.connect(store.journal_path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")
        threading.Timer(0.05, lambda: other.execute("COMMIT")).start()
        started = time.monotonic()
        await store.record(_entry(1))
        assert time.monotonic() - started < 2.0  # in steps of 0.5 ms, not SQLite's back-off
        monkeypatch.setattr(store_writer, "LOCK_WAIT_SECONDS", 0.2)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match="locked"):
            await store.record(_entry(2))
        other.execute("ROLLBACK")
        assert [r.entry.credential_id for r in store.recent()] == [1]
    finally:
        other.close()
        await store.close()


async def test_apply_writes_in_parts_and_moves_the_cursor_after_all_of_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_sync, "APPLY_PART", 500)
    store = await Store.open(tmp_path / "edge.db")
    hashes = [os.urandom(16) for _ in range(10_000)]
    batch = SyncBatch(revoked_codes=[(h, Revocation.REVOKED) for h in hashes])
    seen: list[tuple[str | None, int]] = []
    try:
        commits = store._writer.commits
        applying = asyncio.ensure_future(store.apply(batch, {"sync.revision": "42"}))
        recorded = None
        while not applying.done():
            state = (store.cursor("sync.revision"), store.stats().revoked_codes)
            seen.append(state)
            if recorded is None and 0 < state[1] < len(hashes):
                # A lane's record while the import is half way: it does not wait for the rest.
                recorded = await store.record(_entry(1))
                assert not applying.done()
            await asyncio.sleep(0)
        await applying
        assert store._writer.commits - commits >= len(hashes) // 500
        assert recorded is not None
        assert any(0 < count < len(hashes) for _, count in seen)
        # Readers never see the new revision before every part is in.
        assert all(count == len(hashes) for cursor, count in seen if cursor == "42")
        assert (store.cursor("sync.revision"), store.stats().revoked_codes) == ("42", 10_000)
    finally:
        await store.close()


async def test_apply_writes_revoked_codes_in_key_order_across_parts_and_later_versions_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_sync, "APPLY_PART", 7)
    db = tmp_path / "edge.db"
    store = await Store.open(db)
    conn = sqlite3.connect(db)
    conn.executescript(
        "CREATE TABLE written (n INTEGER PRIMARY KEY, h BLOB);"
        "CREATE TRIGGER log AFTER INSERT ON revoked_codes"
        " BEGIN INSERT INTO written (h) VALUES (NEW.code_hash); END;"
    )
    conn.close()
    hashes = [os.urandom(16) for _ in range(100)]
    twice = hashes[50]
    batch = SyncBatch(
        revoked_codes=[
            (twice, Revocation.REPLACED),
            *((h, Revocation.REVOKED) for h in hashes),
            (twice, Revocation.CANCELLED),  # a later version of the same code
        ]
    )
    try:
        await store.apply(batch, {})
        written = [bytes(h) for (h,) in store._read_here("SELECT h FROM written ORDER BY n")]
        # One pass through the B-tree in key order (each part touches few pages), not one
        # random walk per part.
        assert written == sorted(written)
        assert len(written) == 102
        reasons = store._read_here(
            f"SELECT reason FROM revoked_codes WHERE code_hash = x'{twice.hex()}'"
        )
        assert reasons == [(REVOCATION_CODES[Revocation.CANCELLED],)]
    finally:
        await store.close()


async def test_a_part_that_fails_leaves_the_cursor_and_a_retry_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_sync, "APPLY_PART", 100)
    db = tmp_path / "edge.db"
    store = await Store.open(db)
    hashes = sorted(os.urandom(16) for _ in range(1_000))
    conn = sqlite3.connect(db)
    conn.execute(
        "CREATE TRIGGER full BEFORE INSERT ON revoked_codes WHEN NEW.code_hash = ?"
        " BEGIN SELECT RAISE(FAIL, 'disk full'); END".replace("?", f"x'{hashes[700].hex()}'")
    )
    conn.commit()
    batch = SyncBatch(revoked_codes=[(h, Revocation.CANCELLED) for h in hashes])
    try:
        with pytest.raises(StoreError, match="disk full"):
            await store.apply(batch, {"sync.revision": "9"})
        assert store.cursor("sync.revision") is None
        assert 0 < store.stats().revoked_codes < len(hashes)  # only stricter meanwhile
        conn.execute("DROP TRIGGER full")
        conn.commit()
        await store.apply(batch, {"sync.revision": "9"})  # idempotent: the retry completes
        assert store.cursor("sync.revision") == "9"
        assert store.stats().revoked_codes == len(hashes)
    finally:
        conn.close()
        await store.close()


async def test_a_bulk_job_not_durable_commits_without_waiting_for_the_disk(tmp_path: Path) -> None:
    # Upload marks may be lost in a power cut (the rows are sent again and counted once): their
    # transaction is committed with synchronous=NORMAL, so the write lock a lane's record waits
    # for is not held through an fsync. Every other write stays FULL.
    store = await Store.open(tmp_path / "edge.db")

    def level(conn: sqlite3.Connection) -> int:
        return int(conn.execute("PRAGMA synchronous").fetchone()[0])

    try:
        assert await store._journal.bulk(level, durable=False) == 1  # NORMAL
        assert await store._journal.bulk(level) == 2  # FULL again
        assert await store._journal.urgent(level) == 2

        def failing(conn: sqlite3.Connection) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        with pytest.raises(StoreError):
            await store._journal.bulk(failing, durable=False)
        assert await store._journal.urgent(level) == 2  # a failure leaves it FULL too
    finally:
        await store.close()


async def test_upload_marks_go_in_bounded_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_sync, "MARK_PART", 100)
    store = await Store.open(tmp_path / "edge.db")
    try:
        seqs = [await store.record(_entry(n)) for n in range(1, 1001)]
        commits = store._journal.commits
        await store.mark_uploaded(seqs[:500])
        assert store._journal.commits - commits == 5  # one transaction per part
        await store.mark_sent([(seq, "ok", "") for seq in seqs[600:850]])
        assert store._journal.commits - commits == 8
        unsent = {row.seq for row in store.unsent(1000)}
        assert unsent == set(seqs[500:600]) | set(seqs[850:])
        assert store.reply(seqs[600]) == ("ok", "")
        assert store.reply(seqs[0]) is None
    finally:
        await store.close()
