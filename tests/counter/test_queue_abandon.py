"""A job its caller gave up on (the pass desk, when a card printer fails) never prints later."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from test_queue import WAIT, Events, job, templates

from drivers.printers.boca import BocaPrinter
from drivers.printers.fglrender import render
from drivers.printers.transports import FileTransport
from edge.counter.printqueue import JobState, PrintQueue
from edge.store.database import Store


async def test_an_abandoned_job_is_failed_and_never_printed(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "edge.db")
    out = tmp_path / "tickets.fgl"
    events = Events()
    printer = BocaPrinter("tickets", FileTransport(str(out)))
    queue = PrintQueue(store, {"tickets": printer}, templates(tmp_path), on_change=events.on_change)
    try:
        await queue.submit(job(1))
        await queue.submit(job(2))
        assert await queue.abandon("job-1", "the desk gave up") is True
        runner = asyncio.create_task(queue.run())
        try:
            await events.until(
                lambda: (r := queue.job("job-2")) is not None and r.state is JobState.DONE
            )
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(runner, WAIT)
        first = queue.job("job-1")
        assert first is not None
        assert (first.state, first.error) == (JobState.FAILED, "the desk gave up")
        assert await queue.abandon("job-2", "too late") is False  # printed: stays done
        tickets = render(out.read_bytes(), 384, 1100)
        assert len(tickets) == 1
    finally:
        await printer.close()
        await store.close()


async def test_a_job_abandoned_after_the_worker_read_it_is_not_printed(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "edge.db")
    out = tmp_path / "tickets.fgl"
    printer = BocaPrinter("tickets", FileTransport(str(out)))
    queue = PrintQueue(store, {"tickets": printer}, templates(tmp_path))
    try:
        await queue.submit(job(1))
        taken = store.next_print_job("tickets")  # the worker read it ...
        assert taken is not None
        assert await queue.abandon("job-1", "the desk gave up")  # ... the desk gave up ...
        await queue._print("tickets", taken)  # ... and the worker goes on: nothing printed
        assert not out.exists()
        record = queue.job("job-1")
        assert record is not None
        assert record.state is JobState.FAILED
    finally:
        await printer.close()
        await store.close()
