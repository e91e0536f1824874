"""A lane: scanners on one or both sides of a turnstile, one actuator, one rule set.

scan -> Gate.admit (decide, journal durably) -> actuator -> report. Scans are handled one at
a time per lane, in arrival order; a flood beyond QUEUE_SIZE is dropped and counted.

Between the actuator's command and the report (log line, metrics, the scanner's reply) the
lane offers the CPU to whatever the command woke (sched_yield): a process that carries the
command on, such as a network bridge of a socket:// relay or the far end of a pseudo-terminal,
then runs before the report instead of after it on a one-core gate. A USB relay took its
frame in the write itself, and with nothing else to run the yield is one system call. With a
relay on a pseudo-terminal (the hotpath bench), an idle gate's scans reached the relay 0.25-0.3
ms sooner at the p50.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from drivers.protocols import Actuator, Outcome, ScanSource
from edge.core.decide import GateRules, Reason
from edge.core.errors import DeviceError, EdgeError
from edge.core.facts import Direction
from edge.core.messages import text
from edge.gate.gate import Check, Gate

_LOGGER = logging.getLogger(__name__)
# A queued scan: data, direction, arrival (monotonic), and whom to tell the outcome.
_Queued = tuple[bytes, Direction, float, Callable[[Outcome, str], None] | None]

QUEUE_SIZE = 64  # scans waiting for a lane; a person takes seconds, a queue this long is a fault
ACTUATOR_ATTEMPTS = 2  # a relay that misses one command usually takes the next
UNOPENED_MAX = 16  # admits whose turnstile did not open, kept so a re-scan opens it
SOURCE_RETRY_SECONDS = 2.0  # pause before re-opening a scanner that failed
ERROR_TEXT = {
    "en": "Please try again",
    "de": "Bitte erneut versuchen",
    "fr": "Veuillez réessayer",
}


def offer_cpu() -> None:
    """Let a runnable process (one the actuator's command woke) run first (Unix only)."""
    if hasattr(os, "sched_yield"):
        os.sched_yield()


@dataclass(frozen=True, slots=True)
class LaneResult:
    """What a lane did with one scan."""

    lane: str
    check: Check | None  # None when the decision could not be journaled
    repeat: bool  # the scanner re-read a code within the repeat window: no new passage
    actuated: bool  # the actuator carried out the outcome
    text: str
    outcome: Outcome = Outcome.REJECT
    seconds: float = 0.0  # time to decide and journal (monotonic); 0 for repeat reads
    error: str = ""  # why the decision could not be journaled (check is None)


class Lane:
    """Runs one lane until all its scanners end (the daemon's scanners never do)."""

    def __init__(
        self,
        *,
        rules: GateRules,
        gate: Gate,
        actuator: Actuator,
        sources: Sequence[tuple[ScanSource, Direction]],
        language: str = "en",
        repeat_window: float = 1.5,
        monotonic: Callable[[], float] = time.monotonic,
        on_result: Callable[[LaneResult], None] | None = None,
    ) -> None:
        self.name = rules.gate
        self.rules = rules
        self._gate = gate
        self._actuator = actuator
        self._sources = sources
        self._language = language
        self._repeat_window = repeat_window
        self._monotonic = monotonic
        self._on_result = on_result
        self._queue: asyncio.Queue[_Queued | None] = asyncio.Queue(QUEUE_SIZE)
        self._last: tuple[bytes, Direction, float, LaneResult] | None = None
        # Admitted (and journaled) scans whose turnstile did not open: scanning the same code
        # again retries the turnstile instead of deciding again ("already used").
        self._unopened: dict[tuple[bytes, Direction], LaneResult] = {}
        self.dropped = 0  # scans dropped because the lane was busy

    @property
    def devices(self) -> list[tuple[str, ScanSource | Actuator]]:
        """The lane's scanners and its actuator, each with its kind (health, metrics)."""
        kinds: list[tuple[str, ScanSource | Actuator]] = [("scanner", s) for s, _ in self._sources]
        return [*kinds, ("actuator", self._actuator)]

    @property
    def queued(self) -> int:
        """Scans waiting for the lane."""
        return self._queue.qsize()

    async def run(self) -> None:
        """Feed scans from every source through the lane."""
        async with asyncio.TaskGroup() as group:
            feeders = [group.create_task(self._feed(s, d)) for s, d in self._sources]
            worker = group.create_task(self._work())
            await asyncio.gather(*feeders)
            await self._queue.put(None)
            await worker

    async def _feed(self, source: ScanSource, direction: Direction) -> None:
        while True:
            try:
                async for scan in source.scans():
                    try:
                        self._queue.put_nowait((scan.data, direction, scan.at, scan.reply))
                    except asyncio.QueueFull:
                        self.dropped += 1
                        if self.dropped % 100 == 1:
                            _LOGGER.warning(
                                "%s: busy, dropped %d scans so far", self.name, self.dropped
                            )
                return
            except DeviceError as err:
                _LOGGER.error("%s: scanner %s failed: %s; retrying", self.name, source.name, err)
                await asyncio.sleep(SOURCE_RETRY_SECONDS)

    async def _work(self) -> None:
        while (item := await self._queue.get()) is not None:
            await self.handle(*item)

    async def handle(
        self,
        data: bytes,
        direction: Direction,
        at: float,
        reply: Callable[[Outcome, str], None] | None = None,
    ) -> LaneResult:
        """Decide, journal, actuate and report one scan; tell `reply` what it showed."""
        result = await self._handle(data, direction, at)
        if reply is not None:
            reply(result.outcome, result.text)
        return result

    async def _handle(self, data: bytes, direction: Direction, at: float) -> LaneResult:
        unopened = self._unopened.pop((data, direction), None)
        if unopened is not None:
            return await self._finish(data, direction, at, unopened, repeat=True)
        last = self._last
        if (
            last is not None
            and last[0] == data
            and last[1] is direction
            and at - last[2] <= self._repeat_window
        ):
            # The scanner read the same code again: the person is still at the gate.
            result = dataclasses.replace(last[3], repeat=True, actuated=False, seconds=0.0)
            self._last = (data, direction, at, last[3])
            self._report(result)
            return result
        started = self._monotonic()
        try:
            check = await self._gate.admit(data, self.rules, direction)
        except EdgeError as err:
            _LOGGER.error("%s: cannot journal a decision, gate stays closed: %s", self.name, err)
            message = ERROR_TEXT[self._language]
            await self._signal(Outcome.REJECT, message)
            result = LaneResult(
                self.name, None, repeat=False, actuated=False, text=message, error=str(err)
            )
            self._report(result)
            return result
        seconds = self._monotonic() - started
        decision = check.decision
        shown = decision
        if not decision.admitted and direction is Direction.EXIT and self.rules.free_exit:
            # A free exit opens whatever the central system would say; the journal (and so
            # the upload) keeps what it would have said.
            shown = dataclasses.replace(decision, reason=Reason.EXIT)
        if not shown.admitted:
            outcome = Outcome.REJECT
        elif direction is Direction.ENTRY:
            outcome = Outcome.ADMIT_ENTRY
        else:
            outcome = Outcome.ADMIT_EXIT
        result = LaneResult(
            self.name,
            check,
            repeat=False,
            actuated=False,
            text=text(shown, self._language),
            outcome=outcome,
            seconds=seconds,
        )
        return await self._finish(data, direction, at, result, repeat=False)

    async def _finish(
        self, data: bytes, direction: Direction, at: float, result: LaneResult, *, repeat: bool
    ) -> LaneResult:
        """Carry out a result's outcome, remember it, report it."""
        actuated = False
        for _ in range(ACTUATOR_ATTEMPTS):
            if actuated := await self._signal(result.outcome, result.text):
                break
        offer_cpu()
        result = dataclasses.replace(
            result, repeat=repeat, actuated=actuated, seconds=0.0 if repeat else result.seconds
        )
        if not actuated and result.outcome is not Outcome.REJECT:
            if len(self._unopened) >= UNOPENED_MAX:
                del self._unopened[next(iter(self._unopened))]
            self._unopened[(data, direction)] = result
        self._last = (data, direction, at, result)
        self._report(result)
        return result

    async def _signal(self, outcome: Outcome, message: str) -> bool:
        try:
            await self._actuator.signal(outcome, message)
        except DeviceError as err:
            _LOGGER.error("%s: actuator %s failed: %s", self.name, self._actuator.name, err)
            return False
        return True

    def _report(self, result: LaneResult) -> None:
        if result.check is not None:
            _LOGGER.info(
                "%s: %s %s %s%s",
                self.name,
                result.check.decision.direction.value,
                result.check.hint,
                result.check.decision.reason.value,
                " (repeat read)" if result.repeat else "",
                extra={"edge_lane": self.name, "edge_reason": result.check.decision.reason.value},
            )
        if self._on_result is not None:
            self._on_result(result)
