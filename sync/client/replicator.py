"""The edge's sync client: hello, bootstrap, pull, signed pushes, journal upload.

Scanning never waits for any of this: lanes read the store synchronously, and everything
here writes through the store's own transactions. A central system that is slow, down or
answering nonsense only makes the sync state (metrics, /health) look worse.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import logging
import os
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from edge.core import ed25519
from edge.core.errors import ConfigError, StoreError, SyncError
from edge.store.sync import SyncBatch, SyncStore
from edge.web import http
from sync import protocol
from sync.client.bulk import BulkWorker, Opened
from sync.client.centrals import CENTRAL_CURSOR, LOG_CURSOR, Centrals, ForeignLogError
from sync.client.changes import to_batch
from sync.client.settings import SyncConfig
from sync.client.state import (
    BOOTSTRAP_CURSOR,
    REPLACE_CURSOR,
    REVISION_CURSOR,
    VENUE_CURSOR,
    Status,
    SyncState,
)
from sync.protocol import Envelope, EnvelopeKind

_LOGGER = logging.getLogger(__name__)

BACKOFF_MIN = 0.5  # seconds before the first retry after a failure
BACKOFF_MAX = 30.0
SNAPSHOT_LIMIT = 50_000  # state items per bootstrap chunk
# Bulk worker processes a bootstrap uses at most (one per core): a chunk's verification,
# decoding and conversion hold a worker's interpreter lock, so in one worker they slow the
# write of the chunk before; with two, one prepares while the other writes (docs/operations.md,
# "Bootstrap from PostgreSQL").
BOOTSTRAP_WORKERS = 2
# Envelopes larger than this (bootstrap chunks, large pushes and pulls) are verified, decoded
# and written by the bulk worker process (sync/client/bulk.py), never in the daemon; the
# daemon moves the cursors once the worker wrote the facts. Smaller ones go through a thread.
BULK_BYTES = 64 << 10
JOIN_IN_THREAD_BYTES = 1 << 20  # an answer this large is put together in a thread
BOOTSTRAP_PROGRESS_SECONDS = 5.0  # a long bootstrap logs how far it is this often
CHANGES_LIMIT = 5_000
PUSH_PATH = "/v1/push"
SNAPSHOT_MAX_AGE_SECONDS = 300.0  # a snapshot chunk signed longer ago (or ahead) is a replay
CLOCK_WARNING_SECONDS = 30.0  # log when the device clock is further off the central one
# A channel that stayed open this long was healthy: its next failure starts backing off anew.
CHANNEL_STABLE_SECONDS = 10.0


async def _read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, or ProtocolError once it grows beyond `limit`."""
    chunks, size = [], 0
    async for chunk in response.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise protocol.ProtocolError(f"answer larger than {limit} bytes")
        chunks.append(chunk)
    if size < JOIN_IN_THREAD_BYTES:
        return b"".join(chunks)
    # Megabytes copied into fresh memory held the event loop 2 ms and more (a bootstrap
    # chunk); in a thread the copy runs without the interpreter lock, and a scan goes first.
    return await asyncio.to_thread(b"".join, chunks)


def _encode_cursor(pinned: int, cursor: tuple[str, Any] | None) -> str:
    return base64.b64encode(protocol.pack([pinned, list(cursor) if cursor else None])).decode()


def _decode_cursor(text: str) -> tuple[int, tuple[str, Any] | None]:
    value = protocol.unpack(base64.b64decode(text), "bootstrap cursor", 1 << 12)
    if not isinstance(value, list) or len(value) != 2 or not isinstance(value[0], int):
        raise SyncError(f"the stored bootstrap position is damaged: {value!r}")
    cursor = None if value[1] is None else protocol.snapshot_cursor(value[1], "bootstrap cursor")
    return value[0], cursor


def _upload_body(store: SyncStore, limit: int) -> tuple[bytes, list[int]]:
    """The upload body of the oldest unsent journal rows and their seqs (for a thread)."""
    rows = store.unsent_rows(limit)
    return protocol.journal_rows_to_wire(rows), [row[0] for row in rows]


@dataclass(slots=True)
class _Bootstrap:
    """How far a bootstrap is, and where its time went."""

    started: float
    replacing: bool  # the snapshot replaces the facts held: sweep what it did not bring
    items: int = 0
    waited: float = 0.0  # seconds the loop waited for chunks (the central, the network)
    writing: float = 0.0  # ... and for their writes
    reported: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class _Write:
    """A chunk a bulk worker writes, and the cursors that move once it is in."""

    chunk: Opened
    done: asyncio.Future[None]
    cursors: dict[str, str]


class Replicator:
    """Keeps one store in step with the central system and uploads its journal."""

    def __init__(
        self,
        settings: SyncConfig,
        store: SyncStore,
        *,
        device: str,
        identity: ed25519.Signer,
        clock: Callable[[], float] = time.time,
        bootstrap_workers: int | None = None,
    ) -> None:
        """`bootstrap_workers`: bulk worker processes a bootstrap spreads its chunks over
        (default: one per core, BOOTSTRAP_WORKERS at most)."""
        self._settings = settings
        self._bootstrap_worker_count = bootstrap_workers
        self._store = store
        self._device = device
        self._identity = identity
        self._clock = clock
        self.state = SyncState()
        revision = store.cursor(REVISION_CURSOR)
        self.state.revision = int(revision) if revision else None
        self._apply_lock = asyncio.Lock()
        self._errors: dict[str, str] = {}  # the failing loops ("pull", "upload") and why
        self._pull_wanted = asyncio.Event()
        self._upload_wanted = asyncio.Event()
        self._bootstrapped = asyncio.Event()  # the channel opens once there is a revision
        if self.state.revision is not None:
            self._bootstrapped.set()
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | bool = True
        if settings.ca_file:
            try:
                self._ssl = ssl.create_default_context(cafile=settings.ca_file)
            except (OSError, ssl.SSLError) as err:
                raise ConfigError(
                    f"cannot read the CA file {settings.ca_file}: {err}", key="sync.ca_file"
                ) from err
        self._proxy = settings.proxy or None
        self._stored_central = store.cursor(CENTRAL_CURSOR)
        # A restart begins where the last run worked, not at a central that may still be down.
        self.centrals = Centrals(settings.centrals, device=device, start=self._stored_central)
        self._log = store.cursor(LOG_CURSOR)  # the change log the store follows (hex)
        self._verified: set[str] = set()  # centrals whose hello showed that log, this run
        self._bulk = BulkWorker(store.path, device)
        self.push_url: str | None = None  # announced to the central system
        self.listening_url: str | None = None  # where the push server is bound

    # -- running -----------------------------------------------------------------------------

    def queue_length(self) -> int:
        """Journal entries waiting for upload, as monitoring sees them (Store.seen_backlog)."""
        return self._store.seen_backlog()

    def journal_changed(self) -> None:
        """A lane journaled a decision: upload soon."""
        self._upload_wanted.set()

    async def run(self) -> None:
        """Serve pushes, pull and upload until cancelled."""
        timeout = aiohttp.ClientTimeout(total=self._settings.timeout_seconds)
        runner = await self._serve_pushes() if self._settings.push_listen else None
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                self._session = session
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._pull_loop())
                    group.create_task(self._upload_loop())
                    if self._settings.channel:
                        group.create_task(self._channel_loop())
        finally:
            self._session = None
            await self._bulk.close()
            if runner is not None:
                await runner.cleanup()

    async def _serve_pushes(self) -> web.AppRunner | None:
        app = http.application(max_body=protocol.MAX_PUSH_BYTES, errors=self._limit_error)
        app.router.add_post(PUSH_PATH, self._push)
        runner = http.runner(app)
        await runner.setup()
        settings = self._settings
        try:
            await http.listen(runner, settings.push_address, settings.push_port)
        except OSError as err:
            # Pulls still keep the gate current, only slower; a restart loop would not help.
            _LOGGER.error(
                "%s: cannot take pushes on %s port %d: %s; pulling only",
                self._device,
                settings.push_address,
                settings.push_port,
                err.strerror,
            )
            await runner.cleanup()
            return None
        host, port = runner.addresses[0][:2]
        self.listening_url = f"http://{f'[{host}]' if ':' in host else host}:{port}{PUSH_PATH}"
        self.push_url = settings.push_url or self.listening_url
        _LOGGER.info(
            "%s: taking pushes on %s (announced as %s)",
            self._device, self.listening_url, self.push_url,
        )  # fmt: skip
        return runner

    async def _pull_loop(self) -> None:
        backoff = BACKOFF_MIN
        while True:
            # Cleared before the pull, not after: a gap a push reports while this pull runs
            # may lie beyond what the pull fetches, and its request must not be lost.
            self._pull_wanted.clear()
            switches = self.centrals.switches
            try:
                await self.hello()
                await self._note_central()
                if self.state.revision is None:
                    await self.bootstrap()
                await self.pull()
                backoff = BACKOFF_MIN
                self._recovered("pull")
            except (SyncError, StoreError, aiohttp.ClientError, TimeoutError) as err:
                self._failed(err, "pull")
                backoff = await self._back_off(backoff, switches)
                continue
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that
            # arrives as the event is set, and the loop then never ends (shutdown hangs).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.pull_interval_seconds):
                    await self._pull_wanted.wait()

    async def _upload_loop(self) -> None:
        backoff = BACKOFF_MIN
        while True:
            switches = self.centrals.switches
            # Cleared before the batch is read (in a thread, so the loop runs meanwhile): a
            # record journaled during the read sets it again and is sent in the next round.
            self._upload_wanted.clear()
            try:
                sent = await self.upload_once()
                backoff = BACKOFF_MIN
                self._recovered("upload")
            except (SyncError, StoreError, aiohttp.ClientError, TimeoutError) as err:
                self._failed(err, "upload")
                backoff = await self._back_off(backoff, switches)
                continue
            if not sent:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._settings.pull_interval_seconds):
                        await self._upload_wanted.wait()

    async def _back_off(self, backoff: float, switches: int) -> float:
        """Sleep a jittered `backoff`; return the next one: doubled, unless the failure moved
        to a central that has not failed in this round (`switches`: the count before the
        attempt), which is tried at the first delay."""
        await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
        if self.centrals.switches != switches and self.centrals.fresh:
            return BACKOFF_MIN
        return min(backoff * 2, BACKOFF_MAX)

    async def _note_central(self) -> None:
        """Remember the central that answered (for `edge status` and the next start)."""
        current = self.centrals.current
        if current != self._stored_central:
            await self._store.set_cursor(CENTRAL_CURSOR, current)
            self._stored_central = current

    def _failed(self, err: BaseException, task: str) -> None:
        message = str(err) or type(err).__name__
        if message != self._errors.get(task):
            _LOGGER.warning("%s: sync %s: %s", self._device, task, message)
        self._errors[task] = message
        self.state.last_error = message
        self.state.status = Status.OFFLINE

    def _recovered(self, task: str) -> None:
        """`task` worked again: its error is history, not state (/health shows what fails now)."""
        if self._errors.pop(task, None) is None:
            return
        _LOGGER.info("%s: sync %s works again", self._device, task)
        self.state.last_error = next(reversed(self._errors.values()), "")
        if not self._errors and self.state.status is Status.OFFLINE:
            self.state.status = Status.CURRENT if self.state.lag == 0 else Status.BEHIND

    def _contact(self) -> None:
        self.state.last_contact = self._clock()
        self.centrals.answered()

    # -- requests ----------------------------------------------------------------------------

    async def _post(self, path: str, body: bytes, base: str | None = None) -> bytes:
        """A signed POST to `base` (default: the central in use, once its hello showed it
        serves the store's change log)."""
        if base is None:
            base = self.centrals.current
            if base not in self._verified:
                await self._hello_at(base)
        try:
            return await self._post_once(base, path, body)
        except protocol.RemoteError as err:
            if err.code != protocol.ErrorCode.CLOCK_SKEW.value or err.time_ms is None:
                raise
            # Refused for our clock: learn the central one from the refusal and sign again.
            # Only the request time changes; the central system still checks it against its
            # own clock, so a captured request stays useless after 300 s.
            self._learn_offset(err.time_ms, self._clock(), self._clock())
            return await self._post_once(base, path, body)

    async def _post_once(self, base: str, path: str, body: bytes) -> bytes:
        if self._session is None:
            raise SyncError("the sync client is not running")
        headers = protocol.sign_request(
            self._identity,
            self._device,
            method="POST",
            path=path,
            time_ms=int((self._clock() + self.state.clock_offset) * 1000),
            body=body,
        )
        try:
            async with self._session.post(
                base + path,
                data=body,
                headers=headers,
                proxy=self._proxy,
                ssl=self._ssl,
            ) as response:
                data = await _read_bounded(response, protocol.MAX_ENVELOPE_BYTES)
                if response.status != 200:
                    raise protocol.parse_error(response.status, data)
        except (protocol.RemoteError, aiohttp.ClientError, TimeoutError, OSError) as err:
            self.centrals.failed(base, err)
            raise
        self._contact()
        return data

    def _learn_offset(self, central_ms: int, sent: float, received: float) -> None:
        """The central clock minus ours, from its time and our clock around the exchange."""
        offset = central_ms / 1000 - (sent + received) / 2
        if abs(offset) > CLOCK_WARNING_SECONDS and (
            abs(offset - self.state.clock_offset) > CLOCK_WARNING_SECONDS
        ):
            _LOGGER.warning(
                "%s: this clock is %+.0f s off the central system's; requests are signed with"
                " the central time, validity and windows still use this clock",
                self._device,
                -offset,
            )
        self.state.clock_offset = offset

    async def request(self, path: str, body: bytes) -> bytes:
        """A signed request to another endpoint of the central system (the pass desk's)."""
        return await self._post(path, body)

    async def hello(self) -> None:
        """Tell the central system where pushes go; learn its head and clock."""
        await self._hello_at(self.centrals.current)

    async def _hello_at(self, base: str) -> None:
        sent = self._clock()
        body = protocol.pack({"revision": self.state.revision or 0, "push_url": self.push_url})
        answer = protocol.fields(await self._post("/v1/hello", body, base), "hello answer")
        received = self._clock()
        await self._check_log(base, answer.blob("log", 16, optional=True))
        self.state.head = answer.integer("head")
        self._learn_offset(answer.integer("time"), sent, received)
        self._verified.add(base)

    async def _check_log(self, base: str, log: bytes | None) -> None:
        """Refuse a central process of another database: its revisions are another stream.

        Every process on one database names the same change log; a store follows the one it
        bootstrapped from. A store without a revision (or a central too old to say) takes
        any; one with a revision takes only its own, whichever process answers.
        """
        if log is None or log.hex() == self._log:
            return
        following = self.state.revision is not None or self._store.cursor(BOOTSTRAP_CURSOR)
        if self._log is None or not following:
            await self._store.set_cursor(LOG_CURSOR, log.hex())
            self._log = log.hex()
            return
        err = ForeignLogError(
            f"central {base} serves another change log ({log.hex()[:8]}) than the one this"
            f" store follows ({self._log[:8]}): [sync] urls must name processes of one"
            " database; nothing taken from it"
        )
        self.centrals.failed(base, err)
        raise err

    async def _snapshot_chunk(
        self, worker: BulkWorker, pinned: int | None, cursor: tuple[str, Any] | None
    ) -> Opened:
        request = {"revision": pinned, "cursor": list(cursor) if cursor else None,
                   "limit": SNAPSHOT_LIMIT}  # fmt: skip
        asked = time.monotonic()
        data = await self._post("/v1/snapshot", protocol.pack(request))
        received = time.monotonic()
        opened = await worker.open(data, (EnvelopeKind.SNAPSHOT,))
        _LOGGER.debug(
            "%s: snapshot chunk from %s: %d bytes in %.0f ms, opened in %.0f ms",
            self._device, cursor[0] if cursor else "the start", len(data),
            (received - asked) * 1000, (time.monotonic() - received) * 1000,
        )  # fmt: skip
        return opened

    def _bootstrap_workers(self) -> list[BulkWorker]:
        """The bulk workers a bootstrap spreads its chunks over: the usual one, and one more
        per further core up to `bootstrap_workers`."""
        count = self._bootstrap_worker_count
        if count is None:
            count = min(BOOTSTRAP_WORKERS, len(os.sched_getaffinity(0)))
        extra = [BulkWorker(self._store.path, self._device) for _ in range(max(count, 1) - 1)]
        return [self._bulk, *extra]

    async def bootstrap(self) -> None:
        """Load the snapshot chunk by chunk; an interrupted bootstrap resumes where it was.

        Chunks go to the bulk workers in turn (one per core, BOOTSTRAP_WORKERS at most): one
        worker verifies, decodes and converts a chunk while another writes the one before,
        and the next chunk is asked for as soon as this one is verified. One chunk is written
        at a time, in order; the cursors move after each chunk's facts are in, so a restart
        resumes at the first chunk not written. A chunk refused (or a failed write) stops the
        bootstrap once the chunk before it is written and its cursors moved.
        """
        self.state.status = Status.BOOTSTRAPPING
        saved = self._store.cursor(BOOTSTRAP_CURSOR)
        pinned, cursor = _decode_cursor(saved) if saved else (None, None)
        # Starting over (moved to another venue, the central lost revisions): the snapshot
        # replaces what the store holds. Until its end the old facts still decide.
        replacing = bool(self._store.cursor(REPLACE_CURSOR))
        if replacing and not saved:
            marked = await self._store.mark_replaced()
            _LOGGER.info("%s: bootstrap replaces the %d facts held", self._device, marked)
        run = _Bootstrap(time.monotonic(), replacing)
        workers = self._bootstrap_workers()
        writes: collections.deque[_Write] = collections.deque()
        turn = 0
        fetch = asyncio.ensure_future(self._snapshot_chunk(workers[0], pinned, cursor))
        try:
            while True:
                try:
                    chunk = await self._checked(fetch, pinned, run)
                except BaseException:
                    await self._drop(workers[turn % len(workers)], fetch)
                    # What was verified before the refused chunk stays: written, cursors moved.
                    while writes:
                        await self._written(writes.popleft(), run)
                    raise
                pinned = chunk.first
                worker = workers[turn % len(workers)]
                if chunk.next_cursor is None:
                    cursors = {
                        REVISION_CURSOR: str(pinned),
                        BOOTSTRAP_CURSOR: "",
                        VENUE_CURSOR: chunk.venue or "",  # which bundles it may import
                    }
                else:
                    cursors = {BOOTSTRAP_CURSOR: _encode_cursor(pinned, chunk.next_cursor)}
                    turn += 1
                    fetch = asyncio.ensure_future(
                        self._snapshot_chunk(
                            workers[turn % len(workers)], pinned, chunk.next_cursor
                        )
                    )
                # One chunk written at a time, as by one worker (a journal record waits for
                # one bulk writer's part at most), while the next is verified and converted.
                while writes:
                    await self._written(writes.popleft(), run)
                writes.append(_Write(chunk, asyncio.ensure_future(worker.write(chunk)), cursors))
                if chunk.next_cursor is None:
                    await self._written(writes.popleft(), run)
                self.state.head = max(self.state.head, chunk.head)
                if chunk.next_cursor is None:
                    await self._bootstrap_done(run, pinned, workers)
                    return
        finally:
            if not fetch.done():
                fetch.cancel()
                with contextlib.suppress(asyncio.CancelledError, SyncError, aiohttp.ClientError):
                    await fetch
            for write in writes:  # a failed write stops the others' waiting (not the worker)
                write.done.cancel()
                with contextlib.suppress(asyncio.CancelledError, SyncError, StoreError):
                    await write.done
            for extra in workers[1:]:  # (closed already if the bootstrap is done)
                await extra.close()

    async def _bootstrap_done(
        self, run: _Bootstrap, pinned: int, workers: list[BulkWorker]
    ) -> None:
        _LOGGER.info(
            "%s: bootstrapped %d items at revision %d in %.1f s with %d bulk workers (waited"
            " %.1f s for chunks, %.1f s for their writes)",
            self._device, run.items, pinned, time.monotonic() - run.started, len(workers),
            run.waited, run.writing,
        )  # fmt: skip
        for extra in workers[1:]:  # before the run hears the bootstrap is done
            await extra.close()
        self.state.revision = pinned
        self._bootstrapped.set()

    async def _checked(
        self, fetch: asyncio.Future[Opened], pinned: int | None, run: _Bootstrap
    ) -> Opened:
        """The chunk being fetched, once it is in: signed lately, at the pinned revision."""
        waiting = time.monotonic()
        chunk = await fetch
        run.waited += time.monotonic() - waiting
        self._check_fresh(chunk.at_ms)
        if pinned is not None and chunk.first != pinned:
            raise protocol.ProtocolError(
                f"snapshot chunk is at revision {chunk.first}, expected {pinned}"
            )
        return chunk

    async def _drop(self, worker: BulkWorker, fetch: asyncio.Future[Opened]) -> None:
        """Forget a chunk that was opened but refused here (stale, another revision)."""
        if fetch.done() and not fetch.cancelled() and fetch.exception() is None:
            with contextlib.suppress(SyncError):
                await worker.drop(fetch.result())

    async def _written(self, write: _Write, run: _Bootstrap) -> None:
        """Wait for a chunk's facts to be in, then move the cursors past it."""
        chunk, cursors = write.chunk, dict(write.cursors)
        async with self._apply_lock:
            waiting = time.monotonic()
            await write.done
            run.writing += time.monotonic() - waiting
            run.items += chunk.changes
            _LOGGER.debug(
                "%s: snapshot chunk of %d items written (waited %.0f ms)",
                self._device, chunk.changes, (time.monotonic() - waiting) * 1000,
            )  # fmt: skip
            if chunk.next_cursor is None and run.replacing:
                removed = await self._store.sweep_replaced()
                cursors[REPLACE_CURSOR] = ""
                _LOGGER.info(
                    "%s: bootstrap removed %d facts it did not bring again",
                    self._device, removed,
                )  # fmt: skip
            # The facts are in: only now the cursors move (a crash in between applies the
            # chunk again, which is harmless).
            await self._store.apply(SyncBatch(), cursors)
        if time.monotonic() - run.reported >= BOOTSTRAP_PROGRESS_SECONDS:
            run.reported = time.monotonic()
            _LOGGER.info(
                "%s: bootstrapping, %d items so far (%.0f s)",
                self._device, run.items, run.reported - run.started,
            )  # fmt: skip

    def _check_fresh(self, at_ms: int) -> None:
        """A snapshot chunk is signed when asked for: an old one is a replay.

        Changes are ordered by revision, so an old CHANGES envelope is simply stale; a
        snapshot pins the revision it shows, so a replayed old one would rewind the facts.
        """
        central_now = (self._clock() + self.state.clock_offset) * 1000
        age = (central_now - at_ms) / 1000
        if abs(age) > SNAPSHOT_MAX_AGE_SECONDS:
            when = f"{age / 60:.0f} min ago" if age > 0 else f"{-age / 60:.0f} min ahead"
            raise protocol.ProtocolError(
                f"snapshot chunk was signed {when} by the central clock (a replay?); only"
                f" chunks signed within {SNAPSHOT_MAX_AGE_SECONDS:.0f} s are taken"
            )

    async def pull(self) -> None:
        """Fetch and apply changes until the store is at the central system's head."""
        while True:
            revision = self.state.revision or 0
            self.state.status = Status.BEHIND
            body = protocol.pack({"since": revision, "limit": CHANGES_LIMIT})
            try:
                data = await self._post("/v1/changes", body)
            except protocol.RemoteError as err:
                if err.code == protocol.ErrorCode.REVISION_AHEAD.value:
                    # Moved to another venue, or the central system lost revisions we have
                    # (restored from a backup): load its state again, in place of ours.
                    _LOGGER.warning("%s: %s; bootstrapping again", self._device, err.message)
                    async with self._apply_lock:
                        await self._store.forget_revision()
                        self.state.revision = None
                        self._bootstrapped.clear()
                    await self.bootstrap()
                    continue
                raise
            opened = await self._open(data, protocol.MAX_ENVELOPE_BYTES)
            await self.apply(opened)
            changes = opened.changes if isinstance(opened, Opened) else len(opened.changes)
            if (self.state.revision or 0) >= opened.head or not changes:
                self.state.status = Status.CURRENT
                return

    async def _open(self, data: bytes, limit: int) -> Envelope | Opened:
        """Verify and decode a CHANGES envelope: a large one in the worker, else in a thread."""
        kinds = (EnvelopeKind.CHANGES,)
        if len(data) > BULK_BYTES:
            if len(data) > limit:
                raise protocol.ProtocolError(f"envelope: {len(data)} bytes is too large")
            return await self._bulk.open(data, kinds)
        keys = self._store.known_keys()
        return await asyncio.to_thread(
            protocol.open_envelope, data, keys.get, limit=limit, kinds=kinds
        )

    async def apply(self, envelope: Envelope | Opened) -> str:
        """Apply a verified envelope in revision order: 'applied', 'stale' or 'gap'."""
        written = False
        try:
            if self.state.revision is None:  # bootstrapping: do not wait for its lock
                self._pull_wanted.set()
                return "gap"
            async with self._apply_lock:
                revision = self.state.revision
                self.state.head = max(self.state.head, envelope.head)
                if revision is None or envelope.first > revision:
                    self._pull_wanted.set()  # we miss revisions before this envelope
                    return "gap"
                if envelope.last <= revision:
                    return "stale"  # a replay or an old envelope: nothing changes
                cursors = {REVISION_CURSOR: str(envelope.last)}
                if isinstance(envelope, Opened):
                    await self._bulk.write(envelope, since=revision)
                    written = True
                    await self._store.apply(SyncBatch(), cursors)
                else:
                    batch = await asyncio.to_thread(
                        to_batch, envelope.since(revision), self._device, list(envelope.chain)
                    )
                    await self._store.apply(batch, cursors)
                self.state.revision = int(cursors[REVISION_CURSOR])
                if self.state.revision >= self.state.head:
                    self.state.status = Status.CURRENT
                return "applied"
        finally:
            if isinstance(envelope, Opened) and not written:  # gap, stale: the worker forgets it
                await self._bulk.drop(envelope)

    async def receive(self, data: bytes) -> str:
        """Verify and apply one pushed envelope: the one path of inbound pushes and the channel.

        Returns 'applied', 'stale' or 'gap'; raises ProtocolError (nothing changed) for a body
        that does not parse or verify, StoreError when the store cannot take it.
        """
        # Never on the loop: a 1 MiB push is ~28,000 changes to verify and decode.
        outcome = await self.apply(await self._open(data, protocol.MAX_PUSH_BYTES))
        self._contact()
        self.state.pushes[outcome] = self.state.pushes.get(outcome, 0) + 1
        return outcome

    async def _push(self, request: web.Request) -> web.Response:
        try:
            outcome = await self.receive(await request.read())
        except protocol.UntrustedError as err:
            _LOGGER.warning("%s: push refused: %s", self._device, err)
            return self._push_error(403, protocol.ErrorCode.UNTRUSTED, str(err))
        except protocol.ProtocolError as err:
            _LOGGER.warning("%s: push rejected: %s", self._device, err)
            return self._push_error(400, protocol.ErrorCode.BAD_REQUEST, str(err))
        except StoreError as err:
            return self._push_error(500, protocol.ErrorCode.INTERNAL, str(err))
        return web.Response(
            body=protocol.push_answer(self.state.revision or 0, outcome),
            headers=protocol.HEADERS,
        )

    def _limit_error(self, status: int, message: str) -> web.Response:
        self.state.pushes["rejected"] = self.state.pushes.get("rejected", 0) + 1
        return web.Response(
            status=status,
            body=protocol.limit_error_body(status, message),
            headers=protocol.HEADERS,
        )

    # -- the outbound push channel -----------------------------------------------------------

    async def _channel_loop(self) -> None:
        """Keep one channel open; reconnect with jittered exponential backoff."""
        backoff = BACKOFF_MIN
        while True:
            await self._bootstrapped.wait()
            opened = time.monotonic()
            switches = self.centrals.switches
            try:
                await self._channel_once()
                reason = "closed by the central system"
            except (SyncError, StoreError, aiohttp.ClientError, TimeoutError, OSError) as err:
                reason = str(err) or type(err).__name__
            finally:
                self.state.channel = False
            if time.monotonic() - opened >= CHANNEL_STABLE_SECONDS:
                backoff = BACKOFF_MIN
            delay = backoff * random.uniform(0.5, 1.0)
            _LOGGER.info(
                "%s: push channel: %s; reconnecting in %.1f s", self._device, reason, delay
            )
            self._pull_wanted.set()  # whatever the channel missed meanwhile
            await asyncio.sleep(delay)
            if self.centrals.switches != switches and self.centrals.fresh:
                backoff = BACKOFF_MIN  # moved on to a central that has not failed: try it soon
            else:
                backoff = min(backoff * 2, BACKOFF_MAX)

    async def _channel_once(self) -> None:
        """Open the channel, apply what arrives, answer each envelope; return when closed."""
        if self._session is None:
            raise SyncError("the sync client is not running")
        base = self.centrals.current
        if base not in self._verified:
            await self._hello_at(base)
        path = protocol.channel_path(self.state.revision or 0)
        headers = protocol.sign_request(
            self._identity,
            self._device,
            method="GET",
            path=path,
            time_ms=int((self._clock() + self.state.clock_offset) * 1000),  # as every request
            body=b"",
        )
        try:
            ws = await self._session.ws_connect(
                base + path,
                headers=headers,
                heartbeat=self._settings.keepalive_seconds,
                compress=0,  # signed envelopes hardly compress (docs/protocol.md)
                max_msg_size=protocol.MAX_PUSH_BYTES,
                timeout=aiohttp.ClientWSTimeout(ws_close=self._settings.timeout_seconds),
                proxy=self._proxy,
                ssl=self._ssl,
                autoping=True,
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            self.centrals.failed(base, err)
            raise
        async with ws:
            self.state.channel = True
            self.state.channels += 1
            self._contact()
            _LOGGER.info(
                "%s: push channel open to %s at revision %s",
                self._device,
                base,
                self.state.revision,
            )
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.BINARY:
                    await ws.close(code=protocol.CloseCode.UNSUPPORTED, message=b"binary only")
                    raise protocol.ProtocolError("the channel sent a text frame")
                try:
                    outcome = await self.receive(message.data)
                except protocol.ProtocolError as err:
                    self.state.pushes["rejected"] = self.state.pushes.get("rejected", 0) + 1
                    _LOGGER.warning("%s: channel frame refused: %s", self._device, err)
                    await ws.close(code=protocol.CloseCode.REFUSED, message=b"refused")
                    raise
                except StoreError:
                    await ws.close(code=protocol.CloseCode.INTERNAL, message=b"store")
                    raise
                await ws.send_bytes(protocol.push_answer(self.state.revision or 0, outcome))
            if ws.exception() is not None:
                raise SyncError(f"channel failed: {ws.exception()}")
            code = ws.close_code
            if code == protocol.CloseCode.TOO_LARGE:
                raise protocol.ProtocolError("the channel sent a frame above the push limit")
            raise SyncError(f"channel closed ({code})")

    def _push_error(self, status: int, code: protocol.ErrorCode, message: str) -> web.Response:
        self.state.pushes["rejected"] = self.state.pushes.get("rejected", 0) + 1
        return web.Response(
            status=status,
            body=protocol.error_body(code, message),
            headers=protocol.HEADERS,
        )

    async def upload_once(self) -> int:
        """Upload one batch of unsent journal entries; returns how many were acknowledged."""
        # Read and packed in a thread: a batch of 1,000 rows held the loop ~10 ms.
        body, seqs = await asyncio.to_thread(_upload_body, self._store, self._settings.upload_batch)
        if not seqs:
            return 0
        answer = protocol.fields(await self._post("/v1/journal", body), "journal answer")
        through = answer.integer("through")
        if through != seqs[-1]:
            raise protocol.ProtocolError(
                f"journal answer acknowledges up to {through}, not {seqs[-1]}"
            )
        await self._store.mark_uploaded(seqs)
        self.state.uploaded += len(seqs)
        return len(seqs)
