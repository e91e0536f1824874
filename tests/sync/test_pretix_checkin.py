"""pretix's check-in steps in pretix's order (pure; the integration test asks pretix itself)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from edge.core.decide import GateRules, Reason
from edge.core.facts import Direction
from edge.store.pretix import BLOCKED, REQUIRE_APPROVAL, VALID_IF_PENDING, PretixPosition
from sync.pretix.checkin import CheckinList, addon_choice, decide_checkin
from sync.pretix.rules import CheckinRules, EventDates

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
LANE = GateRules(gate="North 1", clock_skew=timedelta(0))
LIST = CheckinList(
    products=frozenset({1}),
    subevent=None,
    include_pending=True,
    allow_multiple_entries=False,
    allow_entry_after_exit=True,
    rules=CheckinRules.compile({"<": [{"var": "entries_number"}, 1]}),
    timezone=UTC,
    dates=EventDates(NOW),
    subevent_dates={},
)


def ticket(pid: int = 1, item: int = 1, status: str = "p", **more: Any) -> PretixPosition:
    fields: dict[str, Any] = {"variation": None, "subevent": None, "valid_from": None}
    fields |= {"valid_until": None} | more
    return PretixPosition(pid, bytes(16), item, order_status=status, **fields)


def answer(position: PretixPosition, direction: Direction = Direction.ENTRY, **kw: Any) -> Reason:
    lane = kw.pop("lane", LANE)
    passages = kw.pop("passages", [])
    clist = dataclasses.replace(LIST, **kw)
    return decide_checkin(
        position, clist, lane=lane, direction=direction, now=NOW, passages=passages
    ).reason


def test_the_first_failing_step_gives_the_reason() -> None:
    late = NOW - timedelta(seconds=1)
    # Everything wrong at once: cancelled wins, then blocked, approval, time, product, unpaid.
    worst = ticket(item=9, status="c", flags=BLOCKED | REQUIRE_APPROVAL, valid_until=late)
    assert answer(worst) is Reason.CANCELLED
    worst = dataclasses.replace(worst, order_status="n")
    assert answer(worst) is Reason.BLOCKED
    worst = dataclasses.replace(worst, flags=REQUIRE_APPROVAL)
    assert answer(worst) is Reason.UNAPPROVED
    worst = dataclasses.replace(worst, flags=0)
    assert answer(worst) is Reason.EXPIRED
    worst = dataclasses.replace(worst, valid_until=None)
    assert answer(worst) is Reason.WRONG_GATE
    worst = dataclasses.replace(worst, item=1)
    assert answer(worst) is Reason.UNPAID
    assert answer(worst, lane=dataclasses.replace(LANE, ignore_unpaid=True)) is Reason.ADMITTED
    assert answer(dataclasses.replace(worst, flags=VALID_IF_PENDING)) is Reason.ADMITTED
    used = [(NOW - timedelta(hours=1), Direction.ENTRY)]
    assert answer(ticket(), passages=used) is Reason.RULES  # rules before "already used"
    assert answer(ticket(), passages=used, rules=CheckinRules.compile({})) is Reason.ALREADY_USED


@pytest.mark.parametrize(
    ("position", "reason"),
    [
        (ticket(status="c"), Reason.CANCELLED),
        (ticket(flags=BLOCKED), Reason.BLOCKED),
        (ticket(item=9), Reason.WRONG_GATE),
        (ticket(status="n"), Reason.UNPAID),
        (ticket(valid_until=NOW - timedelta(days=1)), Reason.EXIT),  # validity: entries only
    ],
)
def test_exits_are_answered_on_the_list(position: PretixPosition, reason: Reason) -> None:
    used = [(NOW - timedelta(hours=1), Direction.ENTRY)]
    assert answer(position, Direction.EXIT, passages=used) is reason


def test_add_on_matching() -> None:
    main = ticket(1, item=2)
    lounge = ticket(2, item=1)
    assert addon_choice(main, [lounge], LIST, NOW) is lounge
    assert addon_choice(main, [lounge, ticket(3, item=1)], LIST, NOW) is None  # ambiguous
    expired = ticket(3, item=1, valid_until=NOW - timedelta(days=1))
    assert addon_choice(main, [lounge, expired], LIST, NOW) is lounge  # valid now wins
    # None on the list: the main ticket itself, which then answers "product".
    assert addon_choice(main, [ticket(4, item=7)], LIST, NOW) is main
