"""pretix's check-in decision, offline: the same answer and the same reason as its redeem.

Pure: the position, the list, the lane, the passages and the time in, a Reason out. The
steps and their order are pretix's (written from its documentation and checked against a
running pretix, tests/integration/test_pretix.py), so the first failing step gives pretix's
reason:

 1. the order is cancelled or expired                      canceled
 2. the position is blocked                                blocked
 3. the order is pending and waits for approval            unapproved
 4. entries only: before valid_from / after valid_until     invalid_time
 5. the product is not on the list (or not on this lane)   product
 6. the list is for another date                           product
    else: the order is not paid, not valid_if_pending, and
    not (lane ignore_unpaid and list include_pending)      unpaid
 7. entries only: the list's rules say no                  rules
 8. entries only: used, and neither multiple entries nor
    (entry after exit and the last passage an exit)        already_redeemed

Exits are answered by steps 1-3, 5 and 6 (pretix checks neither validity nor rules nor
earlier passages for exits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from edge.core.decide import GateRules, Reason
from edge.core.facts import Direction
from edge.store.pretix import PretixPosition
from sync.pretix.rules import CheckinRules, EventDates, Passage, RuleInput

PAID, PENDING = "p", "n"  # pretix order states that may admit


@dataclass(frozen=True, slots=True)
class CheckinList:
    """A check-in list as the decision needs it."""

    products: frozenset[int] | None  # None: all products
    subevent: int | None
    include_pending: bool
    allow_multiple_entries: bool
    allow_entry_after_exit: bool
    rules: CheckinRules
    timezone: tzinfo
    dates: EventDates  # the event's
    subevent_dates: dict[int, EventDates]  # each date of a series

    def admits_product(self, item: int) -> bool:
        """True if the list holds this product."""
        return self.products is None or item in self.products

    def dates_of(self, position: PretixPosition) -> EventDates:
        """The dates a rule's buildTime means for this position."""
        if position.subevent:
            return self.subevent_dates.get(position.subevent, self.dates)
        return self.dates


@dataclass(frozen=True, slots=True)
class Verdict:
    """pretix's answer to one scan, with what a display shows for it."""

    reason: Reason
    until: datetime | None = None  # the validity bound that failed
    at: datetime | None = None  # already used: the first entry


def decide_checkin(
    position: PretixPosition,
    clist: CheckinList,
    *,
    lane: GateRules,
    direction: Direction,
    now: datetime,
    passages: Sequence[Passage],
) -> Verdict:
    """What pretix's redeem answers for `position` on `clist` at `now`."""
    entry = direction is Direction.ENTRY
    status = position.order_status
    if status not in (PAID, PENDING):
        return Verdict(Reason.CANCELLED)
    if position.blocked:
        return Verdict(Reason.BLOCKED)
    if status == PENDING and position.require_approval:
        return Verdict(Reason.UNAPPROVED)
    skew = lane.clock_skew
    if entry and position.valid_from is not None and position.valid_from > now + skew:
        return Verdict(Reason.NOT_YET_VALID, until=position.valid_from)
    if entry and position.valid_until is not None and position.valid_until < now - skew:
        return Verdict(Reason.EXPIRED, until=position.valid_until)
    if not clist.admits_product(position.item) or (
        lane.products is not None and position.item not in lane.products
    ):
        return Verdict(Reason.WRONG_GATE)
    if clist.subevent is not None and position.subevent != clist.subevent:
        return Verdict(Reason.WRONG_GATE)
    if lane.events is not None and (position.subevent or 0) not in lane.events:
        return Verdict(Reason.WRONG_GATE)
    if (
        status != PAID
        and not position.valid_if_pending
        and not (lane.ignore_unpaid and clist.include_pending and status == PENDING)
    ):
        return Verdict(Reason.UNPAID)
    if not entry:
        return Verdict(Reason.EXIT)
    if not clist.rules.empty and not clist.rules.admits(
        RuleInput(
            now=now,
            timezone=clist.timezone,
            dates=clist.dates_of(position),
            product=position.item,
            variation=position.variation,
            gate=lane.gate_id,
            passages=passages,
        )
    ):
        return Verdict(Reason.RULES)
    if passages and not clist.allow_multiple_entries:
        last = max(passages, key=lambda p: p[0])
        exits_only = all(d is Direction.EXIT for _, d in passages)
        after_exit = clist.allow_entry_after_exit and last[1] is Direction.EXIT
        if not (exits_only or after_exit):
            entries = [at for at, d in passages if d is Direction.ENTRY]
            return Verdict(Reason.ALREADY_USED, at=min(entries) if entries else None)
    return Verdict(Reason.ADMITTED)


def addon_choice(
    scanned: PretixPosition,
    addons: Sequence[PretixPosition],
    clist: CheckinList,
    now: datetime,
) -> PretixPosition | None:
    """The position a scan means on a list with addon_match; None: ambiguous.

    Among the scanned ticket and its add-ons: those whose product the list holds, then those
    valid now; none left: the one valid next, else the one valid last, else the scanned one.
    """
    candidates = [scanned, *addons]
    if len(candidates) == 1:
        return scanned
    chosen = [p for p in candidates if clist.admits_product(p.item)]
    if len(chosen) > 1:
        chosen = [
            p
            for p in chosen
            if (p.valid_from is None or p.valid_from <= now)
            and (p.valid_until is None or p.valid_until > now)
        ]
    if len(chosen) == 1:
        return chosen[0]
    if len(chosen) > 1:
        return None
    future = [p for p in candidates if p.valid_from is not None and p.valid_from > now]
    if future:
        return min(future, key=lambda p: p.valid_from or now)
    past = [p for p in candidates if p.valid_until is not None and p.valid_until < now]
    if past:
        return max(past, key=lambda p: p.valid_until or now)
    return scanned
