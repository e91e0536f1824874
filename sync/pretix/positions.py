"""Read every position a scan of the list can reach, as pretix's check-in decides with them.

pretix's redeem finds a secret among all positions of the list's event and date, whatever
their product or order state (a product not on the list answers "product", a cancelled
order "canceled"), and with addon_match among the add-ons of the scanned ticket. The list's
own positions endpoint only has the list's products, so a pull reads the event's orders:
each order's state, approval and valid_if_pending with its positions (cancelled positions
are left out, as pretix's redeem and the list's endpoint leave them out: their secrets are
revoked). The same read gives the check-in list's listing (sync.pretix.connector): a
position is on the list when its product and date are.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from edge.core.errors import SyncError
from edge.core.facts import Direction
from edge.store.pretix import BLOCKED, REQUIRE_APPROVAL, VALID_IF_PENDING, PretixPosition
from sync.pretix.resolver import Calendar, ListState
from sync.pretix.rules import EventDates
from sync.pretix.secrets import looks_sig1, secret_hash

MAX_SECRET_CHARS = 512  # longer "secrets" from the server are rejected

Pulled = tuple[PretixPosition, list[tuple[datetime, Direction]]]  # with its passages
Read = tuple[PretixPosition, list[tuple[datetime, Direction]], bool]  # and signed or not


def _int(obj: dict[str, Any], key: str, where: str, *, optional: bool = False) -> int | None:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise SyncError(f"pretix {where}: field {key!r} is not an integer")
    return value


def _time(obj: dict[str, Any], key: str, where: str) -> datetime | None:
    value = obj.get(key)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError as err:
        raise SyncError(f"pretix {where}: field {key!r}: {err}") from err
    if moment.tzinfo is None:
        raise SyncError(f"pretix {where}: field {key!r} has no time zone")
    return moment


def passages(checkins: Any, list_id: int) -> list[tuple[datetime, Direction]]:
    """The entries and exits pretix recorded for a position on the list, in its order."""
    if not isinstance(checkins, list):
        raise SyncError("pretix position: field 'checkins' is not a list")
    out: list[tuple[datetime, Direction]] = []
    for checkin in checkins:
        if not isinstance(checkin, dict) or checkin.get("list") != list_id:
            continue
        at = _time(checkin, "datetime", "check-in")
        if at is None:
            raise SyncError("pretix check-in: no datetime")
        out.append((at, Direction.EXIT if checkin.get("type") == "exit" else Direction.ENTRY))
    return out


def order_positions(order: dict[str, Any], list_id: int) -> Iterator[Read]:
    """Every position of one order (of any date; not the cancelled ones) with its passages on
    the list and whether its secret is a signed one; SyncError naming a malformed field."""
    status = order.get("status")
    if status not in ("n", "p", "e", "c"):
        raise SyncError(f"pretix order: status {status!r} is not one of n, p, e, c")
    flags = (VALID_IF_PENDING if order.get("valid_if_pending") is True else 0) | (
        REQUIRE_APPROVAL if order.get("require_approval") is True else 0
    )
    positions = order.get("positions")
    if not isinstance(positions, list):
        raise SyncError("pretix order: field 'positions' is not a list")
    for row in positions:
        if not isinstance(row, dict):
            raise SyncError("pretix order: a position is not an object")
        where = "position"
        if row.get("canceled") is True:
            continue
        secret = row.get("secret")
        if not isinstance(secret, str) or not 0 < len(secret) <= MAX_SECRET_CHARS:
            raise SyncError(f"pretix {where}: field 'secret' is not a ticket secret")
        if not secret.isascii():
            raise SyncError(f"pretix {where}: field 'secret' is not ASCII")
        position = PretixPosition(
            position_id=_int(row, "id", where) or 0,
            code_hash=secret_hash(secret),
            item=_int(row, "item", where) or 0,
            variation=_int(row, "variation", where, optional=True),
            subevent=_int(row, "subevent", where, optional=True),
            valid_from=_time(row, "valid_from", where),
            valid_until=_time(row, "valid_until", where),
            order_status=str(status),
            flags=flags | (BLOCKED if row.get("blocked") else 0),
            addon_to=_int(row, "addon_to", where, optional=True),
        )
        yield position, passages(row.get("checkins"), list_id), looks_sig1(secret)


def reachable(position: PretixPosition, state: ListState) -> bool:
    """Whether pretix's redeem on the list looks for secrets among this position's: the
    list's date only, when it has one."""
    return state.subevent is None or position.subevent == state.subevent


def calendar(event: dict[str, Any], subevents: dict[int, Any]) -> Calendar:
    """The event's time zone and dates (and each date's of a series) for check-in rules."""

    def dates(obj: dict[str, Any], where: str) -> EventDates:
        start = _time(obj, "date_from", where)
        if start is None:
            raise SyncError(f"pretix {where}: no date_from")
        return EventDates(start, _time(obj, "date_to", where), _time(obj, "date_admission", where))

    zone = event.get("timezone") or "UTC"
    if not isinstance(zone, str):
        raise SyncError("pretix event: field 'timezone' is not a time zone name")
    return Calendar(
        timezone=zone,
        dates=dates(event, "event"),
        subevents={sid: dates(s, "subevent") for sid, s in subevents.items()},
    )
