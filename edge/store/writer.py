"""The writer of one store file: a dedicated thread with a plain sqlite3 connection.

Every write of a process to that file goes through it as a job: a function run on the
writer's connection inside one transaction (a store has two files, edge/store/base.py, and so
two writers: journal records never wait for the main file's bulk writes). Journal records are
urgent: every urgent job waiting when the writer is free shares one transaction and one fsync
(group commit), each in its own savepoint so that one failing record does not undo the
others, and urgent jobs go ahead of bulk ones. A bulk job is one bounded part (a few
milliseconds of SQLite work), so a journal record waits for at most one part. Results reach
the event loop in one hop, after the COMMIT returned: with synchronous=FULL the write is on
disk by then.

An urgent job that finds the connection free (no transaction running, no other urgent job
queued, no other process holding the write lock) runs on the caller's thread instead: no hop
at all. The two thread switches of a hop (loop -> writer, writer -> loop, each also a switch of
the interpreter lock) cost more than the commit itself on one core (0.13 ms of 0.26 at the
median, and most of the tail); the loop is held for the one commit (its fsync, ~0.1-0.2 ms
here), which the scan waits for anyway. Anything busy goes to the thread as before, so the
loop never waits for a lock or behind a bulk part.

The writer never runs a WAL checkpoint on a commit (that copies the WAL into the database and
could take a journal write tens of milliseconds after a bulk load); a checkpointer thread with
its own connection does it after bulk work, beside the writer, which SQLite allows in WAL mode.
SQLite starts the WAL over (writing into the file from its start again) only at a commit that
began after a checkpoint had copied every frame. Under a steady stream of commits one always
begins while the checkpointer copies, so the WAL grew with every commit (61 MB after 3,000
records in a row), and a commit appending to a growing file costs the file system a metadata
update with its fsync (a journal commit: 0.22 ms, against 0.12 into the WAL's old pages). So
the writer itself copies the few frames a checkpoint left, between two of its commits.

CPU priority: the writer thread runs at the process's priority, since whatever it writes
holds the store's write lock that a journal record may be waiting for (niced, a busy neighbour
preempts it there). Threads that only prepare bulk work (decoding, WAL checkpoints) call
`yield_cpu()`: on one core the scan path then gets the CPU whenever it wants it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from edge.core.errors import StoreError

_LOGGER = logging.getLogger(__name__)

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], T]

LOCK_WAIT_SECONDS = 5.0  # another process (edge import, edge check) may hold the write lock
LOCK_POLL_SECONDS = 0.0005  # how often a waiting writer tries again (SQLite's own handler
# sleeps 1, 2, 5, 10 ms... between tries: too coarse for a journal write)
BULK_PAUSE_SECONDS = 0.001  # after each bulk part: another process's journal write gets in
CHECKPOINT_INTERVAL = 0.5  # seconds between WAL checkpoints while bulk work goes on
JOURNAL_CHECKPOINT_COMMITS = 256  # journal commits between checkpoints (the WAL stays small)
CHECKPOINT_ROUNDS = 3  # checkpoints in a row while commits keep coming in during each
TAIL_FRAMES = 32  # frames left by a checkpoint that the writer copies (with the database's
# fsync: 0.4 ms for 64 here; nothing left to copy costs no fsync)
SLOW_COMMIT_SECONDS = 0.002  # a commit on the caller's thread waiting this long for the disk...
SLOW_COMMITS, SLOW_COMMIT_WINDOW = 3, 16  # ... this often among the last commits there...
SLOW_COMMIT_PAUSE = 60.0  # ... sends urgent jobs through the writer thread for this long
# How long a thread waits for the interpreter lock before its holder must hand it over
# (Python's default: 5 ms). Set in every process with a writer: a writer thread holding its
# file's write lock waits for the interpreter lock, and a lane's record waits for the write
# lock, so a parser's Python steps must not keep it longer than this.
SWITCH_INTERVAL_SECONDS = 0.0005
BACKGROUND_NICE = 10  # nice value of threads that prepare bulk work (CFS: ~1/10 of a nice 0's
# share of a busy core, and a waking scan path preempts them at once)


def _thread_clock() -> tuple[Callable[[], float], int | None]:
    """Seconds the calling thread has run on a CPU or waited in a run queue for one, and the
    descriptor to close (Linux's /proc/thread-self/schedstat, read in about 2 us). A commit's
    wall time minus their growth is the time it slept: waiting for the disk. Elsewhere: its CPU
    time only."""
    try:
        fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return time.thread_time, None

    def read() -> float:
        ran, queued = os.pread(fd, 128, 0).split()[:2]
        return (int(ran) + int(queued)) / 1e9

    return read, fd


def yield_cpu() -> None:
    """Lower the calling thread (only it, and threads it starts later) to BACKGROUND_NICE.

    Never raises: a platform without per-thread priorities (where PRIO_PROCESS would name the
    whole process) or a refusal leaves the priority as it was.
    """
    if not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()  # Linux: a thread id is a PRIO_PROCESS id of its own
    try:
        if os.getpriority(os.PRIO_PROCESS, tid) < BACKGROUND_NICE:
            os.setpriority(os.PRIO_PROCESS, tid, BACKGROUND_NICE)
    except OSError as err:
        _LOGGER.debug("cannot lower the CPU priority of thread %d: %s", tid, err)


class _Pending:
    """A job, the loop of its caller and the future that gets its result."""

    __slots__ = ("durable", "future", "job", "loop")

    def __init__(
        self, job: Job[Any], loop: asyncio.AbstractEventLoop, *, durable: bool = True
    ) -> None:
        self.job = job
        self.loop = loop
        self.durable = durable
        self.future: asyncio.Future[Any] = loop.create_future()

    def resolve(self, result: Any = None, error: BaseException | None = None) -> None:
        """Hand the outcome to the caller's loop (from the writer thread)."""
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            self.loop.call_soon_threadsafe(_settle, self.future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _locked(err: sqlite3.Error) -> bool:
    return isinstance(err, sqlite3.OperationalError) and "locked" in str(err)


class Writer:
    """The writing thread of one store file; `start()`, then `urgent()`/`bulk()`, `close()`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            # The first statements read the schema, which waits while another process holds
            # the file exclusively (the last connection of a process checkpointing as it
            # closes): they wait as long as any open does; transactions then poll (_begin).
            self._conn.execute(f"PRAGMA busy_timeout = {round(LOCK_WAIT_SECONDS * 1000)}")
            # FULL: a commit is on disk before it returns, so an acknowledged admit survives a
            # power cut, not only a crash.
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute("PRAGMA wal_autocheckpoint = 0")
            self._conn.execute("PRAGMA busy_timeout = 0")  # lock waits: see _begin
        except sqlite3.Error as err:
            self._conn.close()
            raise StoreError(f"{path}: cannot open the store's writer: {err}") from err
        except BaseException:
            self._conn.close()
            raise
        # Held while a transaction runs on the connection (the writer thread, or an urgent job
        # on the caller's thread): the caller's thread never waits for it.
        self._busy = threading.Lock()
        self._urgent: collections.deque[_Pending] = collections.deque()
        self._bulk: collections.deque[_Pending] = collections.deque()
        self._wake = threading.Condition()
        self._closing = False
        self._tail = False  # the checkpointer left a few frames for the writer to copy
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._checkpoint_wanted = threading.Event()
        self._stopped = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpoints, name="store-checkpoint", daemon=True
        )
        self.commits = 0  # transactions committed (group commits count once)
        self._direct_after = 0.0  # monotonic time before which urgent jobs take the thread
        # Whether each of the last commits on the caller's thread waited long for the disk.
        self._slow: collections.deque[bool] = collections.deque(maxlen=SLOW_COMMIT_WINDOW)
        self._clock: tuple[int, Callable[[], float], int | None] | None = None  # see _busy_time
        # Jobs the writer thread finished, answered once it released the connection: _settle.
        self._settled: list[tuple[_Pending, Any, BaseException | None]] = []

    def start(self) -> None:
        """Start the writer and checkpoint threads."""
        self._thread.start()
        self._checkpointer.start()

    async def urgent(self, job: Job[T]) -> T:
        """Run `job` ahead of bulk work, committed with the other urgent jobs waiting; here
        and now when the connection is free."""
        done = self._here(job)
        if done is not None:
            return done[0]
        return await self._submit(job, self._urgent)

    def _here(self, job: Job[T]) -> tuple[T] | None:
        """Run `job` in its own transaction on this thread if nothing else is writing:
        (its result,); None when the writer thread must do it."""
        if self._closing or self._urgent or time.monotonic() < self._direct_after:
            return None
        if not self._busy.acquire(blocking=False):
            return None
        busy_time = self._busy_time()
        started, busy = time.monotonic(), busy_time()
        try:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as err:
                if _locked(err):  # another process writes: the writer thread waits, not us
                    return None
                raise self._failure(err) from err
            try:
                result = job(self._conn)
                self._conn.execute("COMMIT")
            except BaseException as err:
                self._rollback()
                raise self._failure(err) from err
            self.commits += 1
        finally:
            self._busy.release()
        took = time.monotonic() - started
        slept = took - (busy_time() - busy)
        self._slow.append(slept > SLOW_COMMIT_SECONDS)
        if slept > SLOW_COMMIT_SECONDS and self._slow.count(True) >= SLOW_COMMITS:
            # The disk's fsync is slow (an SD card, a busy eMMC): holding the loop for it
            # would stall every other lane and the network. Go back to the writer thread,
            # and try again later. One slow fsync now and then (a shared disk, the card's
            # housekeeping) is not a slow disk: every record would pay for two thread
            # switches for a minute after it. A commit that was slow because the core was
            # busy (bulk work, another process) is not either: the writer thread would wait
            # for the same core, two thread switches later.
            self._direct_after = time.monotonic() + SLOW_COMMIT_PAUSE
            self._slow.clear()
            _LOGGER.debug(
                "%s: %d of the last %d journal commits waited for the disk (the last %.1f ms,"
                " %.1f ms in all); through the writer thread for %.0f s",
                self.path,
                SLOW_COMMITS,
                SLOW_COMMIT_WINDOW,
                slept * 1000,
                took * 1000,
                SLOW_COMMIT_PAUSE,
            )
        if self.commits % JOURNAL_CHECKPOINT_COMMITS == 0:
            self._checkpoint_wanted.set()
        return (result,)

    def _busy_time(self) -> Callable[[], float]:
        """`_thread_clock` of the calling thread (the event loop's: opened once)."""
        ident = threading.get_ident()
        if self._clock is None or self._clock[0] != ident:
            self._close_clock()
            self._clock = (ident, *_thread_clock())
        return self._clock[1]

    def _close_clock(self) -> None:
        if self._clock is not None and self._clock[2] is not None:
            os.close(self._clock[2])
        self._clock = None

    async def bulk(self, job: Job[T], *, durable: bool = True) -> T:
        """Run `job` (one bounded part) in its own transaction, after any urgent job.

        Not `durable`: committed without waiting for the disk (synchronous=NORMAL), for what
        may be lost in a power cut and done again (upload marks: the rows are sent again and
        counted once). The write lock is then held for the job alone, not for an fsync too;
        the next durable commit of the file, or its next checkpoint, makes it durable.
        """
        return await self._submit(job, self._bulk, durable=durable)

    async def _submit(
        self, job: Job[T], queue: collections.deque[_Pending], *, durable: bool = True
    ) -> T:
        pending = _Pending(job, asyncio.get_running_loop(), durable=durable)
        with self._wake:
            if self._closing:
                raise StoreError(f"{self.path}: the store is closed")
            queue.append(pending)
            self._wake.notify()
        result: T = await pending.future
        return result

    async def close(self) -> None:
        """Finish the queued jobs, then stop both threads and close the connection."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join)
        self._stopped.set()
        self._checkpoint_wanted.set()
        if self._checkpointer.is_alive():
            await asyncio.to_thread(self._checkpointer.join)
        self._close_clock()
        self._conn.close()

    # -- the writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wake:
                while not (self._urgent or self._bulk or self._tail or self._closing):
                    self._wake.wait()
                tail = False
                if self._urgent:
                    batch = list(self._urgent)
                    self._urgent.clear()
                    bulk = None
                elif self._tail:  # after the records waiting, before a bulk part's frames
                    batch, bulk, tail, self._tail = [], None, True, False
                elif self._bulk:
                    batch, bulk = [], self._bulk.popleft()
                else:  # closing and nothing left
                    return
            if tail:
                with self._busy:
                    self._finish_checkpoint()
            elif batch:
                with self._busy:
                    self._group(batch)
                self._settle()
                if self.commits % JOURNAL_CHECKPOINT_COMMITS == 0:
                    self._checkpoint_wanted.set()
            elif bulk is not None:
                with self._busy:
                    self._one(bulk)
                self._settle()
                self._checkpoint_wanted.set()
                time.sleep(BULK_PAUSE_SECONDS)

    def _settle(self) -> None:
        """Answer the callers of the jobs just done, once the connection is free: a caller's
        next record then commits on its own thread instead of finding the writer busy."""
        settled, self._settled = self._settled, []
        for pending, result, error in settled:
            pending.resolve(result, error)

    def _begin(self) -> None:
        """BEGIN IMMEDIATE, waiting in small steps while another connection writes."""
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.Error as err:
                if not _locked(err) or time.monotonic() > deadline:
                    raise
            time.sleep(LOCK_POLL_SECONDS)

    def _commit(self) -> None:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                self._conn.execute("COMMIT")
                self.commits += 1
                return
            except sqlite3.Error as err:
                if not _locked(err) or time.monotonic() > deadline:
                    raise
            time.sleep(LOCK_POLL_SECONDS)

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")

    def _failure(self, err: BaseException) -> BaseException:
        if isinstance(err, sqlite3.Error):
            failure = StoreError(f"{self.path}: write failed: {err}")
            failure.__cause__ = err
            return failure
        return err

    def _one(self, pending: _Pending) -> None:
        """One job in one transaction."""
        try:
            if not pending.durable:  # outside a transaction: SQLite ignores it inside one
                self._conn.execute("PRAGMA synchronous = NORMAL")
            self._begin()
            result = pending.job(self._conn)
            self._commit()
        except BaseException as err:  # noqa: BLE001 - handed to the caller, who re-raises
            self._rollback()
            self._settled.append((pending, None, self._failure(err)))
            return
        finally:
            if not pending.durable:
                self._durable_again()
        self._settled.append((pending, result, None))

    def _durable_again(self) -> None:
        """Back to synchronous=FULL after a job that was not durable (it changes a setting of
        the connection, no I/O: it fails only inside a transaction, and there is none)."""
        try:
            self._conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as err:  # pragma: no cover - see above
            _LOGGER.error("%s: cannot make commits durable again: %s", self.path, err)
            raise

    def _group(self, batch: list[_Pending]) -> None:
        """Several jobs in one transaction, each in a savepoint: one COMMIT, one fsync."""
        if len(batch) == 1:
            self._one(batch[0])
            return
        done: list[tuple[_Pending, Any]] = []
        try:
            self._begin()
        except BaseException as err:  # noqa: BLE001 - handed to every caller
            for pending in batch:
                self._settled.append((pending, None, self._failure(err)))
            return
        for pending in batch:
            try:
                self._conn.execute("SAVEPOINT job")
                result = pending.job(self._conn)
                self._conn.execute("RELEASE job")
            except BaseException as err:  # noqa: BLE001 - handed to this job's caller
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK TO job")
                    self._conn.execute("RELEASE job")
                self._settled.append((pending, None, self._failure(err)))
                continue
            done.append((pending, result))
        try:
            self._commit()
        except BaseException as err:  # noqa: BLE001 - handed to every caller still waiting
            self._rollback()
            for pending, _ in done:
                self._settled.append((pending, None, self._failure(err)))
            return
        for pending, result in done:
            self._settled.append((pending, result, None))

    def _finish_checkpoint(self) -> None:
        """Copy the frames the checkpointer left: no commit of this process comes in meanwhile,
        so the checkpoint completes and the next commit starts the WAL over."""
        with contextlib.suppress(sqlite3.Error):  # busy: the checkpointer's next round
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()

    # -- the checkpoint thread -----------------------------------------------------------------

    def _checkpoints(self) -> None:
        yield_cpu()  # copying the WAL into the database can wait; the lock-holding writer not
        conn: sqlite3.Connection | None = None
        try:
            while True:
                self._checkpoint_wanted.wait()
                self._checkpoint_wanted.clear()
                if self._stopped.is_set():
                    return
                if conn is None:
                    conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                    conn.execute("PRAGMA busy_timeout = 0")
                self._checkpoint(conn)
                self._stopped.wait(CHECKPOINT_INTERVAL)
        except sqlite3.Error as err:
            _LOGGER.warning("%s: WAL checkpoints stopped: %s", self.path, err)
        finally:
            if conn is not None:
                conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        """Copy the WAL into the database without blocking a writer (PASSIVE); again while
        commits came in meanwhile, and the last few frames by the writer (_finish_checkpoint)."""
        for _ in range(CHECKPOINT_ROUNDS):
            try:
                busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error:  # busy: the next round does it
                return
            left = frames - copied
            if busy or frames <= 0:  # busy: the next round; no frames: the WAL started over
                return
            # Done or nearly: a commit may have come in since, and the WAL starts over only at
            # a commit that began after a checkpoint had copied every frame.
            if left <= TAIL_FRAMES:
                with self._wake:
                    self._tail = True
                    self._wake.notify()
                return
