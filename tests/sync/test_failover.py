"""Several central processes in [sync] urls: which failures move a gate on, and that every
path (hello, bootstrap, pull, upload, channel) follows, with real servers on loopback.

The processes with real gates, PostgreSQL and SIGKILL are in
tests/integration/test_central_failover.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from conftest import until
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pgcluster import Cluster

from edge.config import parse
from edge.core.decide import Reason
from edge.core.errors import ConfigError
from edge.core.facts import Direction
from edge.store.database import Store
from edge.store.gate import JournalEntry
from sync import protocol
from sync.central.db import CentralDB
from sync.central.postgres import PostgresConnection
from sync.central.server import serve
from sync.client.centrals import CENTRAL_CURSOR, Centrals, is_down
from sync.client.monitoring import health, page_status
from sync.client.replicator import Replicator
from sync.client.settings import SyncConfig

KEY = 'id = 1\npublic = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="\n'
DEVICE = f'[device]\nname = "g"\n[[keys]]\n{KEY}'
REFUSED = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused


def test_urls_name_several_centrals_in_order() -> None:
    text = DEVICE + '[sync]\nurls = ["https://c1.example/", "https://c2.example:8400"]\n'
    sync = parse(text, Path("e.toml")).sync
    assert sync is not None
    assert sync.centrals == ("https://c1.example", "https://c2.example:8400")
    single = parse(DEVICE + '[sync]\nurl = "http://c:8400/"\n', Path("e.toml")).sync
    assert single is not None
    assert single.centrals == ("http://c:8400",)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("[sync]\n", 'sync: url (or urls = ["https://c1", "https://c2"]) must name the central'),
        ("[sync]\nurls = []\n", "sync: url (or urls"),
        ('[sync]\nurl = "http://a"\nurls = ["http://b"]\n', "url and urls both name central"),
        ('[sync]\nurls = ["http://a", "ftp://b"]\n', "urls[1] must be an http:// or https:// URL"),
        ('[sync]\nurls = ["http://a", "http://a/"]\n', "urls[1] names 'http://a/' a second time"),
        ('[sync]\nurls = ["http://"]\n', "urls[0] must name a host"),
        ('[sync]\nurls = "http://a"\n', "sync.urls: must be a list of strings"),
        ('[sync]\nurls = ["http://a", 2]\n', "sync.urls[1]: must be string"),
        ("[sync]\nurls = [" + ", ".join(f'"http://c{i}"' for i in range(17)) + "]\n", "at most 16"),
        (
            '[sync]\nurls = ["https://a", "http://b"]\nca_file = "/etc/ca.pem"\n',
            "ca_file pins the CA of https:// centrals; a url is not https",
        ),
    ],
)
def test_bad_urls_are_refused_naming_the_key(section: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(DEVICE + section, Path("e.toml"))
    assert message in str(caught.value)


def test_only_a_central_that_is_down_is_left() -> None:
    down = [
        aiohttp.ClientConnectorError(
            aiohttp.client_reqrep.ConnectionKey(
                host="c",
                port=1,
                is_ssl=False,
                ssl=True,
                proxy=None,
                proxy_auth=None,
                proxy_headers_hash=None,
            ),
            ConnectionRefusedError(111, "refused"),
        ),
        aiohttp.ServerDisconnectedError(),
        ConnectionResetError(104, "reset"),
        TimeoutError(),
        protocol.RemoteError(502, "http", "bad gateway"),
        protocol.RemoteError(500, "internal", "store"),
    ]
    alike = [  # every process on the same database answers these the same
        protocol.RemoteError(401, "unauthenticated", "bad signature"),
        protocol.RemoteError(403, "unknown-device", "who?"),
        protocol.RemoteError(409, "revision-ahead", "restored"),
        protocol.ProtocolError("bad envelope"),
    ]
    assert [is_down(e) for e in down] == [True] * len(down)
    assert [is_down(e) for e in alike] == [False] * len(alike)

    centrals = Centrals(("http://a", "http://b"), device="g")
    centrals.failed("http://a", alike[1])
    assert (centrals.current, centrals.switches) == ("http://a", 0)
    centrals.failed("http://a", down[0])
    centrals.failed("http://a", down[1])  # a second request to the dead one: no second move
    assert (centrals.current, centrals.switches, centrals.fresh) == ("http://b", 1, True)
    centrals.failed("http://b", down[3])
    assert (centrals.current, centrals.fresh) == ("http://a", False)  # a round failed
    centrals.answered()
    assert centrals.fresh
    assert Centrals(("http://a", "http://b"), device="g", start="http://b").current == "http://b"
    assert Centrals(("http://a",), device="g", start="http://gone").current == "http://a"


@dataclass
class Pair:
    """Two central servers on one database (SQLite here), and a gate's identity there."""

    db: CentralDB
    urls: list[str]
    servers: list[asyncio.Task[None]]
    identity: Ed25519PrivateKey

    async def stop(self, index: int) -> None:
        self.servers[index].cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.servers[index]


async def _serve(db: CentralDB) -> tuple[str, asyncio.Task[None]]:
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(db, "127.0.0.1", 0, ready.set_result))
    return await ready, task


@pytest.fixture
async def pair(tmp_path: Path, store: Store) -> AsyncIterator[Pair]:
    db = CentralDB(tmp_path / "central.db")
    db.keys.add()
    identity = Ed25519PrivateKey.generate()
    db.devices.add("gate-1", protocol.public_bytes(identity))
    await store.put_keys(db.keys.public_keys())
    second = CentralDB(tmp_path / "central.db")  # the other process's own connection
    (url_a, a), (url_b, b) = await _serve(db), await _serve(second)
    pair = Pair(db, [url_a, url_b], [a, b], identity)
    try:
        yield pair
    finally:
        for task in pair.servers:
            if not task.done():
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
        second.close()
        db.close()


@contextlib.asynccontextmanager
async def _running(client: Replicator) -> AsyncIterator[None]:
    task = asyncio.create_task(client.run())
    try:
        yield
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def _entry(seq: int) -> JournalEntry:
    return JournalEntry(
        at=datetime(2026, 6, 1, 12, 0, seq % 60, tzinfo=UTC), lane="lane-1",
        direction=Direction.ENTRY, reason=Reason.UNKNOWN, credential_id=None,
        code_hash=bytes(16), code_hint=f"…{seq:04d}",
    )  # fmt: skip


async def test_a_gate_moves_to_the_other_central_when_its_own_stops(
    pair: Pair, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    product = pair.db.catalogue.add_product("Ticket")
    _, sold = pair.db.sales.sell(product, count=2)
    settings = SyncConfig(urls=tuple(pair.urls), push_listen=False, timeout_seconds=2,
                          keepalive_seconds=0.5)  # fmt: skip
    client = Replicator(settings, store, device="gate-1", identity=pair.identity)
    caplog.set_level(logging.INFO)
    async with _running(client):
        await until(lambda: client.state.channel, "the channel to the first central")
        assert health(client)["central"] == pair.urls[0]
        assert store.cursor(CENTRAL_CURSOR) == pair.urls[0]
        for n in range(5):
            await store.record(_entry(n))
        client.journal_changed()
        await until(lambda: pair.db.journals.count("gate-1") == 5, "the first uploads")

        await pair.stop(0)
        pair.db.workflows.revoke_code(sold[0].code)
        for n in range(5, 10):
            await store.record(_entry(n))
        client.journal_changed()
        head = pair.db.log.head()
        await until(lambda: client.state.revision == head, "the revocation through the other")
        await until(lambda: pair.db.journals.count("gate-1") == 10, "uploads to the other")
        await until(lambda: client.state.channel, "the channel to the other central")
        assert health(client)["central"] == pair.urls[1]
        assert page_status(client)["central"] == pair.urls[1]
        await until(lambda: store.cursor(CENTRAL_CURSOR) == pair.urls[1], "the stored central")
        assert client.centrals.switches == 1
    assert pair.db.journals.seqs("gate-1") == list(range(1, 11))
    switched = [r.getMessage() for r in caplog.records if "is down" in r.getMessage()]
    assert len(switched) == 1, switched  # three loops noticed; one switch, logged once
    assert f"central {pair.urls[0]} is down" in switched[0]
    assert f"switching to {pair.urls[1]}" in switched[0]


async def test_a_gate_starts_on_the_central_it_last_used(pair: Pair, store: Store) -> None:
    await store.set_cursor(CENTRAL_CURSOR, pair.urls[1])
    await pair.stop(0)  # would cost a failed attempt if the gate began at the first
    settings = SyncConfig(urls=tuple(pair.urls), push_listen=False, timeout_seconds=2)
    client = Replicator(settings, store, device="gate-1", identity=pair.identity)
    async with _running(client):
        await until(lambda: client.state.channel, "the channel")
    assert (client.centrals.current, client.centrals.switches) == (pair.urls[1], 0)


async def test_a_refused_device_stays_where_it_is(pair: Pair, store: Store) -> None:
    """An unknown device is unknown to every process on the database: no switching round."""
    settings = SyncConfig(urls=(REFUSED, *pair.urls), push_listen=False, timeout_seconds=2)
    client = Replicator(settings, store, device="stranger", identity=Ed25519PrivateKey.generate())
    async with _running(client):
        await until(lambda: "unknown" in client.state.last_error, "the refusal")
        await asyncio.sleep(0.5)
        # Moved past the refusing port once, then stayed on the central that said no.
        assert (client.centrals.current, client.centrals.switches) == (pair.urls[0], 1)


def test_a_frozen_writer_does_not_stop_the_other_processes_writes(postgres: Cluster) -> None:
    """A process frozen inside a write transaction (its host gone) holds the write lock only
    until PostgreSQL ends its idle session; the other process's writes then go on, and the
    frozen one's transaction never commits."""
    dsn = postgres.database()
    frozen = PostgresConnection(dsn, idle_in_transaction_seconds=0.5)
    other = PostgresConnection(dsn)
    with other.transaction() as conn:
        conn.execute("CREATE TABLE written (who TEXT)")
    inside, thawed, written = threading.Event(), threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def hold() -> None:
        try:
            with frozen.transaction() as conn:
                conn.execute("INSERT INTO written VALUES ('frozen')")
                inside.set()
                thawed.wait(30)  # frozen, with the write lock
                conn.execute("INSERT INTO written VALUES ('frozen, thawed')")
        except Exception as err:  # whatever the dead session raises: it is ended
            failures.append(err)

    def write() -> None:
        with other.transaction() as conn:
            conn.execute("INSERT INTO written VALUES ('other')")
        written.set()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert inside.wait(10)
        writer = threading.Thread(target=write)
        writer.start()
        writer.join(20)
        assert written.is_set(), "the other process's write waited for the frozen one"
    finally:
        thawed.set()
        holder.join(10)
    assert failures, "the frozen process's transaction went on after the server ended it"
    assert other.rows("SELECT who FROM written") == [("other",)]
    frozen.close()
    other.close()


async def test_edge_status_names_the_central_in_use(tmp_path: Path) -> None:
    config = tmp_path / "gate.toml"
    config.write_text(DEVICE + '[sync]\nurls = ["http://c1:8400", "http://c2:8400/"]\n')
    store = await Store.open(tmp_path / "edge.db")
    try:
        await store.set_cursor(CENTRAL_CURSOR, "http://c2:8400")  # as the daemon keeps it
    finally:
        await store.close()
    status = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge.cli", "status", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await status.communicate()
    assert status.returncode == 0, err
    assert "not bootstrapped  (http://c2:8400; also http://c1:8400)" in out.decode(), out


async def test_a_gate_bootstraps_through_the_second_when_the_first_is_refused(
    pair: Pair, store: Store
) -> None:
    settings = SyncConfig(urls=(REFUSED, pair.urls[1]), push_listen=False, timeout_seconds=2)
    client = Replicator(settings, store, device="gate-1", identity=pair.identity)
    async with _running(client):
        head = pair.db.log.head()
        await until(lambda: client.state.revision == head, "the bootstrap", seconds=20)
        await until(lambda: client.state.channel, "the channel")
    assert (client.centrals.current, client.centrals.switches) == (pair.urls[1], 1)


async def test_a_central_of_another_database_is_refused(
    pair: Pair, store: Store, tmp_path: Path
) -> None:
    """Two processes on their own databases are two change logs: revision R means different
    changes at each. A gate that bootstrapped from one takes nothing from the other."""
    foreign = CentralDB(tmp_path / "foreign.db")
    foreign.keys.add()
    foreign.devices.add("gate-1", protocol.public_bytes(pair.identity))
    product = foreign.catalogue.add_product("Ticket")
    foreign.sales.sell(product, count=50)  # its head is far beyond the pair's
    url, server = await _serve(foreign)
    settings = SyncConfig(urls=(pair.urls[0], url), push_listen=False, timeout_seconds=2)
    client = Replicator(settings, store, device="gate-1", identity=pair.identity)
    try:
        async with _running(client):
            head = pair.db.log.head()
            await until(lambda: client.state.channel, "the channel to the pair's first")
            await store.record(_entry(1))
            client.journal_changed()
            await until(lambda: pair.db.journals.count("gate-1") == 1, "the first upload")
            await pair.stop(0)
            await store.record(_entry(2))
            client.journal_changed()
            await until(lambda: "another change log" in client.state.last_error, "the refusal")
            assert client.state.revision == head
            assert store.journal_backlog() == 1  # not taken by the foreign one
            assert foreign.journals.count() == 0
    finally:
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server
        foreign.close()


async def test_a_proxy_answering_502_for_a_dead_central_moves_the_gate_on(
    pair: Pair, store: Store
) -> None:
    """A reverse proxy in front of a dead process answers 502 to requests and to the channel's
    handshake: the process behind it is down, so the gate moves on."""

    async def bad_gateway(request: web.Request) -> web.Response:
        del request
        return web.Response(status=502, text="no upstream")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", bad_gateway)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    proxy = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        settings = SyncConfig(urls=(proxy, pair.urls[1]), push_listen=False, timeout_seconds=2)
        client = Replicator(settings, store, device="gate-1", identity=pair.identity)
        async with _running(client):
            await until(lambda: client.state.channel, "the channel through the second")
        assert (client.centrals.current, client.centrals.switches) == (pair.urls[1], 1)
    finally:
        await runner.cleanup()
