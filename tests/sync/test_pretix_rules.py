"""pretix's check-in rules evaluated offline (the integration test compares with pretix)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.core.facts import Direction
from sync.pretix.rules import CheckinRules, EventDates, Passage, RuleInput, RulesError

BERLIN = ZoneInfo("Europe/Berlin")
START = datetime(2026, 6, 1, 18, tzinfo=UTC)  # 20:00 in Berlin, a Monday
DATES = EventDates(START, START + timedelta(hours=5), START - timedelta(hours=1))


def admits(
    rules: Any, now: datetime = START, passages: list[Passage] | None = None, **kw: Any
) -> bool:
    given = RuleInput(
        now=now,
        timezone=BERLIN,
        dates=DATES,
        product=kw.get("product", 1),
        variation=kw.get("variation"),
        gate=kw.get("gate"),
        passages=passages or [],
    )
    return CheckinRules.compile(rules).admits(given)


def entries(*hours_before: float) -> list[Passage]:
    return [(START - timedelta(hours=h), Direction.ENTRY) for h in hours_before]


def test_no_rules_admit() -> None:
    assert CheckinRules.compile({}).empty
    assert CheckinRules.compile(None).empty
    assert admits({})


def test_products_variations_and_gates() -> None:
    only = {"inList": [{"var": "product"}, {"objectList": [{"lookup": ["product", "2", "P"]}]}]}
    assert not admits(only)
    assert admits(only, product=2)
    gate = {"inList": [{"var": "gate"}, {"objectList": [{"lookup": ["gate", "3", "North"]}]}]}
    assert not admits(gate)  # a lane without a pretix gate id is no gate of the list
    assert admits(gate, gate=3)
    assert not admits({"==": [{"var": "variation"}, 4]})


def test_counts_exclude_exits_and_days_are_local() -> None:
    passages = [*entries(1, 2, 30), (START - timedelta(minutes=30), Direction.EXIT)]
    assert admits({"==": [{"var": "entries_number"}, 3]}, passages=passages)
    # 20:00 Berlin: entries 1 h and 2 h ago are today, 30 h ago is yesterday.
    assert admits({"==": [{"var": "entries_today"}, 2]}, passages=passages)
    assert admits({"==": [{"var": "entries_days"}, 2]}, passages=passages)
    assert admits({"==": [{"var": "minutes_since_last_entry"}, 60]}, passages=passages)
    assert admits({"==": [{"var": "minutes_since_first_entry"}, 1800]}, passages=passages)
    assert admits({"==": [{"var": "minutes_since_last_entry"}, -1]})
    assert admits({"==": [{"var": "entry_status"}, "absent"]}, passages=passages)
    since = {"entries_since": [{"buildTime": ["date_admission"]}]}
    assert admits({"==": [since, 1]}, passages=passages)  # at admission counts
    before = {"entries_days_before": [{"buildTime": ["custom", "2026-06-01T12:00:00.000Z"]}]}
    assert admits({"==": [before, 1]}, passages=passages)


def test_times_and_tolerances() -> None:
    after_start = {"isAfter": [{"var": "now"}, {"buildTime": ["date_from"]}]}
    assert not admits(after_start)  # equal is not after
    assert admits(after_start, now=START + timedelta(seconds=1))
    tolerant = {"isAfter": [{"var": "now"}, {"buildTime": ["date_from"]}, 10]}
    assert admits(tolerant, now=START - timedelta(minutes=9))
    assert not admits(tolerant, now=START - timedelta(minutes=10))
    before_end = {"isBefore": [{"var": "now"}, {"buildTime": ["date_to"]}, "5"]}
    assert admits(before_end, now=START + timedelta(hours=5, minutes=4))
    evening = {"isAfter": [{"var": "now"}, {"buildTime": ["customtime", "19:30"]}]}
    assert admits(evening)  # 20:00 local
    assert admits({"==": [{"var": "now_isoweekday"}, 1]})


def test_javascript_comparisons() -> None:
    assert admits({"<": [0, {"var": "entries_number"}, 2]}, passages=entries(1))  # between
    assert not admits({"<": [{"var": "variation"}, 1]})  # None is no number: false
    assert admits({"==": ["1", {"var": "product"}]})  # text meets a number as text
    assert admits({"!": [{"==": [{"var": "product"}, 2]}]})
    assert admits({"or": [{"==": [{"var": "product"}, 2]}, {"==": [{"var": "product"}, 1]}]})
    # A rule that fails to evaluate does not admit (pretix answers "rules").
    assert not admits({"isAfter": [{"var": "variation"}, {"buildTime": ["date_from"]}]})


@pytest.mark.parametrize(
    ("rules", "named"),
    [
        ({"some": [[1], {"var": ""}]}, "'some'"),
        ({"==": [{"var": "attendee_name"}, "x"]}, "'attendee_name'"),
        ({"and": [{"merge": [1]}]}, "'merge'"),
        ({"isAfter": [{"var": "now"}, {"buildTime": ["date_presale"]}]}, "'date_presale'"),
        ({"isAfter": [{"var": "now"}, {"buildTime": ["custom", "tomorrow"]}]}, "'tomorrow'"),
        ({"==": [1]}, "'=='"),
    ],
)
def test_unknown_rules_are_refused_by_name(rules: Any, named: str) -> None:
    with pytest.raises(RulesError, match=named):
        CheckinRules.compile(rules)


_OPERATORS = ["and", "or", "<", "==", "!", "inList", "objectList", "lookup", "isAfter", "var"]
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from([*_OPERATORS, "buildTime", "entries_since", "x"]), inner, max_size=2
        )
    ),
    max_leaves=12,
)


@given(_JSON)
@settings(max_examples=300, deadline=None)
def test_hostile_rules_compile_or_are_refused_and_never_crash_a_scan(rules: Any) -> None:
    try:
        compiled = CheckinRules.compile(rules)
    except RulesError:
        return
    given_input = RuleInput(START, BERLIN, DATES, 1, None, None, entries(1))
    assert compiled.admits(given_input) in (True, False)
