"""The decision rules: pure, synchronous, no I/O (principle 1)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from edge.core.codes import Code, Kind, PolicyKind, SignedCode
from edge.core.facts import Credential, Direction, Facts, Revocation


class Reason(enum.Enum):
    """Why a gate admitted or rejected; each has display texts in edge.core.messages."""

    ADMITTED = "admitted"
    EXIT = "exit"  # admitted in the exit direction
    MALFORMED = "malformed"  # not a code at all, or a damaged one
    UNKNOWN = "unknown"  # a plain code the synced data does not know
    UNKNOWN_KEY = "unknown-key"  # signed with a key this gate does not trust
    KEY_RETIRED = "key-retired"  # signed with a key that has been retired
    BAD_SIGNATURE = "bad-signature"  # forged or altered
    REVOKED = "revoked"
    REPLACED = "replaced"  # a lost card that was replaced
    CANCELLED = "cancelled"  # the sale was cancelled
    EVENT_CANCELLED = "event-cancelled"
    VOUCHER = "voucher"  # vouchers are redeemed at a counter, not at a gate
    UNPAID = "unpaid"
    WRONG_GATE = "wrong-gate"  # this gate does not admit the credential's event or product
    WRONG_ZONE = "wrong-zone"
    NOT_YET_VALID = "not-yet-valid"
    EXPIRED = "expired"
    ALREADY_USED = "already-used"
    PASSBACK = "passback"  # entered recently and never left: the card was passed back
    BLOCKED = "blocked"  # blocked for now by the central system (pretix); can be lifted
    UNAPPROVED = "unapproved"  # the order waits for the organizer's approval (pretix)
    RULES = "rules"  # the check-in list's own rules do not admit it now (pretix)
    AMBIGUOUS = "ambiguous"  # the code stands for several tickets valid here (pretix add-ons)

    @property
    def admits(self) -> bool:
        """True for the reasons that open the gate."""
        return self in (Reason.ADMITTED, Reason.EXIT)


_REVOCATION_REASONS = {
    Revocation.REVOKED: Reason.REVOKED,
    Revocation.REPLACED: Reason.REPLACED,
    Revocation.CANCELLED: Reason.CANCELLED,
}


@dataclass(frozen=True, slots=True)
class GateRules:
    """What one lane admits."""

    gate: str  # the lane's name, recorded with each entry and shown on "already used"
    zone: int | None = None  # zone (0..31) this lane leads into; None: the lane is not zoned
    events: frozenset[int] | None = None  # None: every event
    products: frozenset[int] | None = None  # None: every product
    clock_skew: timedelta = timedelta(minutes=2)  # tolerance at both ends of validity windows
    free_exit: bool = False  # exits open whatever the central system would answer
    ignore_unpaid: bool = False  # pretix's ignore_unpaid: pending orders on include_pending lists
    gate_id: int | None = None  # the central system's id of this gate (pretix's gate, for rules)


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one scan, with what a display needs to explain it."""

    reason: Reason
    direction: Direction = Direction.ENTRY
    credential_id: int | None = None
    at: datetime | None = None  # an earlier passage (already used: the first entry)
    gate: str | None = None  # where that passage was
    until: datetime | None = None  # validity start (not yet valid) or end (expired)
    remaining: int | None = None  # entries left after this one, for counted policies
    detail: str = field(default="", compare=False)  # why a scan was malformed (not shown)

    @property
    def admitted(self) -> bool:
        """True if the gate opens."""
        return self.reason.admits


def decide(
    code: Code, facts: Facts, rules: GateRules, direction: Direction, now: datetime
) -> Decision:
    """Decide whether `code` passes the lane `rules` describe, in `direction`, at `now`."""
    if isinstance(code, SignedCode):
        key = facts.key
        if key is None:
            return Decision(Reason.UNKNOWN_KEY, direction)
        if key.retired:
            return Decision(Reason.KEY_RETIRED, direction)
        if not key.verify(code.signed, code.signature):
            return Decision(Reason.BAD_SIGNATURE, direction)
        credential = facts.credential or Credential.from_claims(code.claims)
    elif facts.credential is None:
        return Decision(Reason.UNKNOWN, direction)
    else:
        credential = facts.credential

    cid = credential.credential_id
    entries = facts.entries
    if direction is Direction.EXIT:
        # Anyone holding an authentic credential may leave, even one revoked meanwhile.
        return Decision(Reason.EXIT, direction, cid)

    revoked = facts.code_revoked or facts.credential_revoked
    if revoked is not None:
        return Decision(_REVOCATION_REASONS[revoked], direction, cid)
    if facts.event_cancelled:
        return Decision(Reason.EVENT_CANCELLED, direction, cid)
    if facts.product_revoked is not None:
        return Decision(_REVOCATION_REASONS[facts.product_revoked], direction, cid)
    if credential.kind is Kind.VOUCHER:
        return Decision(Reason.VOUCHER, direction, cid)
    if not credential.paid:
        return Decision(Reason.UNPAID, direction, cid)
    if (rules.events is not None and credential.event_id not in rules.events) or (
        rules.products is not None and credential.product_id not in rules.products
    ):
        return Decision(Reason.WRONG_GATE, direction, cid)
    if rules.zone is not None and credential.zones and not credential.zones >> rules.zone & 1:
        return Decision(Reason.WRONG_ZONE, direction, cid)
    validity = credential.validity
    if validity is not None:
        if now + rules.clock_skew < validity.start:
            return Decision(Reason.NOT_YET_VALID, direction, cid, until=validity.start)
        if now - rules.clock_skew > validity.end:
            return Decision(Reason.EXPIRED, direction, cid, until=validity.end)

    policy = credential.policy
    if policy.kind is PolicyKind.UNLIMITED:
        window = timedelta(minutes=policy.passback_minutes)
        if (
            window
            and entries is not None
            and entries.last_direction is Direction.ENTRY
            and now - entries.last_at < window
            # A passage stamped ahead of this clock (beyond the tolerance): the clock was set
            # back since, or another gate's runs ahead. Its window cannot be measured, and
            # holding the visitor outside until the wall clock catches up (a day) is worse.
            and entries.last_at <= now + rules.clock_skew
        ):
            return Decision(
                Reason.PASSBACK, direction, cid, at=entries.last_at, gate=entries.last_gate
            )
        return Decision(Reason.ADMITTED, direction, cid)
    used = entries.count if entries is not None else 0
    if used >= policy.uses:
        first_at = entries.first_at if entries is not None else None
        first_gate = entries.first_gate if entries is not None else None
        return Decision(Reason.ALREADY_USED, direction, cid, at=first_at, gate=first_gate)
    return Decision(Reason.ADMITTED, direction, cid, remaining=policy.uses - used - 1)


def malformed(detail: str, direction: Direction = Direction.ENTRY) -> Decision:
    """The decision for input that is not a code."""
    return Decision(Reason.MALFORMED, direction, detail=detail)
