"""The scan path for pretix tickets: secret → pretix's answer, as its redeem would give it.

A scan finds the position whose current secret it is (pulled into the store's pretix part),
with its passages on the list; a signed secret no pull has seen yet carries its own facts
(its id is then a negative number derived from the secret's hash, so every scan of it finds
the same passages). sync.pretix.checkin decides with pretix's steps, rules and reasons.
Synchronous: two or three point queries on the store's reader and at most one Ed25519
verification per key, no thread hop.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.core.codes import MAX_PLAIN_LENGTH, EntryPolicy, Kind, PlainCode, Validity, scan_text
from edge.core.decide import Decision, GateRules, Reason
from edge.core.errors import CodeError, SyncError
from edge.core.facts import Credential, Direction, EntryState
from edge.store.database import Store
from edge.store.pretix import BLOCKED, PretixPosition
from sync.pretix.checkin import PAID, PENDING, CheckinList, addon_choice, decide_checkin
from sync.pretix.rules import CheckinRules, EventDates, RulesError
from sync.pretix.secrets import find_key, looks_sig1, parse_sig1, secret_hash

_LOGGER = logging.getLogger(__name__)

KEYS_CURSOR = "pretix:keys"  # JSON list of base64 raw Ed25519 keys: the event's valid_keys
LIST_CURSOR = "pretix:list"  # JSON of ListState
CALENDAR_CURSOR = "pretix:calendar"  # JSON of Calendar
PRETIX_GATE = "pretix"  # where a passage pretix reported happened, as "already used" shows it
# Open ends of a validity window pretix left open (Validity has both ends).
OPEN_START = datetime(1970, 1, 1, tzinfo=UTC)
OPEN_END = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ListState:
    """What the gate keeps of the event and its check-in list."""

    list_id: int
    products: frozenset[int] | None  # None: all_products
    subevent: int | None  # the list is limited to this date of a series
    include_pending: bool  # pending orders are on the list (admit with ignore_unpaid)
    multiple_entries: bool  # allow_multiple_entries
    entry_after_exit: bool = True  # allow_entry_after_exit (pretix's default)
    addon_match: bool = False  # a ticket's scan checks in its add-on of a listed product
    rules: str = "null"  # the list's check-in rules, JSON as pretix gave them

    def to_json(self) -> str:
        """The cursor text."""
        data = dataclasses.asdict(self)
        data["products"] = sorted(self.products) if self.products is not None else None
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ListState:
        """Parse the cursor text; SyncError if it is damaged."""
        try:
            data: dict[str, Any] = json.loads(text)
            products = data["products"]
            return cls(
                list_id=int(data["list_id"]),
                products=frozenset(int(p) for p in products) if products is not None else None,
                subevent=int(data["subevent"]) if data["subevent"] is not None else None,
                include_pending=bool(data["include_pending"]),
                multiple_entries=bool(data["multiple_entries"]),
                entry_after_exit=bool(data.get("entry_after_exit", True)),
                addon_match=bool(data.get("addon_match", False)),
                rules=str(data.get("rules", "null")),
            )
        except (ValueError, KeyError, TypeError) as err:
            raise SyncError(f"stored pretix check-in list state is damaged: {err}") from err

    @property
    def policy(self) -> EntryPolicy:
        """The entry policy of every ticket on this list (edge facts; pretix lanes decide
        with sync.pretix.checkin, which also knows entry after exit)."""
        return EntryPolicy.unlimited() if self.multiple_entries else EntryPolicy.single()


@dataclass(frozen=True, slots=True)
class Calendar:
    """The event's time zone and the dates check-in rules refer to."""

    timezone: str = "UTC"
    dates: EventDates | None = None
    subevents: dict[int, EventDates] = dataclasses.field(default_factory=dict)

    def to_json(self) -> str:
        """The cursor text."""

        def one(d: EventDates) -> list[str | None]:
            return [
                d.date_from.isoformat(),
                d.date_to.isoformat() if d.date_to else None,
                d.date_admission.isoformat() if d.date_admission else None,
            ]

        return json.dumps(
            {
                "timezone": self.timezone,
                "dates": one(self.dates) if self.dates else None,
                "subevents": {str(k): one(v) for k, v in self.subevents.items()},
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Calendar:
        """Parse the cursor text; SyncError if it is damaged."""

        def one(row: list[str | None]) -> EventDates:
            start, end, admission = (datetime.fromisoformat(t) if t else None for t in row)
            if start is None:
                raise ValueError("a date without its start")
            return EventDates(start, end, admission)

        try:
            data: dict[str, Any] = json.loads(text)
            ZoneInfo(str(data["timezone"]))
            return cls(
                timezone=str(data["timezone"]),
                dates=one(data["dates"]) if data["dates"] else None,
                subevents={int(k): one(v) for k, v in data["subevents"].items()},
            )
        except (ValueError, KeyError, TypeError, ZoneInfoNotFoundError) as err:
            raise SyncError(f"stored pretix calendar is damaged: {err}") from err


def keys_to_json(keys: list[bytes]) -> str:
    """The keys cursor text for raw 32-byte keys."""
    return json.dumps([base64.b64encode(k).decode("ascii") for k in keys])


def keys_from_json(text: str) -> list[Ed25519PublicKey]:
    """Parse the keys cursor text; SyncError if it is damaged."""
    try:
        return [
            Ed25519PublicKey.from_public_bytes(base64.b64decode(k, validate=True))
            for k in json.loads(text)
        ]
    except (ValueError, TypeError, binascii.Error) as err:
        raise SyncError(f"stored pretix keys are damaged: {err}") from err


def unknown_position_id(code_hash: bytes) -> int:
    """The credential id of a signed ticket whose position the gate has not synced yet.

    Negative, so it never meets a pretix position id; from the secret, so every scan of
    the same secret finds the same passages.
    """
    return -(int.from_bytes(code_hash[:8], "big") >> 1) - 1


def validity(valid_from: datetime | None, valid_until: datetime | None) -> Validity | None:
    """An edge validity window from pretix's optional ends (None: no window)."""
    if valid_from is None and valid_until is None:
        return None
    return Validity(valid_from or OPEN_START, valid_until or OPEN_END)


class PretixResolver:
    """The Gate's resolver for a device whose central system is pretix: each scan is decided
    as pretix's redeem would decide it (sync.pretix.checkin), from the store's positions."""

    def __init__(self, store: Store, *, admit_unsynced_signed: bool = True) -> None:
        self._store = store
        self._admit_unsynced = admit_unsynced_signed  # else such a ticket answers "unpaid"
        self._keys: list[Ed25519PublicKey] = []
        self._state: ListState | None = None
        self._list: CheckinList | None = None
        self.refusal: str | None = None  # why this gate cannot decide as pretix does
        self.reload()

    @property
    def state(self) -> ListState | None:
        """The synced check-in list, or None before the first sync."""
        return self._state

    def reload(self) -> None:
        """Read keys, check-in list and calendar from the store (after every sync); a list
        whose rules this gate cannot evaluate sets `refusal` and every scan is refused."""
        keys_text = self._store.cursor(KEYS_CURSOR)
        list_text = self._store.cursor(LIST_CURSOR)
        calendar_text = self._store.cursor(CALENDAR_CURSOR)
        self._keys = keys_from_json(keys_text) if keys_text else []
        self._state = ListState.from_json(list_text) if list_text else None
        calendar = Calendar.from_json(calendar_text) if calendar_text else Calendar()
        state = self._state
        try:
            rules = CheckinRules.from_json(state.rules if state else "null")
        except RulesError as err:
            self.refusal = f"check-in list {state.list_id if state else '?'}: {err}"
            self._list = None
            _LOGGER.error("pretix: every scan is refused: %s", self.refusal)
            return
        self.refusal = None
        self._list = CheckinList(
            products=state.products if state else None,
            subevent=state.subevent if state else None,
            include_pending=state.include_pending if state else False,
            allow_multiple_entries=state.multiple_entries if state else False,
            allow_entry_after_exit=state.entry_after_exit if state else True,
            rules=rules,
            timezone=ZoneInfo(calendar.timezone),
            dates=calendar.dates or EventDates(OPEN_START),
            subevent_dates=calendar.subevents,
        )

    def check_rules(self) -> None:
        """RulesError naming what this gate cannot evaluate, if the synced list has it."""
        if self.refusal is not None:
            raise RulesError(self.refusal)

    def __call__(
        self,
        data: bytes,
        rules: GateRules,
        direction: Direction,
        now: datetime,
        pending: Mapping[int, EntryState],
    ) -> tuple[Decision, bytes, EntryState | None]:
        """pretix's answer to scanner bytes; CodeError if they are no secret."""
        text = scan_text(data)
        signed = looks_sig1(text)
        if not signed and len(text) > MAX_PLAIN_LENGTH:
            raise CodeError(f"pretix secret of {len(text)} characters is not a ticket")
        code_hash = secret_hash(text)
        clist = self._list
        if clist is None:
            return Decision(Reason.RULES, direction, detail=self.refusal or ""), code_hash, None
        store = self._store
        position = store.pretix_position(code_hash)
        alias: int | None = None
        if position is None:
            unsynced = self._unsynced(text, code_hash, signed, direction)
            if isinstance(unsynced, Decision):
                return unsynced, code_hash, None
            position = unsynced
        elif signed:
            alias = unknown_position_id(code_hash)
        if not position.blocked and store.code_blocked(code_hash):
            position = dataclasses.replace(position, flags=position.flags | BLOCKED)
        state = self._state
        if state is not None and state.addon_match and position.position_id > 0:
            chosen = addon_choice(position, store.pretix_addons(position.position_id), clist, now)
            if chosen is None:
                return Decision(Reason.AMBIGUOUS, direction, position.position_id), code_hash, None
            if chosen is not position:
                position, alias = chosen, None
        pid = position.position_id
        passages = store.pretix_passages(pid, alias)
        in_flight = pending.get(pid)
        if in_flight is not None:
            passages.setdefault((in_flight.last_at, in_flight.last_direction), in_flight.last_gate)
        verdict = decide_checkin(
            position, clist, lane=rules, direction=direction, now=now, passages=list(passages)
        )
        first_gate = passages.get((verdict.at, Direction.ENTRY)) if verdict.at else None
        decision = Decision(
            verdict.reason,
            direction,
            pid,
            at=verdict.at,
            gate=(first_gate or PRETIX_GATE) if verdict.at else None,
            until=verdict.until,
        )
        return decision, code_hash, _summary(passages)

    def _unsynced(
        self, text: str, code_hash: bytes, signed: bool, direction: Direction
    ) -> PretixPosition | Decision:
        """A secret no pull has seen as a position's current one: pretix answers revoked
        for a secret it revoked, invalid for one it does not know; a signed ticket sold after
        the last pull carries its own facts."""
        if self._store.facts(PlainCode(code_hash)).code_revoked is not None:
            return Decision(Reason.REVOKED, direction)
        if not signed:
            return Decision(Reason.UNKNOWN, direction)
        secret = parse_sig1(text)
        if not self._keys:
            return Decision(Reason.UNKNOWN_KEY, direction)
        if find_key(secret, self._keys) is None:
            return Decision(Reason.BAD_SIGNATURE, direction)
        ticket = secret.ticket
        state = self._state
        if state is not None and state.subevent is not None and ticket.subevent != state.subevent:
            # pretix looks for the secret among the list's date only: "invalid".
            return Decision(Reason.UNKNOWN, direction)
        return PretixPosition(
            position_id=unknown_position_id(code_hash),
            code_hash=code_hash,
            item=ticket.item,
            variation=ticket.variation or None,
            subevent=ticket.subevent or None,
            valid_from=ticket.valid_from,
            valid_until=ticket.valid_until,
            # Unknowable offline: pretix's own offline scanners take it as paid.
            order_status=PAID if self._admit_unsynced else PENDING,
        )


def _summary(passages: Mapping[tuple[datetime, Direction], str | None]) -> EntryState | None:
    """The passages as an EntryState (the gate keeps it while the journal write commits)."""
    if not passages:
        return None
    entries = sorted(at for at, d in passages if d is Direction.ENTRY)
    (last_at, last_direction), last_gate = max(passages.items(), key=lambda p: p[0][0])
    first = entries[0] if entries else None
    return EntryState(
        count=len(entries),
        first_at=first,
        first_gate=(passages.get((first, Direction.ENTRY)) or PRETIX_GATE) if first else None,
        last_at=last_at,
        last_direction=last_direction,
        last_gate=last_gate or PRETIX_GATE,
    )


def position_credential(
    position_id: int,
    *,
    item: int,
    event: int,
    valid_from: datetime | None,
    valid_until: datetime | None,
    paid: bool,
    state: ListState,
) -> Credential:
    """The edge credential of a synced pretix position."""
    return Credential(
        credential_id=position_id,
        kind=Kind.TICKET,
        event_id=event,
        product_id=item,
        policy=state.policy,
        validity=validity(valid_from, valid_until),
        paid=paid,
    )
