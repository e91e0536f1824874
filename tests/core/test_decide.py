"""edge.core.decide: the decision rules as properties over generated facts, one example each."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import KEY_ID, OTHER_PRIVATE, PRIVATE, mint_code, ticket, trusted
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.core.codes import (
    Code,
    EntryPolicy,
    Kind,
    PlainCode,
    PolicyKind,
    SignedCode,
    Validity,
    parse,
)
from edge.core.decide import GateRules, Reason, decide, malformed
from edge.core.facts import Credential, Direction, EntryState, Facts, Revocation

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
GATE = "North 1"
RULES = GateRules(GATE)
KEY = trusted()

# A few real signed codes, minted once: signing costs ~50 µs, verification ~160 µs.
SIGNED = [
    parse(mint_code(ticket(1001)).encode()),
    parse(
        mint_code(
            ticket(
                2002,
                kind=Kind.PASS,
                event_id=0,
                product_id=20,
                policy=EntryPolicy.unlimited(5),
                validity=Validity(NOW - timedelta(days=30), NOW + timedelta(days=30)),
                zones=0b110,
            )
        ).encode()
    ),
    parse(mint_code(ticket(3003, policy=EntryPolicy.multi(3), event_id=43)).encode()),
]
PLAIN = parse(b"0123456789012")
FORGED = parse(mint_code(ticket(1001), OTHER_PRIVATE).encode())


def _signed(index: int = 0) -> SignedCode:
    code = SIGNED[index]
    assert isinstance(code, SignedCode)
    return code


def _entries(
    count: int, last_at: datetime, direction: Direction = Direction.ENTRY, gate: str = "South 2"
) -> EntryState:
    first = last_at - timedelta(hours=1) if count else None
    return EntryState(count, first, gate if count else None, last_at, direction, gate)


def _after(previous: EntryState | None, at: datetime, direction: Direction) -> EntryState:
    """One more passage, as the store records it."""
    is_entry = direction is Direction.ENTRY
    first_at = previous.first_at if previous else None
    first_gate = previous.first_gate if previous else None
    if first_at is None and is_entry:
        first_at, first_gate = at, GATE
    count = (previous.count if previous else 0) + int(is_entry)
    return EntryState(count, first_at, first_gate, at, direction, GATE)


# -- strategies ------------------------------------------------------------------------------

minutes = st.integers(-600, 600).map(lambda m: timedelta(minutes=m))
revocations = st.none() | st.sampled_from(Revocation)
policies = st.one_of(
    st.just(EntryPolicy.single()),
    st.integers(2, 5).map(EntryPolicy.multi),
    st.integers(0, 30).map(EntryPolicy.unlimited),
)


@st.composite
def validities(draw: st.DrawFn) -> Validity | None:
    if draw(st.booleans()):
        return None
    start = NOW + draw(minutes)
    return Validity(start, start + draw(st.integers(0, 600).map(lambda m: timedelta(minutes=m))))


@st.composite
def credentials(draw: st.DrawFn, credential_id: int) -> Credential:
    return Credential(
        credential_id=credential_id,
        kind=draw(st.sampled_from(Kind)),
        event_id=draw(st.integers(0, 3)),
        product_id=draw(st.integers(0, 3)),
        policy=draw(policies),
        validity=draw(validities()),
        zones=draw(st.integers(0, 7)),
        paid=draw(st.booleans()),
    )


@st.composite
def entry_states(draw: st.DrawFn) -> EntryState | None:
    if draw(st.booleans()):
        return None
    last_at = NOW - timedelta(minutes=draw(st.integers(0, 60)))
    return _entries(draw(st.integers(0, 6)), last_at, draw(st.sampled_from(Direction)))


rules_strategy = st.builds(
    GateRules,
    gate=st.just(GATE),
    zone=st.none() | st.integers(0, 3),
    events=st.none() | st.frozensets(st.integers(0, 3)),
    products=st.none() | st.frozensets(st.integers(0, 3)),
    clock_skew=st.integers(0, 10).map(lambda m: timedelta(minutes=m)),
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Code, Facts]:
    """A code whose authenticity holds (trusted key, real signature), and facts about it."""
    if draw(st.booleans()):
        code: Code = draw(st.sampled_from(SIGNED))
        assert isinstance(code, SignedCode)
        cid = code.claims.credential_id
        credential = draw(st.none() | credentials(cid))
        key = KEY
    else:
        code = PLAIN
        credential = draw(credentials(9009))
        key = None
    facts = Facts(
        key=key,
        credential=credential,
        code_revoked=draw(revocations),
        credential_revoked=draw(revocations),
        event_cancelled=draw(st.booleans()),
        product_revoked=draw(revocations),
        entries=draw(entry_states()),
    )
    return code, facts


def _effective(code: Code, facts: Facts) -> Credential:
    if facts.credential is not None:
        return facts.credential
    assert isinstance(code, SignedCode)
    return Credential.from_claims(code.claims)


# -- properties ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(scenarios(), rules_strategy, minutes)
def test_revoked_is_never_admitted_on_entry(
    scenario: tuple[Code, Facts], rules: GateRules, offset: timedelta
) -> None:
    code, facts = scenario
    decision = decide(code, facts, rules, Direction.ENTRY, NOW + offset)
    if facts.code_revoked or facts.credential_revoked or facts.product_revoked:
        assert not decision.admitted
        assert decision.reason in {
            Reason.REVOKED,
            Reason.REPLACED,
            Reason.CANCELLED,
            Reason.EVENT_CANCELLED,
        }
    if facts.event_cancelled:
        assert not decision.admitted


@settings(max_examples=300, deadline=None)
@given(scenarios(), rules_strategy, minutes)
def test_admitted_entry_implies_no_reject_condition_holds(
    scenario: tuple[Code, Facts], rules: GateRules, offset: timedelta
) -> None:
    code, facts = scenario
    now = NOW + offset
    decision = decide(code, facts, rules, Direction.ENTRY, now)
    credential = _effective(code, facts)
    assert decision.credential_id == credential.credential_id
    if not decision.admitted:
        return
    assert decision.reason is Reason.ADMITTED
    assert facts.code_revoked is facts.credential_revoked is facts.product_revoked is None
    assert not facts.event_cancelled
    assert credential.kind is not Kind.VOUCHER
    assert credential.paid
    assert rules.events is None or credential.event_id in rules.events
    assert rules.products is None or credential.product_id in rules.products
    if rules.zone is not None and credential.zones:
        assert credential.zones & (1 << rules.zone)
    if credential.validity is not None:
        assert credential.validity.start - rules.clock_skew <= now
        assert now <= credential.validity.end + rules.clock_skew
    entries = facts.entries
    if credential.policy.kind is PolicyKind.UNLIMITED:
        window = timedelta(minutes=credential.policy.passback_minutes)
        if window and entries is not None and entries.last_direction is Direction.ENTRY:
            # An entry stamped ahead of this clock beyond the tolerance has no measurable
            # window (the clock was set back): it does not hold the visitor outside.
            ahead = entries.last_at > now + rules.clock_skew
            assert ahead or now - entries.last_at >= window
        assert decision.remaining is None
    else:
        used = entries.count if entries else 0
        assert used < credential.policy.uses
        assert decision.remaining == credential.policy.uses - used - 1


@settings(max_examples=300, deadline=None)
@given(scenarios(), rules_strategy, minutes)
def test_rejected_entry_names_a_reason_that_holds(
    scenario: tuple[Code, Facts], rules: GateRules, offset: timedelta
) -> None:
    code, facts = scenario
    now = NOW + offset
    decision = decide(code, facts, rules, Direction.ENTRY, now)
    credential = _effective(code, facts)
    holds = {
        Reason.ADMITTED: True,
        Reason.REVOKED: Revocation.REVOKED
        in (facts.code_revoked, facts.credential_revoked, facts.product_revoked),
        Reason.REPLACED: Revocation.REPLACED
        in (facts.code_revoked, facts.credential_revoked, facts.product_revoked),
        Reason.CANCELLED: Revocation.CANCELLED
        in (facts.code_revoked, facts.credential_revoked, facts.product_revoked),
        Reason.EVENT_CANCELLED: facts.event_cancelled,
        Reason.VOUCHER: credential.kind is Kind.VOUCHER,
        Reason.UNPAID: not credential.paid,
        Reason.WRONG_GATE: (rules.events is not None and credential.event_id not in rules.events)
        or (rules.products is not None and credential.product_id not in rules.products),
        Reason.WRONG_ZONE: rules.zone is not None
        and credential.zones != 0
        and not credential.zones & (1 << rules.zone),
        Reason.NOT_YET_VALID: credential.validity is not None
        and now < credential.validity.start - rules.clock_skew,
        Reason.EXPIRED: credential.validity is not None
        and now > credential.validity.end + rules.clock_skew,
        Reason.ALREADY_USED: credential.policy.kind is not PolicyKind.UNLIMITED
        and facts.entries is not None
        and facts.entries.count >= credential.policy.uses,
        Reason.PASSBACK: credential.policy.kind is PolicyKind.UNLIMITED
        and facts.entries is not None
        and facts.entries.last_direction is Direction.ENTRY,
    }
    assert holds[decision.reason], decision


@settings(max_examples=200, deadline=None)
@given(scenarios(), rules_strategy, minutes)
def test_exit_is_admitted_for_every_authentic_credential(
    scenario: tuple[Code, Facts], rules: GateRules, offset: timedelta
) -> None:
    code, facts = scenario
    decision = decide(code, facts, rules, Direction.EXIT, NOW + offset)
    assert decision.reason is Reason.EXIT
    assert decision.admitted
    assert decision.direction is Direction.EXIT
    assert decision.credential_id == _effective(code, facts).credential_id


@settings(max_examples=100, deadline=None)
@given(scenarios(), rules_strategy)
def test_inauthentic_codes_never_pass_in_either_direction(
    scenario: tuple[Code, Facts], rules: GateRules
) -> None:
    _, facts = scenario
    for direction in Direction:
        for key, expected in [
            (None, Reason.UNKNOWN_KEY),
            (trusted(retired=True), Reason.KEY_RETIRED),
            (trusted(OTHER_PRIVATE), Reason.BAD_SIGNATURE),
        ]:
            decision = decide(_signed(), dataclasses.replace(facts, key=key), rules, direction, NOW)
            assert decision.reason is expected
            assert not decision.admitted
        forged = decide(FORGED, dataclasses.replace(facts, key=KEY), rules, direction, NOW)
        assert forged.reason is Reason.BAD_SIGNATURE
        unknown = decide(PLAIN, dataclasses.replace(facts, credential=None), rules, direction, NOW)
        assert unknown.reason is Reason.UNKNOWN


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 50), st.lists(st.integers(0, 120), min_size=60, max_size=60))
def test_counted_policy_admits_exactly_uses_times(uses: int, gaps: list[int]) -> None:
    credential = Credential(3003, Kind.TICKET, 43, 10, EntryPolicy.multi(uses))
    entries: EntryState | None = None
    now = NOW
    admitted = 0
    remaining = []
    for gap in gaps:
        now += timedelta(minutes=gap)
        decision = decide(
            _signed(2),
            Facts(key=KEY, credential=credential, entries=entries),
            RULES,
            Direction.ENTRY,
            now,
        )
        if decision.admitted:
            admitted += 1
            remaining.append(decision.remaining)
            entries = _after(entries, now, Direction.ENTRY)
        else:
            assert decision.reason is Reason.ALREADY_USED
            assert entries is not None
            assert (decision.at, decision.gate) == (entries.first_at, GATE)
        # Leaving in between does not give an entry back.
        exit_decision = decide(
            _signed(2),
            Facts(key=KEY, credential=credential, entries=entries),
            RULES,
            Direction.EXIT,
            now,
        )
        assert exit_decision.admitted
        entries = _after(entries, now, Direction.EXIT)
    assert admitted == uses
    assert remaining == list(range(uses - 1, -1, -1))


def test_single_use_admits_once_then_names_first_entry() -> None:
    code = _signed(0)
    first = decide(code, Facts(key=KEY), RULES, Direction.ENTRY, NOW)
    assert first.reason is Reason.ADMITTED
    assert first.remaining == 0
    entries = _after(None, NOW, Direction.ENTRY)
    entries = _after(entries, NOW + timedelta(minutes=5), Direction.EXIT)
    again = decide(
        code,
        Facts(key=KEY, entries=entries),
        GateRules("South 2"),
        Direction.ENTRY,
        NOW + timedelta(hours=1),
    )
    assert again.reason is Reason.ALREADY_USED
    assert (again.at, again.gate) == (NOW, GATE)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 600), st.integers(-5, 5))
def test_passback_boundary_is_exactly_the_window(window: int, delta_seconds: int) -> None:
    credential = Credential(2002, Kind.PASS, policy=EntryPolicy.unlimited(window))
    last = NOW
    now = last + timedelta(minutes=window, seconds=delta_seconds)
    facts = Facts(key=KEY, credential=credential, entries=_entries(1, last))
    decision = decide(_signed(1), facts, RULES, Direction.ENTRY, now)
    if delta_seconds < 0:
        assert decision.reason is Reason.PASSBACK
        assert (decision.at, decision.gate) == (last, "South 2")
    else:  # exactly at the window (and after) a re-entry is fine
        assert decision.reason is Reason.ADMITTED


def test_passback_does_not_apply_after_an_exit_or_without_a_window() -> None:
    facts = Facts(
        key=KEY,
        credential=Credential(2002, Kind.PASS, policy=EntryPolicy.unlimited(30)),
        entries=_entries(4, NOW - timedelta(seconds=1), Direction.EXIT),
    )
    assert decide(_signed(1), facts, RULES, Direction.ENTRY, NOW).reason is Reason.ADMITTED
    no_window = dataclasses.replace(
        facts,
        credential=Credential(2002, Kind.PASS, policy=EntryPolicy.unlimited(0)),
        entries=_entries(4, NOW, Direction.ENTRY),
    )
    assert decide(_signed(1), no_window, RULES, Direction.ENTRY, NOW).reason is Reason.ADMITTED


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 3600), st.integers(-3, 3))
def test_clock_skew_boundaries_are_inclusive(skew_seconds: int, delta_seconds: int) -> None:
    skew = timedelta(seconds=skew_seconds)
    validity = Validity(NOW, NOW + timedelta(hours=2))
    facts = Facts(key=KEY, credential=Credential(1001, Kind.TICKET, 42, 10, validity=validity))
    rules = GateRules(GATE, clock_skew=skew)
    delta = timedelta(seconds=delta_seconds)

    early = decide(_signed(0), facts, rules, Direction.ENTRY, validity.start - skew + delta)
    if delta_seconds < 0:
        assert early.reason is Reason.NOT_YET_VALID
        assert early.until == validity.start
    else:
        assert early.reason is Reason.ADMITTED

    late = decide(_signed(0), facts, rules, Direction.ENTRY, validity.end + skew + delta)
    if delta_seconds > 0:
        assert late.reason is Reason.EXPIRED
        assert late.until == validity.end
    else:
        assert late.reason is Reason.ADMITTED


@settings(max_examples=200, deadline=None)
@given(credentials(2002), rules_strategy, minutes)
def test_synced_credential_overrides_the_claims(
    credential: Credential, rules: GateRules, offset: timedelta
) -> None:
    code = _signed(1)
    now = NOW + offset
    with_sync = decide(code, Facts(key=KEY, credential=credential), rules, Direction.ENTRY, now)
    # The same facts presented as if they were synced for a plain code: the code's own claims
    # play no part once the credential is known.
    as_plain = decide(PLAIN, Facts(credential=credential), rules, Direction.ENTRY, now)
    assert with_sync == as_plain


def test_extended_pass_keeps_its_code_and_the_gate_honours_the_new_end() -> None:
    code = _signed(1)
    assert code.claims.validity is not None
    old_end = code.claims.validity.end
    later = old_end + timedelta(days=10)
    expired = decide(code, Facts(key=KEY), RULES, Direction.ENTRY, later)
    assert expired.reason is Reason.EXPIRED
    assert expired.until == old_end
    extended = dataclasses.replace(
        Credential.from_claims(code.claims),
        validity=Validity(code.claims.validity.start, old_end + timedelta(days=365)),
    )
    renewed = decide(code, Facts(key=KEY, credential=extended), RULES, Direction.ENTRY, later)
    assert renewed.reason is Reason.ADMITTED


def test_synced_unpaid_overrides_a_valid_code() -> None:
    code = _signed(0)
    unpaid = dataclasses.replace(Credential.from_claims(code.claims), paid=False)
    decision = decide(code, Facts(key=KEY, credential=unpaid), RULES, Direction.ENTRY, NOW)
    assert decision.reason is Reason.UNPAID


def test_several_trusted_keys_each_verify_their_own_codes() -> None:
    other = parse(mint_code(ticket(5005, key_id=9), OTHER_PRIVATE).encode())
    assert decide(other, Facts(key=trusted(OTHER_PRIVATE, 9)), RULES, Direction.ENTRY, NOW).admitted
    assert decide(_signed(), Facts(key=KEY), RULES, Direction.ENTRY, NOW).admitted
    # A key is only good for its own signatures.
    assert (
        decide(other, Facts(key=trusted(PRIVATE, 9)), RULES, Direction.ENTRY, NOW).reason
        is Reason.BAD_SIGNATURE
    )


def test_priority_order_of_reasons() -> None:
    code = _signed(0)
    bad = Credential(
        1001,
        Kind.VOUCHER,
        event_id=42,
        product_id=10,
        validity=Validity(NOW + timedelta(days=1), NOW + timedelta(days=2)),
        zones=0b10,
        paid=False,
    )
    facts = Facts(
        key=None,
        credential=bad,
        code_revoked=Revocation.REVOKED,
        credential_revoked=Revocation.REPLACED,
        event_cancelled=True,
        product_revoked=Revocation.CANCELLED,
        entries=_entries(1, NOW - timedelta(minutes=1)),
    )
    rules = GateRules(GATE, zone=0, events=frozenset({43}))
    steps: list[tuple[Reason, Callable[[Facts], Facts] | None]] = [
        (Reason.UNKNOWN_KEY, lambda f: dataclasses.replace(f, key=trusted(retired=True))),
        (Reason.KEY_RETIRED, lambda f: dataclasses.replace(f, key=trusted(OTHER_PRIVATE))),
        (Reason.BAD_SIGNATURE, lambda f: dataclasses.replace(f, key=KEY)),
        (Reason.REVOKED, lambda f: dataclasses.replace(f, code_revoked=None)),
        (Reason.REPLACED, lambda f: dataclasses.replace(f, credential_revoked=None)),
        (Reason.EVENT_CANCELLED, lambda f: dataclasses.replace(f, event_cancelled=False)),
        (Reason.CANCELLED, lambda f: dataclasses.replace(f, product_revoked=None)),
        (Reason.VOUCHER, lambda f: _credential(f, kind=Kind.TICKET)),
        (Reason.UNPAID, lambda f: _credential(f, paid=True)),
        (Reason.WRONG_GATE, lambda f: _credential(f, event_id=43)),
        (Reason.WRONG_ZONE, lambda f: _credential(f, zones=0b11)),
        (
            Reason.NOT_YET_VALID,
            lambda f: _credential(f, validity=Validity(NOW - timedelta(days=2), NOW)),
        ),
        (Reason.ALREADY_USED, lambda f: dataclasses.replace(f, entries=None)),
        (Reason.ADMITTED, None),
    ]
    seen = []
    for expected, repair in steps:
        decision = decide(code, facts, rules, Direction.ENTRY, NOW)
        seen.append(decision.reason)
        assert decision.reason is expected, seen
        if repair is not None:
            facts = repair(facts)


def _credential(facts: Facts, **changes: Any) -> Facts:
    assert facts.credential is not None
    return dataclasses.replace(facts, credential=dataclasses.replace(facts.credential, **changes))


def test_expired_comes_before_already_used_and_passback() -> None:
    credential = Credential(
        2002,
        Kind.PASS,
        policy=EntryPolicy.unlimited(30),
        validity=Validity(NOW - timedelta(days=2), NOW - timedelta(days=1)),
    )
    facts = Facts(key=KEY, credential=credential, entries=_entries(1, NOW))
    assert decide(_signed(1), facts, RULES, Direction.ENTRY, NOW).reason is Reason.EXPIRED


# -- one example per reason ------------------------------------------------------------------

PASS_CREDENTIAL = Credential(2002, Kind.PASS, 0, 20, EntryPolicy.unlimited(5))
EXAMPLES: dict[Reason, tuple[Code, Facts, GateRules, Direction]] = {
    Reason.ADMITTED: (_signed(0), Facts(key=KEY), RULES, Direction.ENTRY),
    Reason.EXIT: (_signed(0), Facts(key=KEY), RULES, Direction.EXIT),
    Reason.UNKNOWN: (PLAIN, Facts(), RULES, Direction.ENTRY),
    Reason.UNKNOWN_KEY: (_signed(0), Facts(), RULES, Direction.ENTRY),
    Reason.KEY_RETIRED: (_signed(0), Facts(key=trusted(retired=True)), RULES, Direction.ENTRY),
    Reason.BAD_SIGNATURE: (FORGED, Facts(key=KEY), RULES, Direction.ENTRY),
    Reason.REVOKED: (
        _signed(0),
        Facts(key=KEY, code_revoked=Revocation.REVOKED),
        RULES,
        Direction.ENTRY,
    ),
    Reason.REPLACED: (
        _signed(0),
        Facts(key=KEY, code_revoked=Revocation.REPLACED),
        RULES,
        Direction.ENTRY,
    ),
    Reason.CANCELLED: (
        _signed(0),
        Facts(key=KEY, credential_revoked=Revocation.CANCELLED),
        RULES,
        Direction.ENTRY,
    ),
    Reason.EVENT_CANCELLED: (
        _signed(0),
        Facts(key=KEY, event_cancelled=True),
        RULES,
        Direction.ENTRY,
    ),
    Reason.VOUCHER: (PLAIN, Facts(credential=Credential(9, Kind.VOUCHER)), RULES, Direction.ENTRY),
    Reason.UNPAID: (
        PLAIN,
        Facts(credential=Credential(9, Kind.TICKET, paid=False)),
        RULES,
        Direction.ENTRY,
    ),
    Reason.WRONG_GATE: (
        _signed(0),
        Facts(key=KEY),
        GateRules(GATE, products=frozenset({11})),
        Direction.ENTRY,
    ),
    Reason.WRONG_ZONE: (_signed(1), Facts(key=KEY), GateRules(GATE, zone=0), Direction.ENTRY),
    Reason.NOT_YET_VALID: (
        PLAIN,
        Facts(
            credential=Credential(
                9,
                Kind.TICKET,
                validity=Validity(NOW + timedelta(hours=1), NOW + timedelta(hours=2)),
            )
        ),
        RULES,
        Direction.ENTRY,
    ),
    Reason.EXPIRED: (
        PLAIN,
        Facts(
            credential=Credential(
                9,
                Kind.TICKET,
                validity=Validity(NOW - timedelta(hours=2), NOW - timedelta(hours=1)),
            )
        ),
        RULES,
        Direction.ENTRY,
    ),
    Reason.ALREADY_USED: (
        _signed(0),
        Facts(key=KEY, entries=_entries(1, NOW - timedelta(hours=1))),
        RULES,
        Direction.ENTRY,
    ),
    Reason.PASSBACK: (
        _signed(1),
        Facts(key=KEY, credential=PASS_CREDENTIAL, entries=_entries(3, NOW - timedelta(minutes=4))),
        RULES,
        Direction.ENTRY,
    ),
}


# Reasons only pretix's check-in gives (sync.pretix.checkin decides them; tests/sync has them).
PRETIX_ONLY = {Reason.BLOCKED, Reason.UNAPPROVED, Reason.RULES, Reason.AMBIGUOUS}


@pytest.mark.parametrize(
    "reason", [r for r in Reason if r is not Reason.MALFORMED and r not in PRETIX_ONLY]
)
def test_example_per_reason(reason: Reason) -> None:
    code, facts, rules, direction = EXAMPLES[reason]
    decision = decide(code, facts, rules, direction, NOW)
    assert decision.reason is reason
    assert decision.admitted is reason.admits
    assert decision.direction is direction


def test_malformed_decision_keeps_its_detail_out_of_equality() -> None:
    decision = malformed("scan has control characters")
    assert decision.reason is Reason.MALFORMED
    assert not decision.admitted
    assert decision.detail == "scan has control characters"
    assert decision == malformed("something else")


def test_wrong_gate_for_events_and_allowed_lists() -> None:
    code = _signed(0)  # event 42, product 10
    admits = GateRules(GATE, events=frozenset({42}), products=frozenset({10, 11}))
    assert decide(code, Facts(key=KEY), admits, Direction.ENTRY, NOW).admitted
    for rules in (
        GateRules(GATE, events=frozenset({43})),
        GateRules(GATE, events=frozenset()),
        GateRules(GATE, products=frozenset({11})),
    ):
        assert decide(code, Facts(key=KEY), rules, Direction.ENTRY, NOW).reason is Reason.WRONG_GATE


@pytest.mark.parametrize(("zone", "admits"), [(None, True), (0, False), (1, True), (2, True)])
def test_zones_of_a_pass(zone: int | None, admits: bool) -> None:
    decision = decide(_signed(1), Facts(key=KEY), GateRules(GATE, zone=zone), Direction.ENTRY, NOW)
    assert decision.admitted is admits
    assert decision.reason is (Reason.ADMITTED if admits else Reason.WRONG_ZONE)


def test_unzoned_credential_enters_every_zone() -> None:
    for zone in range(32):
        rules = GateRules(GATE, zone=zone)
        assert decide(_signed(0), Facts(key=KEY), rules, Direction.ENTRY, NOW).admitted


def test_plain_codes_are_decided_only_by_synced_facts() -> None:
    assert isinstance(PLAIN, PlainCode)
    credential = Credential(9, Kind.TICKET, 42, 10)
    assert decide(PLAIN, Facts(credential=credential), RULES, Direction.ENTRY, NOW).admitted
    assert decide(PLAIN, Facts(), RULES, Direction.EXIT, NOW).reason is Reason.UNKNOWN
    assert _signed().claims.key_id == KEY_ID
