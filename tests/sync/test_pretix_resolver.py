"""pretix tickets through the gate: the resolver answers as pretix's redeem would."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivers.protocols import Outcome
from edge.core.codes import EntryPolicy
from edge.core.decide import GateRules, Reason
from edge.core.errors import SyncError
from edge.core.facts import Direction, Revocation
from edge.gate.gate import Gate
from edge.gate.lane import Lane
from edge.store.database import Store
from edge.store.pretix import PretixPosition
from sync.pretix.resolver import (
    KEYS_CURSOR,
    LIST_CURSOR,
    ListState,
    PretixResolver,
    keys_to_json,
    unknown_position_id,
)
from sync.pretix.rules import RulesError
from sync.pretix.secrets import Ticket, raw_key, secret_hash, sign_sig1

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(64, 96)))
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
RULES = GateRules(gate="North 1", clock_skew=timedelta(0))
LIST = ListState(
    list_id=3,
    products=frozenset({1, 2}),
    subevent=None,
    include_pending=False,
    multiple_entries=False,
)


def secret(item: int = 1, **fields: object) -> str:
    return sign_sig1(Ticket(seed="abcdefghi", item=item, **fields), KEY)  # type: ignore[arg-type]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "edge.db")
    await opened.set_cursor(KEYS_CURSOR, keys_to_json([raw_key(KEY.public_key())]))
    await opened.set_cursor(LIST_CURSOR, LIST.to_json())
    try:
        yield opened
    finally:
        await opened.close()


async def scan(store: Store, text: str, rules: GateRules = RULES, at: datetime = NOW) -> Reason:
    gate = Gate(store, clock=lambda: at, resolver=PretixResolver(store))
    return (await gate.admit(text.encode(), rules, Direction.ENTRY)).decision.reason


async def test_signed_ticket_admits_once_without_sync(store: Store) -> None:
    text = secret()
    assert await scan(store, text) is Reason.ADMITTED
    assert await scan(store, text) is Reason.ALREADY_USED
    (row, _) = store.recent(2)
    assert row.entry.credential_id == unknown_position_id(secret_hash(text)) < 0
    assert row.entry.code_hash == secret_hash(text)
    assert "abcdefghi" not in row.entry.code_hint


async def test_multiple_entries_list_admits_again(store: Store) -> None:
    await store.set_cursor(
        LIST_CURSOR,
        ListState(3, None, None, include_pending=False, multiple_entries=True).to_json(),
    )
    text = secret(item=99)  # all products
    assert await scan(store, text) is Reason.ADMITTED
    assert await scan(store, text) is Reason.ADMITTED


async def test_list_products_and_subevent_narrow_the_lane(store: Store) -> None:
    assert await scan(store, secret(item=5)) is Reason.WRONG_GATE
    assert await scan(store, secret(item=2), GateRules("x", products=frozenset({1}))) is (
        Reason.WRONG_GATE
    )
    await store.set_cursor(
        LIST_CURSOR, ListState(3, None, 12, include_pending=False, multiple_entries=False).to_json()
    )
    # pretix looks for a secret among the list's date only: another date's is unknown there.
    assert await scan(store, secret(subevent=13)) is Reason.UNKNOWN
    assert await scan(store, secret(subevent=12)) is Reason.ADMITTED


async def test_validity_window_from_the_secret(store: Store) -> None:
    start, end = NOW + timedelta(hours=1), NOW + timedelta(hours=5)
    text = secret(valid_from=start, valid_until=end)
    assert await scan(store, text) is Reason.NOT_YET_VALID
    assert await scan(store, text, at=end + timedelta(hours=1)) is Reason.EXPIRED
    only_end = secret(valid_until=NOW - timedelta(hours=1))
    assert await scan(store, only_end) is Reason.EXPIRED
    assert await scan(store, text, at=start) is Reason.ADMITTED


async def test_forged_and_unknown_keys(store: Store) -> None:
    forged = sign_sig1(Ticket(seed="abcdefghi", item=1), OTHER)
    assert await scan(store, forged) is Reason.BAD_SIGNATURE
    # Key rotation: pretix lists several valid keys; either one admits.
    both = [raw_key(OTHER.public_key()), raw_key(KEY.public_key())]
    await store.set_cursor(KEYS_CURSOR, keys_to_json(both))
    assert await scan(store, forged) is Reason.ADMITTED
    assert await scan(store, secret()) is Reason.ADMITTED
    await store.set_cursor(KEYS_CURSOR, keys_to_json([]))
    assert await scan(store, secret(item=2)) is Reason.UNKNOWN_KEY


async def test_revoked_and_blocked_by_hash(store: Store) -> None:
    revoked, blocked = secret(item=1), secret(item=2)
    await store.revoke_codes([(secret_hash(revoked), Revocation.REVOKED)])
    await store.block_codes([(secret_hash(blocked), True)])
    assert await scan(store, revoked) is Reason.REVOKED
    assert await scan(store, blocked) is Reason.BLOCKED
    await store.block_codes([(secret_hash(blocked), False)])
    assert await scan(store, blocked) is Reason.ADMITTED


def position(pid: int, text: str, item: int = 1, status: str = "p", **more: Any) -> PretixPosition:
    return PretixPosition(pid, secret_hash(text), item, None, None, None, None, status, **more)


async def test_synced_positions_and_random_secrets(store: Store) -> None:
    signed, random_paid, random_pending = secret(), "e70j03ynzt5zfrr9", "kkq7m2xw9abc"
    cancelled = "c4nc3ll3d000"
    await store.put_pretix_positions(
        [
            (position(41, signed), []),
            (position(42, random_paid), []),
            (position(43, random_pending, item=2, status="n"), []),
            (position(44, cancelled, status="c"), []),
        ],
        generation=1,
    )
    assert await scan(store, signed) is Reason.ADMITTED
    assert store.recent(1)[0].entry.credential_id == 41
    assert await scan(store, random_paid) is Reason.ADMITTED
    assert await scan(store, random_paid) is Reason.ALREADY_USED
    assert await scan(store, random_pending) is Reason.UNPAID
    assert await scan(store, cancelled) is Reason.CANCELLED
    assert await scan(store, "zzzzzzzzzzzzzzzz") is Reason.UNKNOWN
    # The next pull no longer has position 42: its secret is unknown again.
    await store.put_pretix_positions([(position(41, signed), [])], generation=2)
    assert await store.drop_pretix_positions(2) == 3
    assert await scan(store, random_paid) is Reason.UNKNOWN


async def test_entry_after_exit_and_pulled_passages(store: Store) -> None:
    text = "p4ss4g3s00000"
    earlier = NOW - timedelta(hours=2)
    await store.put_pretix_positions(
        [
            (
                position(7, text),
                [(earlier, Direction.ENTRY), (earlier + timedelta(hours=1), Direction.EXIT)],
            )
        ],
        generation=1,
    )
    assert await scan(store, text) is Reason.ADMITTED  # pretix's default: entry after exit
    assert await scan(store, text) is Reason.ALREADY_USED
    gate = Gate(store, clock=lambda: NOW, resolver=PretixResolver(store))
    check = await gate.admit(text.encode(), RULES, Direction.EXIT)
    assert check.decision.reason is Reason.EXIT
    no_return = dataclasses.replace(LIST, entry_after_exit=False)
    await store.set_cursor(LIST_CURSOR, no_return.to_json())
    assert await scan(store, text) is Reason.ALREADY_USED
    (row,) = store.recent(1)
    assert row.entry.credential_id == 7


async def test_rules_decide_and_unknown_rules_refuse_every_scan(store: Store) -> None:
    rules = {"<": [{"var": "entries_number"}, 1]}
    await store.set_cursor(
        LIST_CURSOR, dataclasses.replace(LIST, rules=json.dumps(rules)).to_json()
    )
    text = secret()
    assert await scan(store, text) is Reason.ADMITTED
    assert await scan(store, text) is Reason.RULES  # the rule answers before "already used"
    unknown = {"and": [{"some": [[1], {"var": "x"}]}]}
    await store.set_cursor(
        LIST_CURSOR, dataclasses.replace(LIST, rules=json.dumps(unknown)).to_json()
    )
    resolver = PretixResolver(store)
    with pytest.raises(RulesError, match="'some'"):
        resolver.check_rules()
    gate = Gate(store, clock=lambda: NOW, resolver=resolver)
    check = gate.check(secret(item=2).encode(), RULES, Direction.ENTRY)
    assert check.decision.reason is Reason.RULES
    assert "'some'" in check.decision.detail


async def test_garbage_is_malformed_and_changes_nothing(store: Store) -> None:
    assert await scan(store, "=" * 101 + "QA") is Reason.MALFORMED
    assert await scan(store, "x" * 200) is Reason.MALFORMED
    assert store.stats().credentials == 0


async def test_before_first_sync_nothing_admits(tmp_path: Path) -> None:
    empty = await Store.open(tmp_path / "empty.db")
    try:
        assert PretixResolver(empty).state is None
        assert await scan(empty, secret()) is Reason.UNKNOWN_KEY
        assert await scan(empty, "e70j03ynzt5zfrr9") is Reason.UNKNOWN
    finally:
        await empty.close()


async def test_damaged_state_is_a_sync_error(store: Store) -> None:
    await store.set_cursor(LIST_CURSOR, "{}")
    with pytest.raises(SyncError, match="damaged"):
        PretixResolver(store)
    assert LIST.policy == EntryPolicy.single()


class _Relay:
    """Records outcomes (the hardware boundary)."""

    name = "relay"

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []

    async def signal(self, outcome: Outcome, text: str) -> None:
        self.outcomes.append(outcome)

    async def close(self) -> None:
        """Nothing to release."""


@pytest.mark.parametrize("free", [False, True])
async def test_free_exit_opens_but_journals_pretix_answer(store: Store, free: bool) -> None:
    unpaid = "unp41d000000"
    await store.put_pretix_positions([(position(9, unpaid, status="n"), [])], generation=1)
    relay = _Relay()
    lane = Lane(
        rules=dataclasses.replace(RULES, free_exit=free),
        gate=Gate(store, clock=lambda: NOW, resolver=PretixResolver(store)),
        actuator=relay,
        sources=(),
        language="en",
        repeat_window=0.0,
    )
    result = await lane.handle(unpaid.encode(), Direction.EXIT, 1.0)
    assert relay.outcomes == [Outcome.ADMIT_EXIT if free else Outcome.REJECT]
    assert result.check is not None
    assert result.check.decision.reason is Reason.UNPAID
    (row,) = store.recent(1)
    assert row.entry.reason is Reason.UNPAID  # the upload says what pretix would say
    assert not row.entry.reason.admits
    # Entries are not affected by free_exit.
    await lane.handle(unpaid.encode(), Direction.ENTRY, 2.0)
    assert relay.outcomes[-1] is Outcome.REJECT


async def test_unsynced_signed_tickets_can_wait_for_their_payment(store: Store) -> None:
    text = secret()
    strict = Gate(
        store, clock=lambda: NOW, resolver=PretixResolver(store, admit_unsynced_signed=False)
    )
    assert strict.check(text.encode(), RULES, Direction.ENTRY).decision.reason is Reason.UNPAID
    assert await scan(store, text) is Reason.ADMITTED  # the default: as pretix's offline apps
    await store.put_pretix_positions([(position(77, secret(item=2)), [])], generation=1)
    synced = strict.check(secret(item=2).encode(), RULES, Direction.ENTRY).decision
    assert synced.reason is Reason.ADMITTED  # a pull has seen it paid
