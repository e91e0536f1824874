"""A retired signing key authorizes nothing, at any depth: the attacker's side first.

The attacker holds a retired key's private half and the endorsement that once vouched for it
(both were public or leaked: that is why the key was retired). Pushes, bundles and chains
built from them must be refused with a clear error, and change nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from conftest import KEY_ID, PRIVATE, mint_code, public_bytes, ticket, until
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.core.decide import GateRules, Reason
from edge.core.facts import Direction
from edge.gate.gate import Gate
from edge.store.database import Store
from sync import protocol
from sync.central.db import CentralDB
from sync.client.bundle import import_bundle
from sync.client.replicator import Replicator
from sync.client.settings import SyncConfig
from sync.client.state import REVISION_CURSOR
from sync.protocol import CancelEvent, Change, Endorsement, EnvelopeKind, KeyChange

RULES = GateRules(gate="lane-1")
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
RETIRED_ID = 20
RETIRED = Ed25519PrivateKey.from_private_bytes(bytes([20]) * 32)
ATTACKER_ID = 66
ATTACKER = Ed25519PrivateKey.from_private_bytes(bytes([66]) * 32)
ATTACKER_PUBLIC = public_bytes(ATTACKER)
# Keys 1..8 for chains; fixed seeds so hypothesis examples stay cheap and reproducible.
CHAIN_KEYS = {i: Ed25519PrivateKey.from_private_bytes(bytes([i]) * 32) for i in range(1, 9)}


def link(by: int, key_id: int, signer: Ed25519PrivateKey | None = None) -> Endorsement:
    voucher = signer or CHAIN_KEYS.get(by) or (PRIVATE if by == KEY_ID else RETIRED)
    target = CHAIN_KEYS.get(key_id) or (RETIRED if key_id == RETIRED_ID else ATTACKER)
    return protocol.endorse(voucher, by, key_id, public_bytes(target))


def sealed(
    key_id: int,
    key: Ed25519PrivateKey,
    changes: list[Change],
    chain: list[Endorsement],
    *,
    first: int = 0,
    kind: EnvelopeKind = EnvelopeKind.CHANGES,
) -> bytes:
    return protocol.seal(
        kind, key_id, key, first=first, last=first + len(changes), at_ms=1, changes=changes,
        chain=chain,
    )  # fmt: skip


def keyring(active: set[int], retired: set[int]) -> Callable[[int], tuple[bytes, bool] | None]:
    def lookup(key_id: int) -> tuple[bytes, bool] | None:
        if key_id in active | retired:
            return public_bytes(CHAIN_KEYS[key_id]), key_id in retired
        return None

    return lookup


# -- the rule, on the envelope alone -------------------------------------------------------


def test_a_retired_signer_is_refused_even_with_the_endorsement_that_vouched_for_it() -> None:
    data = sealed(2, CHAIN_KEYS[2], [CancelEvent(1)], [link(1, 2)])
    with pytest.raises(protocol.UntrustedError, match="signed with key 2, which is retired"):
        protocol.open_envelope(data, keyring({1}, {2}))


def test_a_key_endorsed_by_a_retired_key_is_refused_chain_1_2_4() -> None:
    data = sealed(4, CHAIN_KEYS[4], [CancelEvent(1)], [link(1, 2), link(2, 4)])
    with pytest.raises(protocol.UntrustedError, match="key 2 is retired; its endorsements"):
        protocol.open_envelope(data, keyring({1}, {2}))
    # The same chain with key 2 active is a genuine rotation.
    assert protocol.open_envelope(data, keyring({1, 2}, set())).key_id == 4


def test_an_endorsement_by_a_retired_root_is_refused() -> None:
    data = sealed(2, CHAIN_KEYS[2], [CancelEvent(1)], [link(1, 2)])
    with pytest.raises(protocol.UntrustedError, match="key 1 is retired"):
        protocol.open_envelope(data, keyring(set(), {1}))


def test_a_link_may_not_give_a_known_key_another_public_key() -> None:
    forged = protocol.endorse(CHAIN_KEYS[1], 1, 2, public_bytes(ATTACKER))
    data = sealed(2, ATTACKER, [CancelEvent(1)], [forged])
    # Key 2 is known: the envelope is checked against the known key, the link is ignored.
    with pytest.raises(protocol.UntrustedError, match="does not verify with key 2"):
        protocol.open_envelope(data, keyring({1, 2}, set()))
    chained = sealed(3, CHAIN_KEYS[3], [CancelEvent(1)], [forged, link(2, 3, ATTACKER)])
    with pytest.raises(protocol.UntrustedError, match="endorsement of key 3 by key 2 does not"):
        protocol.open_envelope(chained, keyring({1, 2}, set()))


def test_only_the_links_on_the_path_are_kept() -> None:
    chain = [link(1, 2), link(2, 3), link(1, 4)]  # 2 and 3 lead through retired key 2
    envelope = protocol.open_envelope(
        sealed(4, CHAIN_KEYS[4], [CancelEvent(1)], chain), keyring({1}, {2})
    )
    assert envelope.chain == (chain[2],)


@settings(max_examples=60, deadline=None)
@given(depth=st.integers(1, 7), retired_at=st.one_of(st.none(), st.integers(0, 7)))
def test_a_retired_key_anywhere_on_the_path_refuses_the_envelope(
    depth: int, retired_at: int | None
) -> None:
    """Chain 1 -> 2 -> ... -> depth+1 signs; the edge trusts 1 and knows one key is retired."""
    chain = [link(i, i + 1) for i in range(1, depth + 1)]
    signer = depth + 1
    retired = {1 + retired_at} if retired_at is not None and retired_at <= depth else set()
    data = sealed(signer, CHAIN_KEYS[signer], [CancelEvent(1)], chain)
    lookup = keyring({1} - retired, retired)
    if retired:
        with pytest.raises(protocol.UntrustedError, match="retired"):
            protocol.open_envelope(data, lookup)
    else:
        assert protocol.open_envelope(data, lookup).chain == tuple(chain)


# -- the attack against a running gate: push and `edge import` ------------------------------


@pytest.fixture
async def gate(store: Store) -> AsyncIterator[Replicator]:
    """A running sync client that learned key 20 and then its retirement, from pushes."""
    await store.set_cursor(REVISION_CURSOR, "0")
    settings = SyncConfig(url="http://127.0.0.1:9", push_port=0, timeout_seconds=0.5)
    client = Replicator(settings, store, device="gate-1", identity=Ed25519PrivateKey.generate())
    task = asyncio.create_task(client.run())
    try:
        await until(lambda: client.listening_url is not None, "the push server to listen")
        added = KeyChange(RETIRED_ID, public_bytes(RETIRED), retired=False)
        assert await post(client, sealed(KEY_ID, PRIVATE, [added], [])) == (200, "applied")
        retire = KeyChange(RETIRED_ID, public_bytes(RETIRED), retired=True)
        assert await post(client, sealed(KEY_ID, PRIVATE, [retire], [], first=1)) == (
            200,
            "applied",
        )
        yield client
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def post(client: Replicator, body: bytes) -> tuple[int, str]:
    assert client.listening_url
    async with (
        aiohttp.ClientSession() as session,
        session.post(client.listening_url, data=body) as r,
    ):
        answer = protocol.unpack(await r.read(), "answer", 1 << 16)
        return r.status, str(answer.get("status") or f"{answer['error']}: {answer['message']}")


def attacker_code() -> str:
    return mint_code(ticket(5, key_id=ATTACKER_ID), ATTACKER)


def decision(store: Store, code: str) -> Reason:
    gate = Gate(store, clock=lambda: NOW)
    return gate.check(code.encode(), RULES, Direction.ENTRY).decision.reason


ADD_ATTACKER = KeyChange(ATTACKER_ID, public_bytes(ATTACKER), retired=False)
OLD_ENDORSEMENT = protocol.endorse(PRIVATE, KEY_ID, RETIRED_ID, public_bytes(RETIRED))
ATTACKS = {
    "retired signer with its old endorsement": sealed(
        RETIRED_ID, RETIRED, [ADD_ATTACKER, CancelEvent(42)], [OLD_ENDORSEMENT], first=2
    ),
    "key endorsed by the retired key": sealed(
        ATTACKER_ID,
        ATTACKER,
        [ADD_ATTACKER, CancelEvent(42)],
        [OLD_ENDORSEMENT, protocol.endorse(RETIRED, RETIRED_ID, ATTACKER_ID, ATTACKER_PUBLIC)],
        first=2,
    ),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
async def test_a_push_built_on_a_retired_key_is_refused_and_changes_nothing(
    store: Store, gate: Replicator, attack: str
) -> None:
    before = (store.stats(), store.known_keys(), store.cursor(REVISION_CURSOR))
    status, answer = await post(gate, ATTACKS[attack])
    assert status == 403
    assert answer.startswith("untrusted: ")
    assert "retired" in answer
    assert (store.stats(), store.known_keys(), store.cursor(REVISION_CURSOR)) == before
    assert ATTACKER_ID not in store.known_keys()
    assert decision(store, attacker_code()) is Reason.UNKNOWN_KEY
    assert decision(store, mint_code(ticket(6))) is Reason.ADMITTED  # event 42 not cancelled


@pytest.mark.parametrize("attack", sorted(ATTACKS))
async def test_a_bundle_built_on_a_retired_key_is_refused_and_changes_nothing(
    store: Store, gate: Replicator, attack: str
) -> None:
    del gate  # the gate learned the retirement; now the attacker hands over a bundle
    before = (store.stats(), store.known_keys(), store.cursor(REVISION_CURSOR))
    with pytest.raises(protocol.UntrustedError, match="retired"):
        await import_bundle(store, ATTACKS[attack], device="gate-1")
    assert (store.stats(), store.known_keys(), store.cursor(REVISION_CURSOR)) == before
    assert decision(store, attacker_code()) is Reason.UNKNOWN_KEY


async def test_retiring_by_an_older_key_cannot_be_undone(store: Store, gate: Replicator) -> None:
    """A genuine envelope listing the retired key as active again leaves it retired."""
    relisted = KeyChange(RETIRED_ID, public_bytes(RETIRED), retired=False)
    assert await post(gate, sealed(KEY_ID, PRIVATE, [relisted], [], first=2)) == (200, "applied")
    assert store.known_keys()[RETIRED_ID] == (public_bytes(RETIRED), True)
    status, _ = await post(gate, ATTACKS["retired signer with its old endorsement"])
    assert status == 403


# -- what the central system signs ---------------------------------------------------------


def test_the_central_carries_no_link_through_a_retired_key(tmp_path: Path) -> None:
    db = CentralDB(tmp_path / "central.db")
    try:
        first, second, third = db.keys.add(), db.keys.add(), db.keys.add()  # 1 -> 2 -> 3
        publics = {k: p for k, p, _ in db.keys.public_keys()}
        db.keys.retire(second)
        key_id, key, chain = db.keys.signer()
        assert key_id == third
        assert [(e.by, e.key_id) for e in chain] == [(first, third)]  # vouched for again by 1
        data = protocol.seal(EnvelopeKind.CHANGES, key_id, key, first=0, last=0, at_ms=1,
                             changes=[], chain=chain)  # fmt: skip
        knows_first = {first: (publics[first], False), second: (publics[second], True)}
        assert protocol.open_envelope(data, knows_first.get).key_id == third
        assert protocol.open_envelope(data, {first: (publics[first], False)}.get).chain == chain
    finally:
        db.close()
