"""pretix's check-in rules (a JsonLogic dialect), compiled once and evaluated offline.

Written from pretix's documentation of check-in rules and checked against a running pretix
(tests/integration/test_pretix.py). What pretix does that matters for the same answer:

- arguments are evaluated eagerly, `and`/`or` included (an error in any branch fails the
  whole rule, and pretix answers "rules" for a rule that fails to evaluate);
- comparisons coerce like JavaScript: a number on either side compares both as floats (a
  value that is no number makes the comparison false), `==` compares as text when either
  side is text and as truth values when either side is a boolean; `<` and `<=` take a third
  argument ("between");
- counts are over the position's entries on the list (exits never count), regardless of
  whether they lie before or after the time of the scan; days are calendar days in the
  event's time zone; `minutes_since_*` are whole minutes, -1 without an entry;
- `isAfter(a, b, tol)` is `b < a + tol minutes`, `isBefore(a, b, tol)` is `a < b + tol`;
- `buildTime` forms: custom (an ISO time), customtime (a time of day, today in the event's
  zone), date_from, date_to (else date_from), date_admission (else date_from) of the ticket's
  date (its subevent in a series).

Anything else is refused when the rules are compiled (RulesError names the operator or
variable), so a rule the gate cannot evaluate never decides silently.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from edge.core.errors import SyncError
from edge.core.facts import Direction

MAX_RULE_DEPTH = 32  # pretix's editor nests a few levels; deeper is not a rule
MAX_RULE_NODES = 2000  # operators in one rule set

Value = Any  # a JsonLogic value: None, bool, int, float, str, datetime or a list of them
Passage = tuple[datetime, Direction]


class RulesError(SyncError):
    """The check-in list's rules use something this gate cannot evaluate as pretix does."""


@dataclass(frozen=True, slots=True)
class EventDates:
    """The times `buildTime` refers to, of the event or of one date of a series."""

    date_from: datetime
    date_to: datetime | None = None
    date_admission: datetime | None = None


@dataclass(frozen=True, slots=True)
class RuleInput:
    """What a rule may ask about one scan."""

    now: datetime  # aware
    timezone: tzinfo  # the event's
    dates: EventDates  # the ticket's date (subevent) or the event
    product: int
    variation: int | None
    gate: int | None  # pretix's gate id of the lane, if configured
    passages: Sequence[Passage]  # the position's passages on the list, any order


class _Scan:
    """Lazily computed variables of one evaluation."""

    __slots__ = ("_entries", "_input")

    def __init__(self, given: RuleInput) -> None:
        self._input = given
        self._entries: list[datetime] | None = None

    @property
    def input(self) -> RuleInput:
        return self._input

    def entries(self) -> list[datetime]:
        if self._entries is None:
            self._entries = sorted(at for at, d in self._input.passages if d is Direction.ENTRY)
        return self._entries

    def day(self, moment: datetime) -> date:
        return moment.astimezone(self._input.timezone).date()

    def variable(self, name: str) -> Value:
        given = self._input
        if name == "product":
            return given.product
        if name == "variation":
            return given.variation
        if name == "gate":
            return given.gate
        if name == "now":
            return given.now
        if name == "now_isoweekday":
            return given.now.astimezone(given.timezone).isoweekday()
        entries = self.entries()
        if name == "entries_number":
            return len(entries)
        if name == "entries_today":
            local = given.now.astimezone(given.timezone)
            midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
            return sum(1 for at in entries if at >= midnight)
        if name == "entries_days":
            return len({self.day(at) for at in entries})
        if name == "minutes_since_last_entry":
            return (given.now - entries[-1]).total_seconds() // 60 if entries else -1
        if name == "minutes_since_first_entry":
            return (given.now - entries[0]).total_seconds() // 60 if entries else -1
        if name == "entry_status":
            if not given.passages:
                return "absent"
            last = max(given.passages, key=lambda p: p[0])
            return "absent" if last[1] is Direction.EXIT else "present"
        raise RulesError(f"check-in rule variable {name!r} is not supported")  # compiled out


VARIABLES = frozenset(
    {
        "product",
        "variation",
        "gate",
        "now",
        "now_isoweekday",
        "entries_number",
        "entries_today",
        "entries_days",
        "minutes_since_last_entry",
        "minutes_since_first_entry",
        "entry_status",
    }
)


def _soft_equals(a: Value, b: Value) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return _text(a) == _text(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) is bool(b)
    return bool(a == b)


def _text(value: Value) -> str:
    # Python's str(), as pretix compares; only a number, text or None meets text in practice.
    return str(value)


def _less(a: Value, b: Value, *more: Value) -> bool:
    if any(type(v) in (int, float) for v in (a, b)):
        try:
            a, b = float(a), float(b)
        except (TypeError, ValueError):
            return False
    return bool(a < b) and (not more or _less(b, *more))


def _less_or_equal(a: Value, b: Value, *more: Value) -> bool:
    return (_less(a, b) or _soft_equals(a, b)) and (not more or _less_or_equal(b, *more))


def _is_before(t1: Value, t2: Value, tolerance: Value = None) -> bool:
    if tolerance:
        return bool(t1 < t2 + timedelta(minutes=float(tolerance)))
    return bool(t1 < t2)


def _and(*values: Value) -> Value:
    total: Value = True
    for value in values:
        total = total and value
    return total


def _or(*values: Value) -> Value:
    total: Value = False
    for value in values:
        total = total or value
    return total


def _arity(name: str, low: int, high: int) -> Callable[[int], None]:
    def check(count: int) -> None:
        if not low <= count <= high:
            raise RulesError(f"check-in rule operator {name!r} takes {low}..{high} arguments")

    return check


_Node = Callable[[_Scan], Value]
_Pure = Callable[..., Value]

# Operators whose arguments are all evaluated first, then applied.
_PURE: dict[str, tuple[_Pure, int, int]] = {
    "==": (_soft_equals, 2, 2),
    "!=": (lambda a, b: not _soft_equals(a, b), 2, 2),
    "===": (lambda a, b: type(a) is type(b) and a == b, 2, 2),
    "!==": (lambda a, b: not (type(a) is type(b) and a == b), 2, 2),
    "<": (_less, 2, 3),
    "<=": (_less_or_equal, 2, 3),
    ">": (lambda a, b: _less(b, a), 2, 2),
    ">=": (lambda a, b: _less(b, a) or _soft_equals(a, b), 2, 2),
    "!": (lambda a: not a, 1, 1),
    "!!": (bool, 1, 1),
    "and": (_and, 0, 1000),
    "or": (_or, 0, 1000),
    "inList": (lambda a, b: a in b, 2, 2),
    "objectList": (lambda *objs: list(objs), 0, 10000),
    "lookup": (lambda _model, pk, _name: int(pk), 3, 3),
    "isBefore": (_is_before, 2, 3),
    "isAfter": (lambda t1, t2, tol=None: _is_before(t2, t1, tol), 2, 3),
}

_TIME_FORMS = frozenset({"custom", "customtime", "date_from", "date_to", "date_admission"})
_COUNTS = frozenset(
    {"entries_since", "entries_before", "entries_days_since", "entries_days_before"}
)


def _custom_time(text: Value) -> datetime:
    if not isinstance(text, str):
        raise RulesError("check-in rule buildTime custom needs a time text")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise RulesError(f"check-in rule buildTime custom {text!r} is not an ISO time") from None
    if moment.tzinfo is None:
        # pretix compares it with aware times: the rule fails to evaluate, every scan "rules".
        raise RulesError(f"check-in rule buildTime custom {text!r} has no time zone")
    return moment


def _time_of_day(text: Value) -> time:
    if not isinstance(text, str):
        raise RulesError("check-in rule buildTime customtime needs a time of day")
    try:
        return time.fromisoformat(text)
    except ValueError:
        raise RulesError(f"check-in rule buildTime customtime {text!r} is no time of day") from None


class _Compiler:
    def __init__(self) -> None:
        self.nodes = 0

    def compile(self, rule: Value, depth: int) -> _Node:
        self.nodes += 1
        if depth > MAX_RULE_DEPTH or self.nodes > MAX_RULE_NODES:
            raise RulesError("check-in rules nest too deep or are too large")
        if isinstance(rule, dict):
            return self._operator(rule, depth)
        if isinstance(rule, list):
            # A literal list is taken as it is (its elements are not evaluated).
            value: Value = list(rule)
            return lambda _scan: value
        if rule is None or isinstance(rule, bool | int | float | str):
            literal: Value = rule
            return lambda _scan: literal
        raise RulesError(f"check-in rule value of type {type(rule).__name__}")

    def _operator(self, rule: dict[str, Any], depth: int) -> _Node:
        names = [k for k in rule if not k.startswith("__")]
        if len(names) != 1:
            raise RulesError(f"check-in rule object with keys {sorted(rule)}: one operator")
        name = names[0]
        raw = rule[name]
        args = list(raw) if isinstance(raw, list | tuple) else [raw]
        if name == "var":
            return self._var(args)
        if name == "buildTime":
            return self._build_time(args, depth)
        if name in _COUNTS:
            return self._count(name, args, depth)
        found = _PURE.get(name)
        if found is None:
            raise RulesError(f"check-in rule operator {name!r} is not supported by this gate")
        function, low, high = found
        _arity(name, low, high)(len(args))
        parts = [self.compile(a, depth + 1) for a in args]
        return lambda scan: function(*(p(scan) for p in parts))

    def _var(self, args: list[Value]) -> _Node:
        if len(args) != 1 or not isinstance(args[0], str):
            raise RulesError("check-in rule 'var' takes one variable name")
        name = args[0]
        if name not in VARIABLES:
            raise RulesError(f"check-in rule variable {name!r} is not supported by this gate")
        return lambda scan: scan.variable(name)

    def _build_time(self, args: list[Value], depth: int) -> _Node:
        if not 1 <= len(args) <= 2 or not isinstance(args[0], str):
            raise RulesError("check-in rule 'buildTime' takes a form and an optional value")
        form = args[0]
        if form not in _TIME_FORMS:
            raise RulesError(f"check-in rule buildTime form {form!r} is not supported")
        value = args[1] if len(args) == 2 else None
        if form == "custom":
            moment = _custom_time(value)
            return lambda _scan: moment
        if form == "customtime":
            of_day = _time_of_day(value)

            def today(scan: _Scan) -> datetime:
                given = scan.input
                return given.now.astimezone(given.timezone).replace(
                    hour=of_day.hour,
                    minute=of_day.minute,
                    second=of_day.second,
                    microsecond=of_day.microsecond,
                )

            return today

        def event_time(scan: _Scan) -> datetime:
            dates = scan.input.dates
            if form == "date_to":
                return dates.date_to or dates.date_from
            if form == "date_admission":
                return dates.date_admission or dates.date_from
            return dates.date_from

        return event_time

    def _count(self, name: str, args: list[Value], depth: int) -> _Node:
        if len(args) != 1 or not isinstance(args[0], dict) or "buildTime" not in args[0]:
            raise RulesError(f"check-in rule {name!r} takes exactly one buildTime")
        cutoff = self.compile(args[0], depth + 1)
        since = name.endswith("_since")
        days = "_days_" in name

        def count(scan: _Scan) -> Value:
            at_cut = cutoff(scan)
            chosen = [at for at in scan.entries() if (at >= at_cut) == since]
            return len({scan.day(at) for at in chosen}) if days else len(chosen)

        return count


@dataclass(frozen=True, slots=True)
class CheckinRules:
    """A check-in list's compiled rules; `admits` is pretix's verdict for one entry."""

    source: str  # the rules as JSON text, for the store and for messages
    _root: _Node | None  # None: the list has no rules

    @classmethod
    def compile(cls, rules: Value) -> CheckinRules:
        """Compile pretix's `rules` of a check-in list; RulesError names what is unknown."""
        source = json.dumps(rules, sort_keys=True)
        if not rules:  # pretix: no rules ({} or null)
            return cls(source, None)
        if not isinstance(rules, dict):
            raise RulesError("check-in rules must be a JsonLogic object")
        return cls(source, _Compiler().compile(rules, 0))

    @classmethod
    def from_json(cls, text: str) -> CheckinRules:
        """Compile rules kept as JSON text."""
        try:
            return cls.compile(json.loads(text))
        except ValueError as err:
            raise RulesError(f"stored check-in rules are not JSON: {err}") from err

    @property
    def empty(self) -> bool:
        """True if the list has no rules (every entry passes this step)."""
        return self._root is None

    def admits(self, given: RuleInput) -> bool:
        """pretix's verdict; a rule that fails to evaluate does not admit (pretix: "rules")."""
        if self._root is None:
            return True
        try:
            return bool(self._root(_Scan(given)))
        except (TypeError, ValueError, ArithmeticError, OverflowError, AttributeError):
            return False
