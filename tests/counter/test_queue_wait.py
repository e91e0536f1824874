"""A caller (the pass desk) awaits its job's end instead of polling the queue."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from test_queue import WAIT, job, templates

from drivers.printers.boca import BocaPrinter
from drivers.printers.transports import FileTransport
from edge.counter.printqueue import JobState, PrintQueue
from edge.store.database import Store


async def test_wait_returns_when_the_worker_ends_the_job(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "edge.db")
    printer = BocaPrinter("tickets", FileTransport(str(tmp_path / "tickets.fgl")))
    # A long idle poll: only the worker's wake-up can end the wait in time.
    queue = PrintQueue(store, {"tickets": printer}, templates(tmp_path), idle_poll=3600.0)
    try:
        await queue.submit(job(1))
        waiting = asyncio.create_task(queue.wait("job-1"))
        await asyncio.sleep(0)  # the waiter is registered before the worker starts
        assert not waiting.done()
        runner = asyncio.create_task(queue.run())
        try:
            async with asyncio.timeout(WAIT):
                record = await waiting
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(runner, WAIT)
        assert record is not None
        assert record.state is JobState.DONE
        assert queue._waiters == {}  # nothing left behind
        ended = await queue.wait("job-1")  # already ended: at once, from the store
        assert ended == record
        assert await queue.wait("no-such-job") is None
    finally:
        await printer.close()
        await store.close()


async def test_wait_returns_when_the_job_is_abandoned(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "edge.db")
    printer = BocaPrinter("tickets", FileTransport(str(tmp_path / "tickets.fgl")))
    queue = PrintQueue(store, {"tickets": printer}, templates(tmp_path), idle_poll=3600.0)
    try:
        await queue.submit(job(1))
        waiting = asyncio.create_task(queue.wait("job-1"))
        await asyncio.sleep(0)
        assert await queue.abandon("job-1", "the desk gave up")
        async with asyncio.timeout(WAIT):
            record = await waiting
        assert record is not None
        assert (record.state, record.error) == (JobState.FAILED, "the desk gave up")
    finally:
        await printer.close()
        await store.close()
