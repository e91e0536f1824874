"""The sync client against a real central system: errors clear once sync works again, and a
gate whose clock is far off still syncs, with the offset on /health."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from conftest import until
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.core import ed25519
from edge.store.database import Store
from sync import protocol
from sync.central.db import CentralDB
from sync.central.server import serve
from sync.client.monitoring import health, page_status
from sync.client.replicator import Replicator
from sync.client.settings import SyncConfig
from sync.client.state import Status

DAY = 86_400.0


def identity_of(client: Replicator) -> ed25519.Signer:
    """The device key the client signs with."""
    return client._identity


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def db(tmp_path: Path) -> Iterator[CentralDB]:
    central = CentralDB(tmp_path / "central.db")
    central.keys.add()
    product = central.catalogue.add_product("Ticket")
    central.sales.sell(product, count=3)
    try:
        yield central
    finally:
        central.close()


@contextlib.asynccontextmanager
async def _central(db: CentralDB, port: int) -> AsyncIterator[str]:
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(db, "127.0.0.1", port, ready.set_result))
    try:
        yield await ready
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def _client(
    store: Store, db: CentralDB, port: int, clock: Callable[[], float] = time.time
) -> AsyncIterator[Replicator]:
    identity = Ed25519PrivateKey.generate()
    db.devices.add("gate-1", protocol.public_bytes(identity))
    await store.put_keys(db.keys.public_keys())
    settings = SyncConfig(
        url=f"http://127.0.0.1:{port}", push_port=0, timeout_seconds=2, pull_interval_seconds=1.0
    )
    client = Replicator(settings, store, device="gate-1", identity=identity, clock=clock)
    task = asyncio.create_task(client.run())
    try:
        yield client
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_last_error_clears_once_the_central_system_answers_again(
    store: Store, db: CentralDB
) -> None:
    port = _free_port()  # nothing listens yet: the central system is down
    async with _client(store, db, port) as client:
        await until(lambda: health(client)["last_error"] is not None, "a failed pull", seconds=20)
        assert health(client)["status"] == Status.OFFLINE.value
        async with _central(db, port):
            await until(
                lambda: client.state.status is Status.CURRENT, "sync to recover", seconds=30
            )
            await until(lambda: health(client)["last_error"] is None, "the error to clear")
            assert client.state.revision == db.log.head()
            assert page_status(client)["last_error"] == ""


@pytest.mark.parametrize("skew", [DAY, -DAY, 600.0], ids=["day-ahead", "day-behind", "10-min"])
async def test_a_gate_whose_clock_is_far_off_still_syncs(
    store: Store, db: CentralDB, skew: float
) -> None:
    port = _free_port()
    async with (
        _central(db, port) as url,
        _client(store, db, port, clock=lambda: time.time() + skew) as client,
    ):
        await until(
            lambda: client.state.status is Status.CURRENT, "a skewed gate to sync", seconds=30
        )
        assert client.state.revision == db.log.head()
        offset = health(client)["clock_offset_seconds"]
        assert isinstance(offset, float)
        assert abs(offset + skew) < 5  # central minus ours: the skew, negated
        assert health(client)["last_error"] is None
        # The central system still checks request times against its own clock: a request
        # signed with the gate's raw clock is refused (so a captured request still expires
        # after 300 s), and the refusal carries the central time the gate learns from.
        body = protocol.pack({"revision": 0, "push_url": None})
        headers = protocol.sign_request(
            identity_of(client), "gate-1", method="POST", path="/v1/hello",
            time_ms=int((time.time() + skew) * 1000), body=body,
        )  # fmt: skip
        async with (
            aiohttp.ClientSession() as session,
            session.post(url + "/v1/hello", data=body, headers=headers) as response,
        ):
            error = protocol.parse_error(response.status, await response.read())
        assert (error.status, error.code) == (401, "clock-skew")
        assert error.time_ms is not None
        assert abs(error.time_ms / 1000 - time.time()) < 5
