"""Turns scanner bytes into decisions for one device, and journals them.

Several lanes share one Gate. Between a decision and the commit of its journal write another
lane may see the same credential; the gate keeps admitted passages in memory until they are
committed, so the second lane already knows about the first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from edge.core.codes import Code, SignedCode, mask, parse, scan_text
from edge.core.decide import Decision, GateRules, decide, malformed
from edge.core.errors import CodeError
from edge.core.facts import Direction, EntryState
from edge.store.gate import GateStore, JournalEntry


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
        resolver: Resolver | None = None,  # None: edge codes, facts from the store
    ) -> None:
        self._store = store
        self._clock = clock
        self._resolver = resolver
        # Admitted passages whose journal write has not committed yet, by credential.
        self._pending: dict[int, EntryState] = {}

    def check(self, data: bytes, rules: GateRules, direction: Direction) -> Check:
        """Decide about scanner bytes without recording anything; never raises for bad input."""
        now = self._clock()
        try:
            if self._resolver is not None:
                decision, code_hash, entries = self._resolver(
                    data, rules, direction, now, self._pending
                )
                return Check(decision, code_hash, _hint(data), now, entries)
            code: Code = parse(data)
            facts = self._store.facts(code)
        except CodeError as err:
            return Check(malformed(str(err), direction), None, _hint(data), now, None)
        if isinstance(code, SignedCode):
            cid: int | None = code.claims.credential_id
        else:
            cid = facts.credential.credential_id if facts.credential else None
        pending = self._pending.get(cid) if cid is not None else None
        if pending is not None:
            facts = dataclasses.replace(facts, entries=pending)
        decision = decide(code, facts, rules, direction, now)
        return Check(decision, code.hash, _hint(data), now, facts.entries)

    async def admit(self, data: bytes, rules: GateRules, direction: Direction) -> Check:
        """Decide and journal; returns once the decision (and any passage) is durable."""
        check = self.check(data, rules, direction)
        decision = check.decision
        cid = decision.credential_id
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
        return check
