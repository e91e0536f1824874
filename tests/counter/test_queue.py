"""The durable print queue with real printers' bytes: once, retried, paused, after restarts."""

from __future__ import annotations

import asyncio
import contextlib
import tomllib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import zxingcpp
from printers.sim import PRODUCT, VENDOR, BocaSimulator, TcpPrinter, UsbPrinterBackend

from drivers.printers.boca import BocaPrinter
from drivers.printers.fglrender import render
from drivers.printers.transports import FileTransport, TcpTransport, UsbTransport
from drivers.protocols import Printer, PrinterState
from edge.core.errors import PrinterError
from edge.counter.printqueue import INTERRUPTED, JobRecord, JobState, PrintJob, PrintQueue
from edge.counter.templates import Template
from edge.store.database import Store

FAST = {"status_timeout": 1.0, "print_timeout": 2.0, "busy_timeout": 1.0}  # generous: shared CPUs
WAIT = 20.0  # seconds a test waits for an outcome before it fails

TEMPLATE = tomllib.loads(
    """
name = "day"
kind = "ticket"
fields = ["title", "code"]
[[items]]
type = "text"
x = 20
y = 20
text = "{title}"
font = "F6"
[[items]]
type = "qr"
x = 40
y = 90
data = "{code}"
module = 5
"""
)


def templates(tmp_path: Path) -> dict[str, Template]:
    return {"day": Template.from_table(TEMPLATE, "templates[0]", str(tmp_path / "e.toml"))}


def job(n: int, **extra: object) -> PrintJob:
    return PrintJob(f"job-{n}", "day", {"title": "CITY MUSEUM", "code": f"EDGE:{n}"}, **extra)  # type: ignore[arg-type]


def codes(sim: BocaSimulator) -> list[str]:
    return [r.text for image in sim.tickets for r in zxingcpp.read_barcodes(image)]


class Events:
    """Finished jobs and pauses as they happen, so tests wait without sleeping."""

    def __init__(self) -> None:
        self.finished: asyncio.Queue[JobRecord] = asyncio.Queue()
        self.changed = asyncio.Event()

    def on_change(self) -> None:
        self.changed.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        """Wait for the queue to change until `condition` holds."""
        async with asyncio.timeout(WAIT):
            while not condition():
                self.changed.clear()
                await self.changed.wait()

    def on_finished(self, record: JobRecord) -> None:
        self.finished.put_nowait(record)

    async def next(self, count: int = 1) -> list[JobRecord]:
        return [await asyncio.wait_for(self.finished.get(), WAIT) for _ in range(count)]


@contextlib.asynccontextmanager
async def running(
    store: Store, printers: dict[str, Printer], tmp_path: Path, **options: object
) -> AsyncIterator[tuple[PrintQueue, Events]]:
    events = Events()
    queue = PrintQueue(
        store, printers, templates(tmp_path), on_finished=events.on_finished,
        on_change=events.on_change,
        retry_delay=0.01, pause_poll=0.05, **options,  # type: ignore[arg-type]
    )  # fmt: skip
    task = asyncio.create_task(queue.run())
    try:
        yield queue, events
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_job_prints_once_and_a_resubmission_prints_nothing(
    store: Store, tmp_path: Path
) -> None:
    out = tmp_path / "printer.fgl"
    printers: dict[str, Printer] = {"box": BocaPrinter("box", FileTransport(out))}
    async with running(store, printers, tmp_path) as (queue, events):
        first = await queue.submit(job(1))
        assert (first.state, first.duplicate) == (JobState.QUEUED, False)
        (done,) = await events.next()
        assert (done.job_id, done.state, done.attempts) == ("job-1", JobState.DONE, 1)
        again = await queue.submit(job(1))
        assert again.duplicate
        assert again.state is JobState.DONE
        await queue.submit(job(2))
        await events.next()
    tickets = render(out.read_bytes(), 384, 1100)
    assert [r.text for t in tickets for r in zxingcpp.read_barcodes(t)] == ["EDGE:1", "EDGE:2"]


async def test_a_reused_id_with_other_content_is_refused(store: Store, tmp_path: Path) -> None:
    printers: dict[str, Printer] = {"box": BocaPrinter("box", FileTransport(tmp_path / "o"))}
    queue = PrintQueue(store, printers, templates(tmp_path))
    await queue.submit(job(1))
    other = PrintJob("job-1", "day", {"title": "OTHER", "code": "EDGE:1"})
    with pytest.raises(PrinterError, match="already used for a different job"):
        await queue.submit(other)
    assert queue.pending() == {"box": 1}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (PrintJob("j", "night", {}), "no template 'night'"),
        (PrintJob("j", "day", {"title": "x"}), "needs field 'code'"),
        (PrintJob("j", "day", {"title": "x", "code": "c", "seat": "4"}), "no field 'seat'"),
        (PrintJob("j", "day", {"title": "Café", "code": "c"}), r"U\+00E9"),
        (PrintJob("j", "day", {"title": "x" * 60, "code": "c"}), "does not fit"),
        (PrintJob("", "day", {"title": "x", "code": "c"}), "job id"),
        (PrintJob("j", "day", {"title": "x", "code": "c"}, printer="cards"), "no printer 'cards'"),
    ],
)
async def test_bad_jobs_are_refused_and_nothing_is_stored(
    store: Store, tmp_path: Path, bad: PrintJob, message: str
) -> None:
    out = tmp_path / "printer.fgl"
    printers: dict[str, Printer] = {"box": BocaPrinter("box", FileTransport(out))}
    queue = PrintQueue(store, printers, templates(tmp_path))
    with pytest.raises(PrinterError, match=message):
        await queue.submit(bad)
    assert queue.jobs() == []
    assert not out.exists()


async def test_paper_out_mid_batch_pauses_and_resumes_in_order(
    store: Store, tmp_path: Path
) -> None:
    sim = BocaSimulator(paper=3)
    server = TcpPrinter(sim)
    port = await server.start()
    printer = BocaPrinter("box", TcpTransport("127.0.0.1", port), **FAST)
    async with running(store, {"box": printer}, tmp_path) as (queue, events):
        for n in range(1, 6):
            await queue.submit(job(n))
        await events.next(3)
        await events.until(lambda: "box" in queue.paused)  # the 4th ticket hits the empty stack
        assert "out of tickets" in queue.paused["box"]
        assert queue.job("job-4").state is JobState.QUEUED  # type: ignore[union-attr]
        assert queue.pending() == {"box": 2}
        server.send(sim.refill(50))
        finished = await events.next(2)
        assert [r.job_id for r in finished] == ["job-4", "job-5"]
        assert "box" not in queue.paused
    await printer.close()
    await server.stop()
    assert codes(sim) == [f"EDGE:{n}" for n in range(1, 6)]  # each exactly once, in order
    assert sim.dropped == 1  # the ticket the printer could not finish was dropped, then resent


async def test_an_unplugged_printer_is_retried_then_prints(store: Store, tmp_path: Path) -> None:
    sim = BocaSimulator()
    backend = UsbPrinterBackend(sim)
    backend.plugged = False
    printer = BocaPrinter("box", UsbTransport(VENDOR, PRODUCT, backend=backend), **FAST)
    async with running(store, {"box": printer}, tmp_path, max_attempts=1000) as (queue, events):
        await queue.submit(job(1))

        def retried() -> bool:
            record = queue.job("job-1")
            return record is not None and record.attempts >= 3 and record.state is JobState.QUEUED

        await events.until(retried)
        record = queue.job("job-1")
        assert record is not None
        assert record.state is JobState.QUEUED
        assert "not connected" in (record.error or "")
        backend.plugged = True
        (done,) = await events.next()
        assert done.state is JobState.DONE
    assert codes(sim) == ["EDGE:1"]


async def test_a_printer_gone_for_good_fails_the_job_with_the_reason(
    store: Store, tmp_path: Path
) -> None:
    backend = UsbPrinterBackend(BocaSimulator())
    backend.plugged = False
    printer = BocaPrinter("box", UsbTransport(VENDOR, PRODUCT, backend=backend), **FAST)
    async with running(store, {"box": printer}, tmp_path, max_attempts=3) as (queue, events):
        await queue.submit(job(1))
        (failed,) = await events.next()
    assert (failed.state, failed.attempts) == (JobState.FAILED, 3)
    assert "not connected" in (failed.error or "")


class SilentAfterTicket(BocaSimulator):
    """Takes a ticket, then stops answering: did it print? Nobody can tell."""

    def _ticket(self, chunk: bytes) -> bytes:
        reply = super()._ticket(chunk)
        self.fault = 0x1B  # any fault: the printer no longer answers <S1>
        return reply


async def test_an_unconfirmed_job_fails_and_is_never_resent(store: Store, tmp_path: Path) -> None:
    sim = SilentAfterTicket()
    server = TcpPrinter(sim)
    port = await server.start()
    printer = BocaPrinter("box", TcpTransport("127.0.0.1", port), **FAST)
    async with running(store, {"box": printer}, tmp_path) as (queue, events):
        await queue.submit(job(1))
        (failed,) = await events.next()
    await printer.close()
    await server.stop()
    assert failed.state is JobState.FAILED
    assert "sent, but no confirmation (offline)" in (failed.error or "")
    assert sim.received.count(b"EDGE:1") == 1


async def test_queued_jobs_survive_a_restart_and_interrupted_ones_fail(tmp_path: Path) -> None:
    db = tmp_path / "edge.db"
    out = tmp_path / "printer.fgl"
    store = await Store.open(db)
    queue = PrintQueue(store, {"box": BocaPrinter("box", FileTransport(out))}, templates(tmp_path))
    for n in range(1, 4):
        await queue.submit(job(n))
    # The edge died while sending job-1: a worker had claimed it (marked it printing).
    assert await store.claim_print_job("job-1", 1)
    await store.close()

    store = await Store.open(db)
    try:
        printers: dict[str, Printer] = {"box": BocaPrinter("box", FileTransport(out))}
        async with running(store, printers, tmp_path) as (queue, events):
            finished = await events.next(2)
            assert [r.job_id for r in finished] == ["job-2", "job-3"]
            interrupted = queue.job("job-1")
            assert interrupted is not None
            assert (interrupted.state, interrupted.error) == (JobState.FAILED, INTERRUPTED)
            assert (await queue.submit(job(1))).duplicate  # and resubmitting does not print it
            assert queue.pending() == {"box": 0}
    finally:
        await store.close()
    tickets = render(out.read_bytes(), 384, 1100)
    assert [r.text for t in tickets for r in zxingcpp.read_barcodes(t)] == ["EDGE:2", "EDGE:3"]


async def test_an_idle_printer_is_asked_for_its_state(store: Store, tmp_path: Path) -> None:
    sim = BocaSimulator(paper=0)
    server = TcpPrinter(sim)
    port = await server.start()
    sim.fault = 0x18  # out of tickets before any job
    printer = BocaPrinter("box", TcpTransport("127.0.0.1", port), **FAST)
    options = {"status_interval": 0.0, "idle_poll": 0.05}
    async with running(store, {"box": printer}, tmp_path, **options) as (queue, events):
        await events.until(lambda: printer.state is PrinterState.OFFLINE)  # silent: no X-ON
        server.send(sim.refill(10))
        await events.until(lambda: printer.state is PrinterState.READY)
        assert queue.jobs() == []
    await printer.close()
    await server.stop()


class BrokenPrinter:
    """A driver with a bug on its first job."""

    name = "box"
    kind = "ticket"
    state = PrinterState.UNKNOWN

    def __init__(self) -> None:
        self.documents: list[bytes] = []

    async def print(self, document: bytes) -> None:
        if not self.documents:
            self.documents.append(b"")
            raise RuntimeError("bug")
        self.documents.append(document)

    async def status(self) -> PrinterState:
        return self.state

    async def close(self) -> None:
        pass


async def test_a_driver_bug_fails_the_job_and_the_queue_goes_on(
    store: Store, tmp_path: Path
) -> None:
    printer = BrokenPrinter()
    async with running(store, {"box": printer}, tmp_path) as (queue, events):
        await queue.submit(job(1))
        await queue.submit(job(2))
        first, second = await events.next(2)
    assert (first.job_id, first.state) == ("job-1", JobState.FAILED)
    assert first.error == "internal error: RuntimeError('bug')"
    assert (second.job_id, second.state) == ("job-2", JobState.DONE)
