"""pretix tickets through the gate: the resolver maps them onto edge.core.decide's rules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.core.codes import EntryPolicy
from edge.core.decide import GateRules, Reason
from edge.core.errors import SyncError
from edge.core.facts import Direction, Revocation
from edge.gate.gate import Gate
from edge.store.database import Store
from sync.pretix.resolver import (
    KEYS_CURSOR,
    LIST_CURSOR,
    ListState,
    PretixResolver,
    keys_to_json,
    position_credential,
    unknown_position_id,
)
from sync.pretix.secrets import Ticket, raw_key, secret_hash, sign_sig1

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(64, 96)))
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
RULES = GateRules(gate="North 1")
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
    assert await scan(store, secret(subevent=13)) is Reason.WRONG_GATE
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
    assert await scan(store, blocked) is Reason.REVOKED
    await store.block_codes([(secret_hash(blocked), False)])
    assert await scan(store, blocked) is Reason.ADMITTED


async def test_synced_positions_and_random_secrets(store: Store) -> None:
    signed, random_paid, random_pending = secret(), "e70j03ynzt5zfrr9", "kkq7m2xw9abc"
    await store.put_credentials(
        [
            position_credential(
                41, item=1, event=0, valid_from=None, valid_until=None, paid=True, state=LIST
            ),
            position_credential(
                42, item=1, event=0, valid_from=None, valid_until=None, paid=True, state=LIST
            ),
            position_credential(
                43, item=2, event=0, valid_from=None, valid_until=None, paid=False, state=LIST
            ),
        ],
        [
            (secret_hash(signed), 41),
            (secret_hash(random_paid), 42),
            (secret_hash(random_pending), 43),
        ],
    )
    assert await scan(store, signed) is Reason.ADMITTED
    assert store.recent(1)[0].entry.credential_id == 41
    assert await scan(store, random_paid) is Reason.ADMITTED
    assert await scan(store, random_paid) is Reason.ALREADY_USED
    assert await scan(store, random_pending) is Reason.UNPAID
    assert await scan(store, "zzzzzzzzzzzzzzzz") is Reason.UNKNOWN
    await store.revoke_credentials([(41, Revocation.CANCELLED)])
    assert await scan(store, signed) is Reason.CANCELLED


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
