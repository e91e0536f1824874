"""The durable print queue: every accepted job is printed once or marked failed.

`submit` validates and renders a job before it is stored (bad input never reaches a printer)
and returns the stored record; submitting the same job id again stores and prints nothing.
One worker per printer takes the oldest queued job, marks it `printing` in the store, sends it
and marks it `done`. Errors decide what happens next:

- paper out or a printer that needs staff (jam, head open): the printer had not printed the
  job (or dropped it, in purge mode); it goes back to `queued`, the printer is paused and
  polled until it is ready, then the queue resumes in order;
- a printer that could not be reached or refused before the job was sent: retried with
  backoff, up to MAX_ATTEMPTS, then `failed`;
- a job sent but not confirmed: `failed` at once, because sending it again could print it
  twice. A restart finds such jobs still `printing` and fails them the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from drivers.protocols import Printer, PrinterState
from edge.core.errors import (
    DeviceError,
    PaperOutError,
    PrinterAttentionError,
    PrinterError,
    PrintUncertainError,
    StoreError,
)
from edge.counter.templates import Template
from edge.store.printjobs import Enqueued, JobRecord, JobState, PrintJobStore, QueuedJob

# The store defines a job's record and states; callers of the queue take them from here.
__all__ = ["INTERRUPTED", "JobRecord", "JobState", "PrintJob", "PrintQueue"]

_LOGGER = logging.getLogger(__name__)

MAX_ATTEMPTS = 5  # sends of one job that failed before it reached the printer
RETRY_DELAY = 2.0  # seconds before the first retry; doubles per attempt
MAX_RETRY_DELAY = 60.0
PAUSE_POLL = 5.0  # seconds between status polls of a paused printer
IDLE_POLL = 2.0  # seconds between looks for jobs another process (`edge print submit`) stored
STATUS_INTERVAL = 30.0  # seconds between status requests to an idle printer (for metrics)
MAX_JOB_ID = 128
INTERRUPTED = (
    "interrupted while printing (the edge stopped): it may have printed; "
    "check the printer and submit again under a new job id if it did not"
)


@dataclass(frozen=True, slots=True)
class PrintJob:
    """A request to print one ticket or card (the local API and the CLI build these)."""

    job_id: str  # chosen by the caller; resubmitting the same id prints nothing new
    template: str
    fields: Mapping[str, str]
    images: Mapping[str, bytes] = field(default_factory=dict)  # e.g. a card's photo
    printer: str | None = None  # default: the first printer for the template's kind


_ENDED = (JobState.DONE, JobState.FAILED)


class PrintQueue:
    """Jobs in the store, and one worker per printer."""

    def __init__(
        self,
        store: PrintJobStore,
        printers: Mapping[str, Printer],
        templates: Mapping[str, Template],
        *,
        retry_delay: float = RETRY_DELAY,
        max_attempts: int = MAX_ATTEMPTS,
        pause_poll: float = PAUSE_POLL,
        idle_poll: float = IDLE_POLL,
        status_interval: float = STATUS_INTERVAL,
        on_finished: Callable[[JobRecord], None] | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self.printers = dict(printers)
        self.templates = dict(templates)
        self._retry_delay = retry_delay
        self._max_attempts = max_attempts
        self._pause_poll = pause_poll
        self._idle_poll = idle_poll
        self._status_interval = status_interval
        self._on_finished = on_finished
        self._on_change = on_change or (lambda: None)  # any job or pause changed (tests, UI)
        self._wake = {name: asyncio.Event() for name in self.printers}
        self.paused: dict[str, str] = {}  # printer name -> why it is paused
        self.finished: dict[tuple[str, str], int] = {}  # (printer, done|failed) -> count
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}  # job id -> `wait` callers

    # -- submitting ----------------------------------------------------------------------------

    def _printer_for(self, job: PrintJob, template: Template) -> str:
        if job.printer is not None:
            printer = self.printers.get(job.printer)
            if printer is None:
                raise PrinterError(
                    f"no printer {job.printer!r}; printers: {', '.join(self.printers) or 'none'}"
                )
            if printer.kind != template.kind.value:
                raise PrinterError(
                    f"printer {job.printer!r} prints {printer.kind}s, template "
                    f"{template.name!r} is a {template.kind.value}"
                )
            return job.printer
        for name, printer in self.printers.items():
            if printer.kind == template.kind.value:
                return name
        raise PrinterError(f"no printer for {template.kind.value}s is configured")

    async def submit(self, job: PrintJob) -> JobRecord:
        """Validate, render and store a job; PrinterError (nothing stored) if it is bad."""
        if not 1 <= len(job.job_id) <= MAX_JOB_ID or not job.job_id.isprintable():
            raise PrinterError(f"a job id is 1..{MAX_JOB_ID} printable characters")
        template = self.templates.get(job.template)
        if template is None:
            raise PrinterError(
                f"no template {job.template!r}; templates: {', '.join(self.templates) or 'none'}"
            )
        printer = self._printer_for(job, template)
        # Rendering draws images (Pillow): off the loop.
        document = await asyncio.to_thread(template.render, job.fields, job.images)
        digest = hashlib.sha256(document).digest()
        found = await self._store.enqueue_print_job(
            job.job_id, printer, template.name, document, digest
        )
        if found is Enqueued.OTHER:
            raise PrinterError(
                f"job id {job.job_id!r} was already used for a different job; "
                "nothing was printed for this one"
            )
        inserted = found is Enqueued.NEW
        record = self.job(job.job_id)
        if record is None:  # committed just above
            raise StoreError(f"job {job.job_id!r} vanished after it was stored")
        if inserted:
            _LOGGER.info("%s: job %s queued (%s)", printer, job.job_id, template.name)
            self._wake[printer].set()
            return record
        _LOGGER.info("%s: job %s was submitted again; nothing new", printer, job.job_id)
        return dataclasses.replace(record, duplicate=True)

    # -- reading -------------------------------------------------------------------------------

    def job(self, job_id: str) -> JobRecord | None:
        """A job's record."""
        return self._store.print_job(job_id)

    def jobs(self, limit: int = 50) -> list[JobRecord]:
        """The latest jobs, newest first."""
        return self._store.print_jobs(limit)

    def pending(self) -> dict[str, int]:
        """Jobs queued or printing, per printer."""
        return dict.fromkeys(self.printers, 0) | self._store.open_print_jobs()

    async def wait(self, job_id: str) -> JobRecord | None:
        """The job's record once it ended or went back in line after a failed send (its
        `error` set); at once if it is so already. Bound it with `asyncio.timeout`."""
        loop = asyncio.get_running_loop()
        while True:
            record = self._store.print_job(job_id)
            if record is None or record.state in _ENDED or record.error is not None:
                return record
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(job_id, []).append(waiter)
            try:
                # The worker wakes us; the stored state is read again at least every
                # idle_poll, for a job another process (`edge print`) may have changed.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._idle_poll):
                        await waiter
            finally:
                waiters = self._waiters.get(job_id, [])
                if waiter in waiters:
                    waiters.remove(waiter)
                if not waiters:
                    self._waiters.pop(job_id, None)

    def _settled(self, job_id: str) -> None:
        """Wake whoever waits for this job: it ended or went back in line."""
        for waiter in self._waiters.pop(job_id, []):
            if not waiter.done():
                waiter.set_result(None)

    async def abandon(self, job_id: str, why: str) -> bool:
        """Fail a job still waiting in the queue (its caller gave up); False if it is past that."""
        abandoned = await self._store.abandon_print_job(job_id, why)
        if abandoned:
            _LOGGER.info("job %s abandoned: %s", job_id, why)
            self._settled(job_id)
            self._on_change()
        return abandoned

    # -- printing ------------------------------------------------------------------------------

    async def recover(self) -> int:
        """Fail jobs a previous run left `printing` or sent to a printer no longer configured."""
        interrupted, orphaned = await self._store.fail_stale_print_jobs(INTERRUPTED, self.printers)
        if interrupted or orphaned:
            _LOGGER.warning(
                "print queue: %d jobs interrupted by a restart and %d for removed printers "
                "marked failed",
                interrupted,
                orphaned,
            )
        return int(interrupted + orphaned)

    async def run(self) -> None:
        """Recover, then print until cancelled (one worker per printer)."""
        await self.recover()
        async with asyncio.TaskGroup() as group:
            for name in self.printers:
                group.create_task(self._worker(name))

    async def _set(self, job_id: str, state: JobState, attempts: int, error: str | None) -> None:
        await self._store.set_print_job(job_id, state, attempts, error)
        self._settled(job_id)
        self._on_change()

    async def _claim(self, job_id: str, attempts: int) -> bool:
        """Mark a queued job printing; False if it is no longer queued (abandoned)."""
        claimed = await self._store.claim_print_job(job_id, attempts)
        self._on_change()
        return claimed

    def _finish(self, printer: str, job_id: str, outcome: str) -> None:
        key = (printer, outcome)
        self.finished[key] = self.finished.get(key, 0) + 1
        record = self.job(job_id)
        if self._on_finished is not None and record is not None:
            self._on_finished(record)

    async def _worker(self, name: str) -> None:
        wake = self._wake[name]
        asked = -math.inf
        while True:
            try:
                job = self._store.next_print_job(name)
                if job is None:
                    if time.monotonic() - asked >= self._status_interval:
                        # An idle printer's state (paper out, unplugged) shows before a job.
                        await self.printers[name].status()
                        asked = time.monotonic()
                        self._on_change()
                    wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), self._idle_poll)
                    continue
                await self._print(name, job)
            except StoreError as err:
                _LOGGER.error("%s: print queue cannot use the store: %s", name, err)
                await asyncio.sleep(self._retry_delay)

    async def _print(self, name: str, job: QueuedJob) -> None:
        printer = self.printers[name]
        job_id, attempts = job.job_id, job.attempts
        if not await self._claim(job_id, attempts + 1):
            return  # abandoned since it was read: never print it
        started = time.monotonic()
        try:
            await printer.print(job.document)
        except (PaperOutError, PrinterAttentionError) as err:
            # Not printed (or dropped by the printer): back in line, first when it resumes.
            await self._set(job_id, JobState.QUEUED, attempts, str(err))
            await self._pause(name, printer, str(err))
        except PrintUncertainError as err:
            await self._set(job_id, JobState.FAILED, attempts + 1, str(err))
            _LOGGER.error("%s: job %s failed: %s", name, job_id, err)
            self._finish(name, job_id, "failed")
        except (PrinterError, DeviceError) as err:
            await self._retry_or_fail(name, job_id, attempts, err)
        except Exception as err:  # a driver bug must not take the gate lanes down with it
            _LOGGER.exception("%s: job %s: the driver failed unexpectedly", name, job_id)
            await self._set(job_id, JobState.FAILED, attempts + 1, f"internal error: {err!r}")
            self._finish(name, job_id, "failed")
        else:
            await self._set(job_id, JobState.DONE, attempts + 1, None)
            _LOGGER.info(
                "%s: job %s printed in %.0f ms", name, job_id, (time.monotonic() - started) * 1000
            )
            self._finish(name, job_id, "done")

    async def _retry_or_fail(
        self, name: str, job_id: str, attempts: int, err: PrinterError | DeviceError
    ) -> None:
        """Back in line after a delay, or failed after MAX_ATTEMPTS sends."""
        if attempts + 1 >= self._max_attempts:
            await self._set(job_id, JobState.FAILED, attempts + 1, str(err))
            _LOGGER.error(
                "%s: job %s failed after %d attempts: %s", name, job_id, attempts + 1, err
            )
            self._finish(name, job_id, "failed")
            return
        await self._set(job_id, JobState.QUEUED, attempts + 1, str(err))
        delay = min(MAX_RETRY_DELAY, self._retry_delay * 2**attempts)
        _LOGGER.warning("%s: job %s not sent (%s); retry in %.0f s", name, job_id, err, delay)
        await asyncio.sleep(delay)

    async def _pause(self, name: str, printer: Printer, why: str) -> None:
        self.paused[name] = why
        self._on_change()
        _LOGGER.warning("%s: paused: %s", name, why)
        while True:
            await asyncio.sleep(self._pause_poll)
            state = await printer.status()
            if state in (PrinterState.READY, PrinterState.UNKNOWN):
                break
        del self.paused[name]
        self._on_change()
        _LOGGER.info("%s: ready again; resuming", name)
