"""The bulk worker process: verifies with the store's keys, writes facts, survives a crash."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import weakref
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from threads import nice, nice_values

from edge.core.errors import SyncError
from edge.store.database import Store
from sync import protocol
from sync.client.bulk import BulkWorker, _collect, _frame, _frame_head
from sync.protocol import EnvelopeKind, Revocation, RevokeCode

KEY = Ed25519PrivateKey.generate()


def _changes(first: int, count: int, key: Ed25519PrivateKey = KEY) -> bytes:
    changes = [RevokeCode(os.urandom(16), Revocation.REVOKED) for _ in range(count)]
    return protocol.seal(
        EnvelopeKind.CHANGES, 1, key, first=first, last=first + count, at_ms=1, changes=changes
    )


async def test_the_worker_writes_only_what_verifies_and_restarts_after_a_crash(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "edge.db")
    await store.put_keys([(1, protocol.public_bytes(KEY), False)])
    worker = BulkWorker(store.path, "gate-1")
    try:
        with pytest.raises(protocol.ProtocolError, match="does not verify"):
            await worker.open(
                _changes(0, 10, Ed25519PrivateKey.generate()), (EnvelopeKind.CHANGES,)
            )
        with pytest.raises(protocol.ProtocolError, match="not accepted here"):
            await worker.open(_changes(0, 10), (EnvelopeKind.SNAPSHOT,))
        opened = await worker.open(_changes(0, 3_000), (EnvelopeKind.CHANGES,))
        assert (opened.first, opened.last, opened.changes) == (0, 3_000, 3_000)
        assert store.stats().revoked_codes == 0  # opening writes nothing
        await worker.write(opened, since=1_000)
        assert store.stats().revoked_codes == 2_000
        assert store.cursor("sync.revision") is None  # cursors are the daemon's to move

        pending = await worker.open(_changes(3_000, 10), (EnvelopeKind.CHANGES,))
        assert worker._process is not None
        worker._process.send_signal(signal.SIGKILL)
        await worker._process.wait()
        with pytest.raises(SyncError, match="bulk worker"):
            await worker.write(pending)  # the crashed worker's envelope is gone
        again = await worker.open(_changes(3_000, 10), (EnvelopeKind.CHANGES,))
        await worker.write(again)
        assert store.stats().revoked_codes == 2_010
    finally:
        await worker.close()
        await store.close()


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
async def test_the_worker_yields_the_cpu_except_in_its_writer_threads(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "edge.db")
    await store.put_keys([(1, protocol.public_bytes(KEY), False)])
    worker = BulkWorker(store.path, "gate-1")
    try:
        opened = await worker.open(_changes(0, 100), (EnvelopeKind.CHANGES,))
        await worker.write(opened)
        assert worker._process is not None
        pid = worker._process.pid
        ours = nice(os.getpid())
        nices = nice_values(pid)
        assert nices[pid] == max(ours, 10)  # its main thread: requests, decoding, rows
        # The threads that verified and read requests yield too; only the store's two
        # writers (its files' write locks, which the daemon's writes may wait for) keep our
        # priority.
        assert sorted(nices.values()).count(ours) == 2, nices
    finally:
        await worker.close()
        await store.close()


class _Cycle:
    me: _Cycle | None = None


async def test_the_workers_garbage_is_collected_only_while_no_write_runs() -> None:
    # A collection holds the interpreter lock throughout; during a write the worker's writer
    # thread, holding the journal's write lock, would wait for it, and a lane's record with it.
    writing = asyncio.Lock()
    enabled = gc.isenabled()
    gc.disable()  # as in the worker
    try:
        cycle = _Cycle()
        cycle.me = cycle
        alive = weakref.ref(cycle)
        del cycle
        async with writing:
            _collect(writing, {})
            assert alive() is not None
        _collect(writing, {7: "an opened envelope"})  # the young generations only
        assert alive() is None
    finally:
        if enabled:
            gc.enable()


@pytest.mark.parametrize("size", [0, 255, 256, 65_535, 65_536, 3 << 20])
def test_an_envelope_sent_in_pieces_is_the_frame_packb_would_write(size: int) -> None:
    request = {"op": "open", "id": 7, "kinds": [1], "rid": 9}
    data = os.urandom(size)
    assert _frame_head(request, data) + data == _frame({**request, "data": data})


async def test_large_envelopes_sent_at_once_reach_the_worker_whole(tmp_path: Path) -> None:
    """Each goes out in pieces as the pipe takes them; two at once must not interleave."""
    store = await Store.open(tmp_path / "edge.db")
    await store.put_keys([(1, protocol.public_bytes(KEY), False)])
    worker = BulkWorker(store.path, "gate-1")
    try:
        envelopes = [_changes(first, 40_000) for first in (0, 40_000, 80_000)]
        assert min(len(e) for e in envelopes) > 1 << 20  # many pieces each
        opened = await asyncio.gather(*(worker.open(e, (EnvelopeKind.CHANGES,)) for e in envelopes))
        assert [(o.first, o.changes) for o in opened] == [(n, 40_000) for n in (0, 40_000, 80_000)]
        for one in opened:
            await worker.write(one)
        assert store.stats().revoked_codes == 120_000
    finally:
        await worker.close()
        await store.close()
