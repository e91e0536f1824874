"""Trusted keys: retiring is final, a key id keeps its public key."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge import keys
from edge.core.codes import Claims, Kind, mint, parse
from edge.core.ed25519 import PrivateKey
from edge.core.errors import StoreError
from edge.store.database import Store


async def test_a_retired_key_stays_retired_when_listed_again(tmp_path: Path) -> None:
    key = keys.SigningKey(4, PrivateKey.generate())
    code = parse(mint(Claims(4, 1, Kind.TICKET), key.private).encode())
    store = await Store.open(tmp_path / "edge.db")
    try:
        await store.put_keys([(4, key.public_bytes, False)])
        await store.put_keys([(4, key.public_bytes, True)])  # sync retires it
        await store.put_keys([(4, key.public_bytes, False)])  # the config's start set, again
        facts = store.facts(code)
        assert facts.key is not None
        assert facts.key.retired
    finally:
        await store.close()


async def test_a_key_id_cannot_change_its_public_key(tmp_path: Path) -> None:
    first = keys.SigningKey(4, PrivateKey.generate())
    other = keys.SigningKey(4, PrivateKey.generate())
    store = await Store.open(tmp_path / "edge.db")
    try:
        await store.put_keys([(4, first.public_bytes, False)])
        with pytest.raises(StoreError, match="key 4 is already trusted with another public key"):
            await store.put_keys([(5, other.public_bytes, False), (4, other.public_bytes, False)])
        assert store.stats().keys == 1  # the whole call changed nothing, key 5 included
        code = parse(mint(Claims(4, 1, Kind.TICKET), first.private).encode())
        facts = store.facts(code)
        assert facts.key is not None
        assert facts.key.verify(code.signed, code.signature)  # type: ignore[union-attr]
    finally:
        await store.close()
