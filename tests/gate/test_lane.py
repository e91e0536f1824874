"""edge.gate.lane: scans through a lane to the actuator; repeat reads; failures at the edges."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import mint_code, ticket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.protocols import MAX_SCAN_BYTES, Outcome, ScanEvent
from drivers.scanners.lines import LineScanner, LineScannerSettings
from edge.core.codes import EntryPolicy, parse
from edge.core.decide import GateRules, Reason
from edge.core.errors import ActuatorError
from edge.core.facts import Direction
from edge.gate.gate import Gate
from edge.gate.lane import ACTUATOR_ATTEMPTS, ERROR_TEXT, QUEUE_SIZE, Lane, LaneResult
from edge.store.database import Store

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
WINDOW = 1.5
TICKET = mint_code(ticket(1001)).encode()
OTHER = mint_code(ticket(1002)).encode()
PASS = mint_code(ticket(2002, policy=EntryPolicy.unlimited(10))).encode()


class ListSource:
    """A scanner that delivers fixed ScanEvents, then ends (the hardware boundary)."""

    def __init__(self, name: str, events: Sequence[tuple[bytes, float]]) -> None:
        self.name = name
        self._events = events

    async def scans(self) -> AsyncIterator[ScanEvent]:
        for data, at in self._events:
            yield ScanEvent(self.name, data, at)

    async def close(self) -> None:
        """Nothing to release."""


class RecordingActuator:
    """Records each outcome with the journal as it was when the actuator was told."""

    def __init__(self, store: Store, *, fail: int = 0) -> None:
        self.name = "turnstile"
        self._store = store
        self._fail = fail  # raise ActuatorError for this many calls first
        self.signals: list[tuple[Outcome, str, int]] = []

    async def signal(self, outcome: Outcome, text: str) -> None:
        self.signals.append((outcome, text, len(self._store.recent(1000))))
        if self._fail:
            self._fail -= 1
            raise ActuatorError("relay did not answer", device=self.name)

    async def close(self) -> None:
        """Nothing to release."""


def _lane(
    store: Store,
    actuator: RecordingActuator,
    *,
    gate: Gate | None = None,
    name: str = "North 1",
    sources: Sequence[tuple[ListSource, Direction]] = (),
    language: str = "en",
    results: list[LaneResult] | None = None,
) -> Lane:
    return Lane(
        rules=GateRules(name),
        gate=gate or Gate(store, clock=lambda: NOW),
        actuator=actuator,
        sources=sources,
        language=language,
        repeat_window=WINDOW,
        on_result=results.append if results is not None else None,
    )


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"A" * 100_000,
        b"\x00" * (MAX_SCAN_BYTES + 1),
        b"\x01\x02\x03\x7f",
        b"\xc3\x28\xff\xfe",
        b"EDGE:\r\n\x00",
        TICKET[:-1] + (b"A" if TICKET[-1:] != b"A" else b"B"),
    ],
    ids=["empty", "100kB", "overflow", "control", "invalid-utf8", "prefix-nul", "last-char"],
)
async def test_bad_input_is_rejected_by_the_lane(store: Store, data: bytes) -> None:
    actuator = RecordingActuator(store)
    result = await _lane(store, actuator).handle(data, Direction.ENTRY, 10.0)
    assert result.check is not None
    assert not result.check.decision.admitted
    assert result.actuated
    assert actuator.signals[0][0] is Outcome.REJECT
    assert result.text  # a clear reason on the display
    assert "{" not in result.text


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(st.binary(max_size=600), min_size=1, max_size=5))
async def test_random_bytes_through_a_running_lane_never_open_it(
    store: Store, scans: list[bytes]
) -> None:
    actuator = RecordingActuator(store)
    source = ListSource("outside", [(data, float(i * 10)) for i, data in enumerate(scans)])
    results: list[LaneResult] = []
    lane = _lane(store, actuator, sources=[(source, Direction.ENTRY)], results=results)
    await lane.run()  # returns once the source ends: no exception escaped the lane
    assert len(results) == len(scans)
    assert all(outcome is Outcome.REJECT for outcome, _, _ in actuator.signals)
    assert all(r.check is not None and not r.check.decision.admitted for r in results)


async def test_a_line_scanner_file_with_junk_keeps_the_lane_working(
    store: Store, tmp_path: Path
) -> None:
    scans = tmp_path / "scans.txt"
    scans.write_bytes(
        b"\xff\xfe garbage\n"
        + b"X" * 10_000
        + b"\n\x1b[2J\r\n"
        + TICKET
        + b"\r\n"
        + OTHER.lower()
        + b"\n"
        + b"junk\n"
        + TICKET
        + b"\n"
    )
    actuator = RecordingActuator(store)
    results: list[LaneResult] = []
    scanner = LineScanner("outside", LineScannerSettings(str(scans)))
    lane = Lane(
        rules=GateRules("North 1"),
        gate=Gate(store, clock=lambda: NOW),
        actuator=actuator,
        sources=[(scanner, Direction.ENTRY)],
        on_result=results.append,
    )
    await lane.run()
    reasons = [r.check.decision.reason for r in results if r.check is not None]
    assert reasons == [
        Reason.MALFORMED,
        Reason.MALFORMED,
        Reason.MALFORMED,
        Reason.ADMITTED,
        Reason.ADMITTED,
        Reason.UNKNOWN,
        Reason.ALREADY_USED,
    ]
    assert [o for o, _, _ in actuator.signals].count(Outcome.ADMIT_ENTRY) == 2


async def test_a_flood_of_scans_is_bounded_and_counted(store: Store) -> None:
    flood = [(b"junk-%d" % i, float(i)) for i in range(200)]
    results: list[LaneResult] = []
    lane = _lane(
        store,
        RecordingActuator(store),
        sources=[(ListSource("outside", flood), Direction.ENTRY)],
        results=results,
    )
    await lane.run()
    assert len(results) + lane.dropped == len(flood)
    assert len(results) >= QUEUE_SIZE
    assert len(store.recent(1000)) == len(results)


# -- repeat reads ----------------------------------------------------------------------------


async def test_same_code_within_the_window_is_one_entry(store: Store) -> None:
    actuator = RecordingActuator(store)
    lane = _lane(store, actuator)
    first = await lane.handle(TICKET, Direction.ENTRY, 100.0)
    repeat = await lane.handle(TICKET, Direction.ENTRY, 100.0 + WINDOW / 2)
    edge = await lane.handle(TICKET, Direction.ENTRY, 100.0 + WINDOW / 2 + WINDOW)
    assert first.check is not None
    assert first.check.decision.reason is Reason.ADMITTED
    assert not first.repeat
    for result in (repeat, edge):  # the window's end is still inside it
        assert result.repeat
        assert result.check == first.check
        assert result.text == first.text
        assert not result.actuated
    assert len(store.recent()) == 1  # no second journal row
    assert len(actuator.signals) == 1


async def test_same_code_after_the_window_is_already_used(store: Store) -> None:
    actuator = RecordingActuator(store)
    lane = _lane(store, actuator)
    await lane.handle(TICKET, Direction.ENTRY, 100.0)
    later = await lane.handle(TICKET, Direction.ENTRY, 100.0 + WINDOW + 0.001)
    assert not later.repeat
    assert later.check is not None
    assert later.check.decision.reason is Reason.ALREADY_USED
    assert later.text.startswith("Already used at ")
    assert "North 1" in later.text
    assert len(store.recent()) == 2
    assert [o for o, _, _ in actuator.signals] == [Outcome.ADMIT_ENTRY, Outcome.REJECT]


async def test_another_code_in_between_ends_the_repeat(store: Store) -> None:
    lane = _lane(store, RecordingActuator(store))
    await lane.handle(TICKET, Direction.ENTRY, 100.0)
    await lane.handle(OTHER, Direction.ENTRY, 100.1)
    again = await lane.handle(TICKET, Direction.ENTRY, 100.2)
    assert not again.repeat
    assert again.check is not None
    assert again.check.decision.reason is Reason.ALREADY_USED


async def test_repeat_needs_the_same_direction(store: Store) -> None:
    lane = _lane(store, RecordingActuator(store))
    await lane.handle(PASS, Direction.ENTRY, 100.0)
    leaving = await lane.handle(PASS, Direction.EXIT, 100.1)
    assert not leaving.repeat
    assert leaving.check is not None
    assert leaving.check.decision.reason is Reason.EXIT
    assert len(store.recent()) == 2


async def test_repeat_window_is_per_lane(store: Store) -> None:
    gate = Gate(store, clock=lambda: NOW)
    north = _lane(store, RecordingActuator(store), gate=gate, name="North 1")
    south = _lane(store, RecordingActuator(store), gate=gate, name="South 2")
    await north.handle(TICKET, Direction.ENTRY, 100.0)
    other_lane = await south.handle(TICKET, Direction.ENTRY, 100.1)
    assert not other_lane.repeat
    assert other_lane.check is not None
    assert other_lane.check.decision.reason is Reason.ALREADY_USED
    assert other_lane.check.decision.gate == "North 1"


async def test_repeat_reads_from_a_running_lane_use_the_scan_times(store: Store) -> None:
    source = ListSource("outside", [(TICKET, 5.0), (TICKET, 5.5), (TICKET, 6.0), (TICKET, 60.0)])
    results: list[LaneResult] = []
    lane = _lane(
        store, RecordingActuator(store), sources=[(source, Direction.ENTRY)], results=results
    )
    await lane.run()
    assert [r.repeat for r in results] == [False, True, True, False]
    assert results[-1].check is not None
    assert results[-1].check.decision.reason is Reason.ALREADY_USED
    assert len(store.recent()) == 2


# -- two lanes, one gate ---------------------------------------------------------------------


async def test_two_lanes_sharing_a_gate_cannot_both_admit(store: Store) -> None:
    gate = Gate(store, clock=lambda: NOW)
    north_actuator, south_actuator = RecordingActuator(store), RecordingActuator(store)
    north = _lane(store, north_actuator, gate=gate, name="North 1")
    south = _lane(store, south_actuator, gate=gate, name="South 2")
    results = await asyncio.gather(
        north.handle(TICKET, Direction.ENTRY, 10.0), south.handle(TICKET, Direction.ENTRY, 10.0)
    )
    outcomes = [north_actuator.signals[0][0], south_actuator.signals[0][0]]
    assert sorted(o.value for o in outcomes) == ["admit-entry", "reject"]
    checks = [r.check for r in results]
    assert all(c is not None for c in checks), [r.text for r in results]
    reasons = {c.decision.reason for c in checks if c is not None}
    assert reasons == {Reason.ADMITTED, Reason.ALREADY_USED}
    assert len(store.recent()) == 2


async def test_two_lanes_admit_two_different_tickets_at_once(store: Store) -> None:
    gate = Gate(store, clock=lambda: NOW)
    north_actuator, south_actuator = RecordingActuator(store), RecordingActuator(store)
    north = _lane(store, north_actuator, gate=gate, name="North 1")
    south = _lane(store, south_actuator, gate=gate, name="South 2")
    results = await asyncio.gather(
        north.handle(TICKET, Direction.ENTRY, 10.0), south.handle(OTHER, Direction.ENTRY, 10.0)
    )
    assert [r.text for r in results] == ["Welcome", "Welcome"]
    assert [north_actuator.signals[0][0], south_actuator.signals[0][0]] == [
        Outcome.ADMIT_ENTRY,
        Outcome.ADMIT_ENTRY,
    ]
    assert len(store.recent()) == 2


# -- ordering and failures -------------------------------------------------------------------


async def test_journal_row_exists_before_the_actuator_is_signalled(store: Store) -> None:
    actuator = RecordingActuator(store)
    lane = _lane(store, actuator)
    await lane.handle(TICKET, Direction.ENTRY, 1.0)
    await lane.handle(b"\x00garbage", Direction.ENTRY, 2.0)
    await lane.handle(PASS, Direction.EXIT, 3.0)
    # The journal length seen by each signal() call counts that call's own row.
    assert [(o, rows) for o, _, rows in actuator.signals] == [
        (Outcome.ADMIT_ENTRY, 1),
        (Outcome.REJECT, 2),
        (Outcome.ADMIT_EXIT, 3),
    ]


async def test_a_failing_actuator_does_not_stop_the_lane(store: Store) -> None:
    actuator = RecordingActuator(store, fail=ACTUATOR_ATTEMPTS)  # every attempt for TICKET
    results: list[LaneResult] = []
    source = ListSource("outside", [(TICKET, 1.0), (OTHER, 2.0)])
    lane = _lane(store, actuator, sources=[(source, Direction.ENTRY)], results=results)
    await lane.run()
    assert [r.actuated for r in results] == [False, True]
    assert [r.check.decision.reason for r in results if r.check] == [
        Reason.ADMITTED,
        Reason.ADMITTED,
    ]
    assert len(actuator.signals) == ACTUATOR_ATTEMPTS + 1
    assert len(store.recent()) == 2  # the admit stays journaled: the decision was made


async def test_one_missed_relay_command_is_retried_at_once(store: Store) -> None:
    actuator = RecordingActuator(store, fail=1)
    result = await _lane(store, actuator).handle(TICKET, Direction.ENTRY, 1.0)
    assert result.actuated
    assert [outcome for outcome, _, _ in actuator.signals] == [Outcome.ADMIT_ENTRY] * 2


async def test_the_cpu_is_offered_after_the_command_and_before_the_report(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the relay's frame woke (a bridge, the far end of a pty) runs before the
    lane's log line and metrics: once per scan, after the last attempt at the actuator."""
    events: list[str] = []
    monkeypatch.setattr(os, "sched_yield", lambda: events.append("yield"))
    actuator = RecordingActuator(store, fail=1)
    original = actuator.signal

    async def signal(outcome: Outcome, text: str) -> None:
        events.append("signal")
        await original(outcome, text)

    actuator.signal = signal  # type: ignore[method-assign]
    lane = Lane(
        rules=GateRules("North 1"),
        gate=Gate(store, clock=lambda: NOW),
        actuator=actuator,
        sources=(),
        on_result=lambda result: events.append("report"),
    )
    await lane.handle(TICKET, Direction.ENTRY, 1.0)
    await lane.handle(b"\x00garbage", Direction.ENTRY, 2.0)
    assert events == ["signal", "signal", "yield", "report", "signal", "yield", "report"]


async def test_rescanning_a_ticket_whose_turnstile_failed_opens_it_without_using_it_again(
    store: Store,
) -> None:
    actuator = RecordingActuator(store, fail=ACTUATOR_ATTEMPTS)
    lane = _lane(store, actuator)
    first = await lane.handle(TICKET, Direction.ENTRY, 1.0)
    assert first.check is not None
    assert first.check.decision.reason is Reason.ADMITTED
    assert not first.actuated
    await lane.handle(OTHER, Direction.ENTRY, 2.0)  # someone else in between
    again = await lane.handle(TICKET, Direction.ENTRY, 60.0)  # long after the repeat window
    assert again.actuated
    assert again.repeat
    assert again.check is not None
    assert again.check.decision.reason is Reason.ADMITTED  # not "already used"
    assert len(store.recent()) == 2  # no second passage was journaled for TICKET
    later = await lane.handle(TICKET, Direction.ENTRY, 120.0)  # once opened, it is used
    assert later.check is not None
    assert later.check.decision.reason is Reason.ALREADY_USED


@pytest.mark.parametrize(("language", "message"), sorted(ERROR_TEXT.items()))
async def test_a_store_write_failure_rejects_with_try_again(
    store: Store, language: str, message: str
) -> None:
    conn = sqlite3.connect(store.journal_path)
    conn.execute(
        "CREATE TRIGGER full BEFORE INSERT ON journal BEGIN SELECT RAISE(FAIL, 'disk full'); END"
    )
    conn.commit()
    conn.close()
    actuator = RecordingActuator(store)
    result = await _lane(store, actuator, language=language).handle(TICKET, Direction.ENTRY, 1.0)
    assert result.check is None
    assert result.text == message
    assert not result.actuated
    assert actuator.signals == [(Outcome.REJECT, message, 0)]
    assert store.facts(parse(TICKET)).entries is None  # no passage was recorded
    assert ERROR_TEXT["en"] == "Please try again"


async def test_a_write_failure_is_not_remembered_as_a_read(store: Store) -> None:
    conn = sqlite3.connect(store.journal_path)
    conn.execute(
        "CREATE TRIGGER full BEFORE INSERT ON journal BEGIN SELECT RAISE(FAIL, 'disk full'); END"
    )
    conn.commit()
    actuator = RecordingActuator(store)
    lane = _lane(store, actuator)
    failed = await lane.handle(TICKET, Direction.ENTRY, 1.0)
    conn.execute("DROP TRIGGER full")
    conn.commit()
    conn.close()
    retried = await lane.handle(TICKET, Direction.ENTRY, 1.1)  # within the repeat window
    assert failed.check is None
    assert not retried.repeat
    assert retried.check is not None
    assert retried.check.decision.reason is Reason.ADMITTED
    assert actuator.signals[-1][0] is Outcome.ADMIT_ENTRY
