"""edge.gate.gate: decisions from raw scanner bytes, journaled; lanes sharing one Gate."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from conftest import mint_code, ticket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.core.codes import PREFIX, EntryPolicy
from edge.core.decide import GateRules, Reason
from edge.core.errors import StoreError
from edge.core.facts import Direction
from edge.gate.gate import Gate
from edge.store.database import Store

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
NORTH = GateRules("North 1")
SOUTH = GateRules("South 2")
TICKET = mint_code(ticket(1001)).encode()
TRIPLE = mint_code(ticket(3003, policy=EntryPolicy.multi(3))).encode()

# Input a scanner may deliver that is not one of our codes. Annotated, so a failure says which.
BAD_INPUTS = {
    "empty": b"",
    "only CR LF": b"\r\n",
    "100 kB": b"A" * 100_000,
    "100 kB binary": bytes(range(256)) * 400,
    "NUL": b"\x00",
    "control characters": b"AB\x07\x08\x1b[31mCD",
    "invalid UTF-8": b"\xc3\x28\xa0\xa1\xff",
    "UTF-8 umlaut": "Ü-Ticket".encode(),
    "prefix only": b"EDGE:",
    "prefix with junk": b"EDGE:!!!!",
    "overflow marker from a driver": b"\x00" * 4097,
    "truncated code": TICKET[:-7],
    "code with a space inside": TICKET[:40] + b" " + TICKET[40:],
    "two codes on one line": TICKET + TICKET,
}


def _flip(code: bytes, bit: int) -> bytes:
    body = code[len(PREFIX) :].decode()
    raw = bytearray(base64.b32decode(body + "=" * (-len(body) % 8)))
    bit %= len(raw) * 8
    raw[bit // 8] ^= 0x80 >> (bit % 8)
    return PREFIX.encode() + base64.b32encode(bytes(raw)).rstrip(b"=")


def _gate(store: Store) -> Gate:
    return Gate(store, clock=lambda: NOW)


def _entries_count(store: Store, code: bytes) -> int:
    from edge.core.codes import parse  # noqa: PLC0415

    entries = store.facts(parse(code)).entries
    return entries.count if entries else 0


@pytest.mark.parametrize("data", list(BAD_INPUTS.values()), ids=list(BAD_INPUTS))
async def test_bad_input_is_rejected_and_journaled(store: Store, data: bytes) -> None:
    check = await _gate(store).admit(data, NORTH, Direction.ENTRY)
    assert not check.decision.admitted
    assert check.decision.reason in (Reason.MALFORMED, Reason.UNKNOWN)
    if check.decision.reason is Reason.MALFORMED:
        assert check.decision.detail  # says why, for the log
        assert check.code_hash is None
    (row,) = store.recent()
    assert row.entry.reason is check.decision.reason
    assert len(row.entry.code_hint) <= 16  # a hint, never the input itself
    assert store.admitted_hashes() == set()


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.one_of(
        st.binary(max_size=700),
        st.integers(0, 10_000).map(lambda bit: _flip(TICKET, bit)),
        st.integers(1, len(TICKET) - 1).map(lambda n: TICKET[:n]),
        # Base32 characters after a valid code: longer, never the same code.
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", min_size=1, max_size=8).map(
            lambda junk: TICKET + junk.encode()
        ),
    )
)
async def test_any_scanner_bytes_never_raise_and_never_admit(store: Store, data: bytes) -> None:
    gate = _gate(store)
    for direction in Direction:
        check = await gate.admit(data, NORTH, direction)
        assert not check.decision.admitted, (data, check.decision)
    assert store.admitted_hashes() == set()


async def test_flipped_bits_of_a_ticket_are_bad_signatures_or_malformed(store: Store) -> None:
    gate = _gate(store)
    reasons = set()
    for bit in range(0, 8 * 80, 7):
        check = await gate.admit(_flip(TICKET, bit), NORTH, Direction.ENTRY)
        reasons.add(check.decision.reason)
    assert not any(reason.admits for reason in reasons)
    assert Reason.BAD_SIGNATURE in reasons
    # The original still admits: the gate rejected damage, not the ticket.
    assert (await gate.admit(TICKET, NORTH, Direction.ENTRY)).decision.admitted


async def test_check_records_nothing(store: Store) -> None:
    check = _gate(store).check(TICKET, NORTH, Direction.ENTRY)
    assert check.decision.admitted
    assert check.at == NOW
    assert store.recent() == []


async def test_admitted_ticket_is_journaled_with_its_passage(store: Store) -> None:
    gate = _gate(store)
    first = await gate.admit(TICKET, NORTH, Direction.ENTRY)
    assert first.decision.reason is Reason.ADMITTED
    assert first.hint.startswith("EDGE:")
    assert len(first.hint.replace("…", "")) < 10  # masked: never the whole code
    again = await gate.admit(TICKET, SOUTH, Direction.ENTRY)
    assert again.decision.reason is Reason.ALREADY_USED
    assert (again.decision.at, again.decision.gate) == (NOW, "North 1")
    assert [row.entry.reason for row in store.recent()] == [Reason.ALREADY_USED, Reason.ADMITTED]
    assert _entries_count(store, TICKET) == 1


async def test_two_lanes_cannot_both_admit_a_single_use_ticket(store: Store) -> None:
    gate = _gate(store)
    north, south = await asyncio.gather(
        gate.admit(TICKET, NORTH, Direction.ENTRY), gate.admit(TICKET, SOUTH, Direction.ENTRY)
    )
    assert [north.decision.admitted, south.decision.admitted] == [True, False]
    assert south.decision.reason is Reason.ALREADY_USED
    assert south.decision.gate == "North 1"
    assert _entries_count(store, TICKET) == 1
    assert len(store.recent()) == 2


async def test_concurrent_admits_of_a_counted_ticket_stop_at_its_uses(store: Store) -> None:
    gate = _gate(store)
    lanes = [GateRules(f"Lane {i}") for i in range(6)]
    checks = await asyncio.gather(*(gate.admit(TRIPLE, r, Direction.ENTRY) for r in lanes))
    assert sum(c.decision.admitted for c in checks) == 3
    assert [c.decision.remaining for c in checks if c.decision.admitted] == [2, 1, 0]
    assert _entries_count(store, TRIPLE) == 3


async def test_a_failed_journal_write_raises_and_leaves_no_passage(store: Store) -> None:
    conn = sqlite3.connect(store.journal_path)
    conn.execute(
        "CREATE TRIGGER full BEFORE INSERT ON journal BEGIN SELECT RAISE(FAIL, 'disk full'); END"
    )
    conn.commit()
    gate = _gate(store)
    with pytest.raises(StoreError, match="disk full"):
        await gate.admit(TICKET, NORTH, Direction.ENTRY)
    conn.execute("DROP TRIGGER full")
    conn.commit()
    conn.close()
    # The passage did not happen: neither the store nor the gate's memory holds it.
    assert (await gate.admit(TICKET, SOUTH, Direction.ENTRY)).decision.admitted


async def test_exit_then_entry_on_a_bidirectional_lane(store: Store) -> None:
    gate = _gate(store)
    pass_code = mint_code(ticket(2002, policy=EntryPolicy.unlimited(10))).encode()
    assert (await gate.admit(pass_code, NORTH, Direction.ENTRY)).decision.admitted
    blocked = await gate.admit(pass_code, NORTH, Direction.ENTRY)
    assert blocked.decision.reason is Reason.PASSBACK
    assert (await gate.admit(pass_code, NORTH, Direction.EXIT)).decision.reason is Reason.EXIT
    assert (await gate.admit(pass_code, NORTH, Direction.ENTRY)).decision.admitted
    assert _entries_count(store, pass_code) == 2


# -- clock steps -------------------------------------------------------------------------------


class Clocks:
    """A wall clock that can be set (as NTP or an operator does) and a monotonic one."""

    def __init__(self, wall: datetime) -> None:
        self.wall = wall
        self.mono = 1000.0

    def advance(self, seconds: float) -> None:
        """Time passes: both clocks move."""
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono


RULES = GateRules("North 1")
SECOND = timedelta(seconds=1)
PASSBACK_PASS = mint_code(ticket(3003, policy=EntryPolicy.unlimited(30))).encode()
DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("later", "expected"),
    [(40 * 60, Reason.ADMITTED), (5 * 60, Reason.PASSBACK)],
    ids=["after-the-window", "within-the-window"],
)
async def test_a_clock_set_back_a_day_measures_the_passback_window_in_real_time(
    store: Store, later: float, expected: Reason
) -> None:
    clocks = Clocks(NOW + DAY)  # the gate's clock runs a day ahead
    gate = Gate(store, clock=clocks.now, monotonic=clocks.monotonic)
    first = await gate.admit(PASSBACK_PASS, RULES, Direction.ENTRY)
    assert first.decision.reason is Reason.ADMITTED
    clocks.wall -= DAY  # NTP corrects it
    clocks.advance(later)
    again = await gate.admit(PASSBACK_PASS, RULES, Direction.ENTRY)
    # Not "already inside" until tomorrow; a card passed back within 30 minutes still is.
    assert again.decision.reason is expected
    ((_, jump_ms, after_seq),) = store.clock_jumps()
    assert jump_ms == -DAY.total_seconds() * 1000
    assert after_seq == store.recent(2)[1].seq  # the step came after the first passage
    assert [row.entry.at for row in store.recent(2)][::-1] == [NOW + DAY, NOW + later * SECOND]


async def test_a_clock_set_forward_a_day_still_catches_a_pass_passed_back(store: Store) -> None:
    clocks = Clocks(NOW)
    gate = Gate(store, clock=clocks.now, monotonic=clocks.monotonic)
    assert (await gate.admit(PASSBACK_PASS, RULES, Direction.ENTRY)).decision.admitted
    clocks.wall += DAY  # a wrong step ahead
    clocks.advance(60)
    again = await gate.admit(PASSBACK_PASS, RULES, Direction.ENTRY)
    assert again.decision.reason is Reason.PASSBACK


async def test_after_a_restart_a_passage_stamped_ahead_of_the_clock_does_not_hold_a_day(
    store: Store,
) -> None:
    clocks = Clocks(NOW + DAY)
    assert (
        await Gate(store, clock=clocks.now, monotonic=clocks.monotonic).admit(
            PASSBACK_PASS, RULES, Direction.ENTRY
        )
    ).decision.admitted
    clocks.wall = NOW + 45 * 60 * SECOND  # corrected, and the daemon restarted meanwhile
    restarted = Gate(store, clock=clocks.now, monotonic=clocks.monotonic)
    again = await restarted.admit(PASSBACK_PASS, RULES, Direction.ENTRY)
    assert again.decision.reason is Reason.ADMITTED
