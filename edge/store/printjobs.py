"""The print queue's part of the store: jobs, their documents and their states."""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge.store.base import StoreBase, from_ms, now_ms


class JobState(enum.Enum):
    """Where a job is."""

    QUEUED = "queued"  # stored, waiting for its printer
    PRINTING = "printing"  # being sent; on restart this means "may have printed"
    DONE = "done"  # the printer confirmed it (or took it, on a one-way connection)
    FAILED = "failed"  # will not be printed; `error` says why


class Enqueued(enum.Enum):
    """What storing a job found."""

    NEW = "new"  # stored now
    SAME = "same"  # this job id was stored before with the same document
    OTHER = "other"  # this job id was stored before with another document: nothing stored


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job as the store keeps it."""

    job_id: str
    printer: str
    template: str
    state: JobState
    attempts: int
    error: str | None
    submitted_at: datetime
    finished_at: datetime | None
    duplicate: bool = False  # this submission found the job already stored


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """The next job of a printer, as its worker sends it."""

    job_id: str
    document: bytes
    attempts: int


_SELECT = (
    "SELECT job_id, printer, template, state, attempts, error, submitted_at, finished_at"
    " FROM print_jobs"
)


def _record(row: tuple[Any, ...]) -> JobRecord:
    job_id, printer, template, state, attempts, error, submitted, finished = row
    return JobRecord(
        str(job_id),
        str(printer),
        str(template),
        JobState(state),
        int(attempts),
        None if error is None else str(error),
        from_ms(int(submitted)),
        None if finished is None else from_ms(int(finished)),
    )


class PrintJobStore(StoreBase):
    """What the print queue may do: store jobs, claim them, mark their states, list them."""

    async def enqueue_print_job(
        self, job_id: str, printer: str, template: str, document: bytes, digest: bytes
    ) -> Enqueued:
        """Store a queued job unless its id is taken; what was found."""
        submitted = now_ms()

        def write(conn: sqlite3.Connection) -> tuple[bool, Any]:
            cursor = conn.execute(
                "INSERT INTO print_jobs (job_id, printer, template, document, digest, state,"
                " submitted_at) VALUES (?, ?, ?, ?, ?, 'queued', ?)"
                " ON CONFLICT (job_id) DO NOTHING",
                (job_id, printer, template, document, digest, submitted),
            )
            if cursor.rowcount == 1:
                return True, None
            return False, conn.execute(
                "SELECT digest FROM print_jobs WHERE job_id = ?", (job_id,)
            ).fetchone()

        new, row = await self._bulk(write)
        if new:
            return Enqueued.NEW
        if row is not None and bytes(row[0]) != digest:
            return Enqueued.OTHER
        return Enqueued.SAME

    def print_job(self, job_id: str) -> JobRecord | None:
        """A job's record."""
        row = self._reader.execute(f"{_SELECT} WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else _record(row)

    def print_jobs(self, limit: int = 50) -> list[JobRecord]:
        """The latest jobs, newest first."""
        rows = self._reader.execute(f"{_SELECT} ORDER BY seq DESC LIMIT ?", (limit,))
        return [_record(row) for row in rows]

    def open_print_jobs(self) -> dict[str, int]:
        """Jobs queued or printing, per printer that has any."""
        rows = self._reader.execute(
            "SELECT printer, count(*) FROM print_jobs WHERE state IN ('queued', 'printing')"
            " GROUP BY printer"
        )
        return {str(printer): int(count) for printer, count in rows}

    def next_print_job(self, printer: str) -> QueuedJob | None:
        """The oldest queued job of a printer."""
        row = self._reader.execute(
            "SELECT job_id, document, attempts FROM print_jobs"
            " WHERE printer = ? AND state = 'queued' ORDER BY seq LIMIT 1",
            (printer,),
        ).fetchone()
        if row is None:
            return None
        job_id, document, attempts = row
        return QueuedJob(str(job_id), bytes(document), int(attempts))

    async def claim_print_job(self, job_id: str, attempts: int) -> bool:
        """Mark a queued job printing; False if it is no longer queued (abandoned)."""
        return await self._changed(
            "UPDATE print_jobs SET state = 'printing', attempts = ?, error = NULL"
            " WHERE job_id = ? AND state = 'queued'",
            (attempts, job_id),
        )

    async def set_print_job(
        self, job_id: str, state: JobState, attempts: int, error: str | None
    ) -> None:
        """Set a job's state; a done or failed job gets its finishing time."""
        final = state in (JobState.DONE, JobState.FAILED)
        await self._transaction(
            [
                (
                    (
                        "UPDATE print_jobs SET state = ?, attempts = ?, error = ?,"
                        " finished_at = ? WHERE job_id = ?"
                    ),
                    [(state.value, attempts, error, now_ms() if final else None, job_id)],
                )
            ]
        )

    async def abandon_print_job(self, job_id: str, why: str) -> bool:
        """Fail a job that is still queued; False if it is past that."""
        return await self._changed(
            "UPDATE print_jobs SET state = 'failed', error = ?, finished_at = ?"
            " WHERE job_id = ? AND state = 'queued'",
            (why, now_ms(), job_id),
        )

    async def fail_stale_print_jobs(
        self, interrupted: str, printers: Iterable[str]
    ) -> tuple[int, int]:
        """Fail jobs left `printing` (with error `interrupted`) and queued jobs of printers
        not in `printers`; (interrupted, orphaned) counts."""
        names = list(printers)
        now = now_ms()
        marks = ", ".join("?" for _ in names) or "''"

        def write(conn: sqlite3.Connection) -> tuple[int, int]:
            stopped = conn.execute(
                "UPDATE print_jobs SET state = 'failed', error = ?, finished_at = ?"
                " WHERE state = 'printing'",
                (interrupted, now),
            ).rowcount
            orphaned = conn.execute(
                "UPDATE print_jobs SET state = 'failed', error = 'its printer ' || printer ||"
                f" ' is no longer configured', finished_at = ? WHERE state = 'queued'"
                f" AND printer NOT IN ({marks})",
                (now, *names),
            ).rowcount
            return int(stopped), int(orphaned)

        return await self._bulk(write)

    async def _changed(self, sql: str, params: tuple[Any, ...]) -> bool:
        """Run one statement; True if it changed exactly one row."""

        def write(conn: sqlite3.Connection) -> bool:
            return conn.execute(sql, params).rowcount == 1

        return await self._bulk(write)
