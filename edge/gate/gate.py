"""Turns scanner bytes into decisions for one device, and journals them.

Several lanes share one Gate. Between a decision and the commit of its journal write another
lane may see the same credential; the gate keeps admitted passages in memory until they are
committed, so the second lane already knows about the first.

Clocks (docs/operations.md, "Clocks"): validity uses the wall clock, but windows since a
passage (passback) use monotonic time for the passages this gate admitted since it started,
so a wall clock that steps (NTP correcting a clock a day ahead) neither holds a visitor
"already inside" until the next day nor lets a card be passed back. A step is recorded in the
store beside the journal, whose times keep what the clock said.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from edge.core.codes import Code, SignedCode, mask, parse, scan_text
from edge.core.decide import Decision, GateRules, decide, malformed
from edge.core.errors import CodeError
from edge.core.facts import Direction, EntryState
from edge.store.gate import GateStore, JournalEntry

_LOGGER = logging.getLogger(__name__)

CLOCK_STEP_SECONDS = 2.0  # the wall clock moved this much more than monotonic time: a step
PASSAGE_MEMORY = 200_000  # admitted passages whose monotonic time is kept (~20 MB at most)


def utc_now() -> datetime:
    """The wall clock as an aware UTC datetime."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Check:
    """A decision with what the journal needs to record it."""

    decision: Decision
    code_hash: bytes | None  # None when the input was not a code
    hint: str  # masked code for logs and the journal
    at: datetime
    entries: EntryState | None  # the passages the decision was based on
    monotonic: float = 0.0  # the monotonic clock at `at`


class Resolver(Protocol):
    """Decides scanner bytes as another central system (pretix) would; synchronous like the
    rest of the scan path (principle 2)."""

    def __call__(
        self,
        data: bytes,
        rules: GateRules,
        direction: Direction,
        now: datetime,
        pending: Mapping[int, EntryState],
    ) -> tuple[Decision, bytes, EntryState | None]:
        """The decision, the code's hash and the passages it was based on; `pending` holds
        admitted passages whose journal write has not committed yet. CodeError for input
        that is not a code."""
        ...


def _hint(data: bytes) -> str:
    try:
        return mask(scan_text(data))
    except CodeError:
        return f"<{len(data)} bytes>"


def _ms(moment: datetime) -> int:
    """Unix milliseconds, as the journal keeps times."""
    return int(moment.timestamp() * 1000)


def _after(
    previous: EntryState | None, at: datetime, gate: str, direction: Direction
) -> EntryState:
    """A credential's passages once one more passage is added."""
    is_entry = direction is Direction.ENTRY
    first_at = previous.first_at if previous else None
    first_gate = previous.first_gate if previous else None
    if first_at is None and is_entry:
        first_at, first_gate = at, gate
    return EntryState(
        count=(previous.count if previous else 0) + int(is_entry),
        first_at=first_at,
        first_gate=first_gate,
        last_at=at,
        last_direction=direction,
        last_gate=gate,
    )


class Gate:
    """Decides and journals scans for the lanes of one device."""

    def __init__(
        self,
        store: GateStore,
        *,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        resolver: Resolver | None = None,  # None: edge codes, facts from the store
    ) -> None:
        self._store = store
        self._clock = clock
        self._monotonic = monotonic
        self._resolver = resolver
        # Admitted passages whose journal write has not committed yet, by credential.
        self._pending: dict[int, EntryState] = {}
        # Passages admitted here: credential -> (wall time journaled in ms, monotonic time).
        self._passages: OrderedDict[int, tuple[int, float]] = OrderedDict()
        self._wall_minus_monotonic: float | None = None  # to notice steps of the wall clock
        self._step: float = 0.0  # a step noticed and not recorded yet (seconds)

    def check(self, data: bytes, rules: GateRules, direction: Direction) -> Check:
        """Decide about scanner bytes without recording anything; never raises for bad input."""
        now = self._clock()
        mono = self._monotonic()
        self._notice_step(now, mono)
        try:
            if self._resolver is not None:
                decision, code_hash, entries = self._resolver(
                    data, rules, direction, now, self._pending
                )
                return Check(decision, code_hash, _hint(data), now, entries, mono)
            code: Code = parse(data)
            facts = self._store.facts(code)
        except CodeError as err:
            return Check(malformed(str(err), direction), None, _hint(data), now, None, mono)
        if isinstance(code, SignedCode):
            cid: int | None = code.claims.credential_id
        else:
            cid = facts.credential.credential_id if facts.credential else None
        pending = self._pending.get(cid) if cid is not None else None
        if pending is not None:
            facts = dataclasses.replace(facts, entries=pending)
        entries = facts.entries
        timed = self._by_monotonic(cid, entries, now, mono)
        decided = facts if timed is entries else dataclasses.replace(facts, entries=timed)
        decision = decide(code, decided, rules, direction, now)
        return Check(decision, code.hash, _hint(data), now, entries, mono)

    def _notice_step(self, now: datetime, mono: float) -> None:
        """Note when the wall clock moved against monotonic time (it was set, not slewed)."""
        offset = now.timestamp() - mono
        previous, self._wall_minus_monotonic = self._wall_minus_monotonic, offset
        if previous is not None and abs(offset - previous) > CLOCK_STEP_SECONDS:
            self._step += offset - previous
            _LOGGER.warning(
                "the wall clock stepped by %+.0f s; passback windows keep monotonic time",
                offset - previous,
            )

    def _by_monotonic(
        self, cid: int | None, entries: EntryState | None, now: datetime, mono: float
    ) -> EntryState | None:
        """The passages with the last one's time as monotonic time measures it, if ours."""
        if cid is None or entries is None:
            return entries
        seen = self._passages.get(cid)
        if seen is None or seen[0] != _ms(entries.last_at):
            return entries  # another gate's passage, or one from before this start
        last_at = now - timedelta(seconds=max(0.0, mono - seen[1]))
        if last_at == entries.last_at:
            return entries
        return dataclasses.replace(entries, last_at=last_at)

    async def admit(self, data: bytes, rules: GateRules, direction: Direction) -> Check:
        """Decide and journal; returns once the decision (and any passage) is durable."""
        check = self.check(data, rules, direction)
        decision = check.decision
        cid = decision.credential_id
        if self._step:
            step, self._step = self._step, 0.0
            try:
                await self._store.record_clock_jump(check.at, round(step * 1000))
            except BaseException:
                self._step += step
                raise
        passage = None
        if decision.admitted and cid is not None:
            passage = _after(check.entries, check.at, rules.gate, direction)
            self._pending[cid] = passage
        try:
            await self._store.record(
                JournalEntry(
                    at=check.at,
                    lane=rules.gate,
                    direction=direction,
                    reason=decision.reason,
                    credential_id=cid,
                    code_hash=check.code_hash,
                    code_hint=check.hint,
                )
            )
        finally:
            # Committed: the store has it. Failed: the passage did not happen.
            if cid is not None and passage is not None and self._pending.get(cid) is passage:
                del self._pending[cid]
        if cid is not None and passage is not None:
            self._passages[cid] = (_ms(check.at), check.monotonic)
            self._passages.move_to_end(cid)
            if len(self._passages) > PASSAGE_MEMORY:
                self._passages.popitem(last=False)
        return check
