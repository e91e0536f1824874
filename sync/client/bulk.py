"""Bulk sync work in a separate process: verify, decode and write large envelopes.

A bootstrap chunk is 50,000 changes. Decoded in the daemon, even in a thread, it competes with
the lanes for the interpreter lock, and its objects make the garbage collector walk hundreds
of thousands of them; on a one-core gate that costs scans tens of milliseconds. The daemon
therefore hands the bytes to a worker process (`python -m sync.client.bulk STORE DEVICE`)
that verifies the envelope against the keys in the store, decodes it and
writes its facts through its own store connection in bounded parts; the daemon's journal
writes get in between the parts (edge/store/writer.py). The daemon moves the sync cursors
itself, after the worker reported the facts written, so a reader never sees a cursor ahead of
its data.

The worker's journal writes (passages from other gates, in the journal file) hold that file's
write lock, which the daemon's lane records wait for, and the writer thread holding it needs
this process's interpreter lock to go on. So nothing else here may keep the interpreter lock
for long: threads hand it over after SWITCH_INTERVAL_SECONDS, and the garbage collector, whose
full pass walks every decoded change still alive in one step (43 ms measured, a lane's record
waiting meanwhile), runs only between writes (`_collect`), never on its own.

Frames both ways: a 4-byte big-endian length and a msgpack map (sync.protocol.pack).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import msgpack

from edge.core.errors import StoreError, SyncError
from edge.store.writer import SWITCH_INTERVAL_SECONDS, yield_cpu
from sync import protocol
from sync.protocol import EnvelopeKind

if TYPE_CHECKING:
    from edge.store.sync import SyncBatch

_LOGGER = logging.getLogger(__name__)

MAX_FRAME = protocol.MAX_ENVELOPE_BYTES + (1 << 16)
PIPE_PIECE = 1 << 16  # bytes of an envelope handed to the worker's pipe at a time (its size)
_LENGTH = struct.Struct(">I")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Opened:
    """What the worker found in a verified envelope (its changes stay in the worker)."""

    handle: int  # names the envelope in the worker until it is written or dropped
    kind: EnvelopeKind
    first: int
    last: int
    head: int
    changes: int
    next_cursor: tuple[str, Any] | None
    at_ms: int  # when the central signed it
    venue: str | None = None  # SNAPSHOT: the venue whose share it holds (None: every venue's)


def _frame(value: dict[str, Any]) -> bytes:
    body = protocol.pack(value)
    return _LENGTH.pack(len(body)) + body


def _bin_header(size: int) -> bytes:
    """msgpack's header of a bin of `size` bytes, as packb writes it."""
    if size < 1 << 8:
        return b"\xc4" + size.to_bytes(1, "big")
    if size < 1 << 16:
        return b"\xc5" + size.to_bytes(2, "big")
    return b"\xc6" + size.to_bytes(4, "big")


def _frame_head(value: dict[str, Any], data: bytes) -> bytes:
    """The frame of `value` with `data` as its last item, "data", up to where data's bytes
    begin: followed by them it is `_frame({**value, "data": data})`, byte for byte."""
    packer = msgpack.Packer(use_bin_type=True)
    parts = [packer.pack_map_header(len(value) + 1)]
    for key, item in value.items():
        parts += (packer.pack(key), packer.pack(item))
    parts += (packer.pack("data"), _bin_header(len(data)))
    head = b"".join(parts)
    return _LENGTH.pack(len(head) + len(data)) + head


class BulkWorker:
    """The daemon's side: one worker process for a store, started on first use.

    Requests carry an id and may overlap (the next chunk is verified while this one is
    written); replies come back by id, so a caller that gives up leaves nothing behind.
    """

    def __init__(self, store_path: str, device: str) -> None:
        self._path = store_path
        self._device = device
        self._process: asyncio.subprocess.Process | None = None
        self._replies: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._start_lock = asyncio.Lock()
        self._send_lock = asyncio.Lock()  # a request's pieces go out together
        self._ids = 0

    async def _start(self) -> asyncio.subprocess.Process:
        async with self._start_lock:
            if self._process is None or self._process.returncode is not None:
                self._process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "sync.client.bulk",
                    self._path,
                    self._device,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    limit=MAX_FRAME,
                )
                self._replies = asyncio.create_task(self._read_replies(self._process))
            return self._process

    async def _read_replies(self, process: asyncio.subprocess.Process) -> None:
        error: BaseException = SyncError("the bulk worker exited")
        try:
            if process.stdout is None:
                return
            while True:
                (size,) = _LENGTH.unpack(await process.stdout.readexactly(_LENGTH.size))
                reply = protocol.unpack(
                    await process.stdout.readexactly(size), "bulk reply", MAX_FRAME
                )
                future = self._pending.pop(int(reply["rid"]), None)
                if future is not None and not future.done():
                    future.set_result(reply)
        except (
            OSError,
            asyncio.IncompleteReadError,
            protocol.ProtocolError,
            LookupError,
            TypeError,
        ) as err:
            error = SyncError(f"the bulk worker failed: {err or type(err).__name__}")
        finally:
            if self._process is process:
                self._process = None
            pending, self._pending = self._pending, {}
            for future in pending.values():
                if not future.done():
                    future.set_exception(error)

    async def _call(self, request: dict[str, Any], data: bytes | None = None) -> dict[str, Any]:
        """Send `request` (with `data` as its "data", if given) and wait for the reply."""
        process = await self._start()
        stdin = process.stdin
        if stdin is None:
            raise SyncError("the bulk worker has no pipes")
        self._ids += 1
        request["rid"] = self._ids
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._ids] = future
        try:
            async with self._send_lock:
                if data is None:
                    stdin.write(_frame(request))
                else:
                    # Not packed into one frame here: a chunk of megabytes copied into fresh
                    # memory (packb, then the pipe's buffer) held the event loop for 3-8 ms.
                    # Its bytes go as they are, a piece at a time as the pipe takes them.
                    stdin.write(_frame_head(request, data))
                    view = memoryview(data)
                    for start in range(0, len(data), PIPE_PIECE):
                        stdin.write(view[start : start + PIPE_PIECE])
                        await stdin.drain()
                await stdin.drain()
            reply = await future
        except OSError as err:
            raise SyncError(f"the bulk worker failed: {err}") from err
        finally:
            self._pending.pop(request["rid"], None)
        error = reply.get("error")
        if error is not None:
            if reply.get("kind") == "untrusted":
                raise protocol.UntrustedError(str(error))
            if reply.get("kind") == "protocol":
                raise protocol.ProtocolError(str(error))
            if reply.get("kind") == "store":
                raise StoreError(str(error))
            raise SyncError(f"the bulk worker failed: {error}")
        return reply

    async def open(self, data: bytes, kinds: tuple[EnvelopeKind, ...]) -> Opened:
        """Verify and decode an envelope in the worker; it keeps the changes for `write`."""
        self._ids += 1
        handle = self._ids
        reply = await self._call(
            {"op": "open", "id": handle, "kinds": [kind.value for kind in kinds]}, data
        )
        cursor = reply["next"]
        return Opened(
            handle,
            EnvelopeKind(reply["kind_value"]),
            int(reply["first"]),
            int(reply["last"]),
            int(reply["head"]),
            int(reply["changes"]),
            None if cursor is None else protocol.snapshot_cursor(cursor, "next cursor"),
            int(reply["at_ms"]),
            reply.get("venue"),
        )

    async def write(self, opened: Opened, since: int | None = None) -> None:
        """Write an opened envelope's facts (of a CHANGES envelope: those after `since`)."""
        await self._call({"op": "write", "id": opened.handle, "since": since})

    async def drop(self, opened: Opened) -> None:
        """Forget an opened envelope without writing it."""
        await self._call({"op": "drop", "id": opened.handle})

    async def close(self) -> None:
        """Stop the worker (it finishes the part it is writing)."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            if process.stdin is not None:
                process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._replies is not None:
            await self._replies
            self._replies = None


# -- the worker process ------------------------------------------------------------------------


def _in_background(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call `function` on this (worker) thread at the background CPU priority."""
    yield_cpu()
    return function(*args, **kwargs)


def _collect(writing: asyncio.Lock, opened: dict[int, Any]) -> None:
    """Collect garbage now if no write is running (automatic collections are off here).

    A write runs only while `writing` is held, and only this thread starts one, so a
    collection here never keeps the interpreter lock from a writer thread holding a write
    lock. The young generations after every request (the changes of an envelope, all alive
    until written, are walked once, not again at every 700 allocations); everything once
    nothing is opened, which ends every bootstrap, push and pull.
    """
    if not writing.locked():
        gc.collect(1 if opened else 2)


def _send(stream: BinaryIO, reply: dict[str, Any]) -> None:
    stream.write(_frame(reply))
    stream.flush()


def _read_frame(stream: BinaryIO) -> dict[str, Any] | None:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(head)
    value = protocol.unpack(stream.read(size), "bulk request", MAX_FRAME)
    if not isinstance(value, dict):
        raise SyncError("bulk request: not a map")
    return value


async def _serve(path: str, device: str, requests: BinaryIO, replies: BinaryIO) -> None:
    from edge.store.database import Store  # noqa: PLC0415 - the worker's own imports
    from sync.client.changes import to_batch  # noqa: PLC0415

    store = await Store.open(path)
    # The store's writer thread (started above) keeps the daemon's priority: it holds the
    # write lock a journal record may wait for. Everything else here yields the CPU: this
    # thread (frames, conversion to rows) and the threads that verify and decode.
    yield_cpu()
    # Envelopes verified and not yet written; a snapshot chunk's with its batch of facts.
    opened: dict[int, tuple[protocol.Envelope, SyncBatch | None]] = {}
    writing = asyncio.Lock()  # writes one at a time, in the order they came

    async def handle(request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "open":
            kinds = tuple(EnvelopeKind(k) for k in request["kinds"])
            trusted = store.known_keys()
            envelope = await asyncio.to_thread(
                _in_background, protocol.open_envelope, request["data"], trusted.get, kinds=kinds
            )
            batch = None
            if envelope.kind is EnvelopeKind.SNAPSHOT:
                # Converted now, off the writer: a bootstrap chunk is written whole, and its
                # write (another worker's, maybe) is then only the store's work.
                batch = await asyncio.to_thread(
                    _in_background, to_batch, envelope.changes, device, list(envelope.chain)
                )
            opened[int(request["id"])] = (envelope, batch)
            return {
                "kind_value": envelope.kind.value,
                "first": envelope.first,
                "last": envelope.last,
                "head": envelope.head,
                "changes": len(envelope.changes),
                "next": list(envelope.next_cursor) if envelope.next_cursor else None,
                "at_ms": envelope.at_ms,
                "venue": envelope.venue,
            }
        if op == "write":
            async with writing:
                envelope, batch = opened.pop(int(request["id"]))
                since = request.get("since")
                changes = envelope.changes if since is None else envelope.since(int(since))
                if batch is None or since is not None:
                    batch = to_batch(changes, device, list(envelope.chain))
                await store.apply(batch, {})
            return {"written": len(changes)}
        if op == "drop":
            opened.pop(int(request["id"]), None)
            return {}
        raise SyncError(f"unknown operation {op!r}")

    async def answer(request: dict[str, Any]) -> None:
        reply: dict[str, Any]
        try:
            reply = await handle(request)
        except protocol.UntrustedError as err:
            reply = {"error": str(err), "kind": "untrusted"}
        except protocol.ProtocolError as err:
            reply = {"error": str(err), "kind": "protocol"}
        except StoreError as err:
            reply = {"error": str(err), "kind": "store"}
        except (SyncError, KeyError, TypeError, ValueError) as err:
            reply = {"error": str(err) or type(err).__name__, "kind": "worker"}
        reply["rid"] = request.get("rid")
        _send(replies, reply)
        _collect(writing, opened)

    try:
        async with asyncio.TaskGroup() as group:
            while (
                request := await asyncio.to_thread(_in_background, _read_frame, requests)
            ) is not None:
                group.create_task(answer(request))
    finally:
        await store.close()


def main(argv: list[str]) -> int:
    """Entry point of the worker process: STORE_PATH DEVICE."""
    # Priorities per thread (_serve): the writer thread at the daemon's, the rest below it.
    path, device = argv
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    gc.disable()  # see _collect
    asyncio.run(_serve(path, device, sys.stdin.buffer, sys.stdout.buffer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
