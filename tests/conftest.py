"""Shared fixtures: signing keys, a store in tmp_path, minting helpers, and the central
system's database on each of its backends (SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pgcluster import Cluster

from edge.core.codes import Claims, Kind, mint
from edge.core.facts import TrustedKey
from edge.store.database import Store

# Fixed seeds: failures reproduce, and generating keys per hypothesis example would be slow.
KEY_ID = 7
PRIVATE = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY_ID = 8
OTHER_PRIVATE = Ed25519PrivateKey.from_private_bytes(bytes(range(100, 132)))


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key."""
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def trusted(
    key: Ed25519PrivateKey = PRIVATE, key_id: int = KEY_ID, *, retired: bool = False
) -> TrustedKey:
    """A TrustedKey for a private key."""
    return TrustedKey(key_id, public_bytes(key), retired)


def ticket(credential_id: int = 1001, **fields: object) -> Claims:
    """Claims of a single-use ticket signed by KEY_ID, with fields overridden."""
    base: dict[str, object] = {
        "key_id": KEY_ID,
        "credential_id": credential_id,
        "kind": Kind.TICKET,
        "event_id": 42,
        "product_id": 10,
    }
    base.update(fields)
    return Claims(**base)  # type: ignore[arg-type]


def mint_code(claims: Claims, key: Ed25519PrivateKey = PRIVATE) -> str:
    """The text of a signed code."""
    return mint(claims, key)


async def until(
    condition: Callable[[], object], what: str, *, seconds: float = 10.0, step: float = 0.001
) -> None:
    """Return as soon as `condition()` holds, checked every `step` s; fail after `seconds`.

    For state the code under test exposes no event for; the deadline is generous because it
    only matters when the test fails.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        await asyncio.sleep(step)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh store in tmp_path that trusts KEY_ID; closed after the test."""
    opened = await Store.open(tmp_path / "edge.db")
    try:
        await opened.put_keys([(KEY_ID, public_bytes(PRIVATE), False)])
        yield opened
    finally:
        await opened.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    """The session's PostgreSQL (started on first use, stopped at the end)."""
    cluster = Cluster()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def central_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new central database on each backend: a SQLite path or a PostgreSQL DSN."""
    if request.param == "sqlite":
        return str(tmp_path / "central.db")
    cluster: Cluster = request.getfixturevalue("postgres")
    return cluster.database()
