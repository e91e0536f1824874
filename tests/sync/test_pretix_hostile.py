"""Hostile or broken pretix answers: a clear SyncError and no change to the store.

pretix itself never sends these, so a small HTTP server on 127.0.0.1 does (the friendly
paths run against a real pretix in tests/integration/test_pretix.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from threads import nice_values

from edge.core.decide import Reason
from edge.core.errors import SyncError
from edge.core.facts import Direction
from edge.store.database import Store
from edge.store.gate import JournalEntry
from edge.store.writer import BACKGROUND_NICE
from sync.pretix.client import PretixClient, PretixSettings
from sync.pretix.connector import PretixConnector
from sync.pretix.monitoring import health, page_status, status_lines
from sync.pretix.resolver import PretixResolver
from sync.pretix.secrets import secret_hash
from sync.pretix.worker import PullWorker

EVENT = "/api/v1/organizers/org/events/ev"
KEY = (
    "LS0tLS1CRUdJTiBQVUJMSUMgS0VZLS0tLS0KTUNvd0JRWURLMlZ3QXlFQUtheTY0VUc4eXZDeUxocVUwMDBMeHpZ"
    "ZVVtMEwvaExJbDVTOGt5S1diZGM9Ci0tLS0tRU5EIFBVQkxJQyBLRVktLS0tLQo="
)
EMPTY_PAGE: dict[str, Any] = {"count": 0, "next": None, "previous": None, "results": []}


def _good() -> dict[str, tuple[int, Any]]:
    """Answers of a well-behaved pretix with one position (random secret)."""
    position: dict[str, Any] = {
        "id": 5,
        "item": 1,
        "subevent": None,
        "secret": "e70j03ynzt5zfrr9",
        "valid_from": None,
        "valid_until": None,
        "checkins": [],
    }
    return {
        f"{EVENT}/": (
            200,
            {
                "valid_keys": {"pretix_sig1": [KEY]},
                "has_subevents": False,
                "date_from": "2026-06-01T18:00:00+00:00",
                "timezone": "Europe/Berlin",
            },
        ),
        f"{EVENT}/checkinlists/3/": (
            200,
            {
                "id": 3,
                "all_products": True,
                "limit_products": [],
                "subevent": None,
                "include_pending": False,
                "allow_multiple_entries": False,
            },
        ),
        f"{EVENT}/items/": (200, {**EMPTY_PAGE, "results": [{"id": 1, "name": "Admission"}]}),
        f"{EVENT}/revokedsecrets/": (200, EMPTY_PAGE),
        f"{EVENT}/blockedsecrets/": (200, EMPTY_PAGE),
        f"{EVENT}/orders/": (
            200,
            {**EMPTY_PAGE, "results": [{"code": "ABC12", "status": "p", "positions": [position]}]},
        ),
    }


def _orders(*positions: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """An orders page with one paid order holding these positions."""
    order = {"code": "ABC12", "status": "p", "positions": list(positions)}
    return 200, {**EMPTY_PAGE, "results": [order]}


class Server:
    """Answers each path with a configured (status, JSON or raw bytes)."""

    def __init__(self) -> None:
        self.answers = _good()
        self.requests: list[str] = []
        self.hold: asyncio.Event | None = None  # set: answers wait for it
        self.held = asyncio.Event()  # a request waits for `hold`

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        if self.hold is not None:
            self.held.set()
            await self.hold.wait()
        status, body = self.answers.get(request.path, (404, {"detail": "Not found."}))
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return web.Response(status=status, body=raw, content_type="application/json")


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, str]]:
    fake = Server()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield fake, f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def connector(
    server: tuple[Server, str], tmp_path: Path
) -> AsyncIterator[tuple[PretixConnector, Store]]:
    _, url = server
    store = await Store.open(tmp_path / "edge.db")
    settings = PretixSettings(url=url, organizer="org", event="ev", checkin_list=3, token="t")
    async with aiohttp.ClientSession() as session:
        client = PretixClient(settings, session=session)
        try:
            yield PretixConnector(store, client, PretixResolver(store)), store
        finally:
            await store.close()


async def test_well_behaved_server_pulls(
    connector: tuple[PretixConnector, Store], server: tuple[Server, str]
) -> None:
    sync, store = connector
    stats = await sync.pull()
    assert (stats.keys, stats.positions, stats.items) == (1, 1, 1)
    assert store.stats().plain_codes == 1


async def test_a_large_page_arrives_whole(
    connector: tuple[PretixConnector, Store], server: tuple[Server, str]
) -> None:
    """A page of 50 orders with their positions is hundreds of kB: it arrives in chunks."""
    fake, _ = server
    sync, store = connector
    orders = [
        {
            "code": f"O{n:04}",
            "status": "p",
            "positions": [
                {
                    "id": 1000 + n,
                    "item": 1,
                    "subevent": None,
                    "secret": f"s{n:015}",
                    "valid_from": None,
                    "valid_until": None,
                    "checkins": [],
                    "attendee_name": "x" * 4000,  # pretix sends much more than the gate reads
                }
            ],
        }
        for n in range(50)
    ]
    fake.answers[f"{EVENT}/orders/"] = (200, {**EMPTY_PAGE, "results": orders})
    await sync.pull()
    assert store.pretix_position(secret_hash("s000000000000049")) is not None


@pytest.mark.parametrize(
    ("path", "answer", "message"),
    [
        (f"{EVENT}/", (401, {"detail": "Invalid token."}), "token is not accepted"),
        (f"{EVENT}/", (200, b"<html>"), "not JSON"),
        (f"{EVENT}/", (500, {}), "HTTP 500"),
        (f"{EVENT}/", (200, {"has_subevents": False}), "no valid_keys"),
        (f"{EVENT}/", (200, {"valid_keys": {"pretix_sig1": ["AAAA"]}}), "not base64 of a PEM"),
        (f"{EVENT}/checkinlists/3/", (404, {"detail": "Not found."}), "HTTP 404"),
        (f"{EVENT}/checkinlists/3/", (200, {"id": 3}), "'all_products' is NoneType"),
        (f"{EVENT}/items/", (200, {"results": "no"}), "without 'results'"),
        (
            f"{EVENT}/revokedsecrets/",
            (200, {**EMPTY_PAGE, "results": [{"secret": 7, "created": "x"}]}),
            "'secret' is int",
        ),
        (
            f"{EVENT}/orders/",
            _orders({"id": 5, "item": 1, "secret": "x" * 600, "checkins": []}),
            "not a ticket secret",
        ),
        (
            f"{EVENT}/orders/",
            _orders(
                {
                    "id": 5,
                    "item": 1,
                    "secret": "abc",
                    "valid_from": "2026-06-01T10:00",
                    "checkins": [],
                }
            ),
            "no time zone",
        ),
        (f"{EVENT}/orders/", _orders({"id": "5", "item": 1, "secret": "abc"}), "'id'"),
        (
            f"{EVENT}/orders/",
            (200, {**EMPTY_PAGE, "results": [{"status": "x", "positions": []}]}),
            "status 'x'",
        ),
        (
            f"{EVENT}/orders/",
            _orders({"id": 5, "item": 1, "secret": "abc", "checkins": {}}),
            "'checkins' is not a list",
        ),
    ],
)
async def test_bad_answers_change_nothing(
    connector: tuple[PretixConnector, Store],
    server: tuple[Server, str],
    path: str,
    answer: tuple[int, Any],
    message: str,
) -> None:
    sync, store = connector
    fake, _ = server
    fake.answers[path] = answer
    before = store.stats()
    with pytest.raises(SyncError, match=message):
        await sync.pull()
    assert store.stats() == before
    assert store.cursor("pretix:keys") is None


async def test_failed_upload_keeps_the_row(
    connector: tuple[PretixConnector, Store], server: tuple[Server, str]
) -> None:
    sync, store = connector
    fake, _ = server
    await sync.pull()
    (code_hash,) = [bytes(h) for (h,) in store._reader.execute("SELECT code_hash FROM plain_codes")]
    await store.record(
        JournalEntry(
            at=datetime(2026, 6, 1, 12, tzinfo=UTC),
            lane="L",
            direction=Direction.ENTRY,
            reason=Reason.ADMITTED,
            credential_id=5,
            code_hash=code_hash,
            code_hint="…frr9",
        )
    )
    redeem = f"{EVENT}/checkinlists/3/positions/5/redeem/"
    fake.answers[redeem] = (503, b"")
    with pytest.raises(SyncError, match="HTTP 503"):
        await sync.upload()
    assert len(store.unsent()) == 1
    fake.answers[redeem] = (201, {"status": "ok"})
    stats = await sync.upload()
    assert (stats.sent, len(store.unsent())) == (1, 0)
    assert fake.requests.count(redeem) == 2


async def test_revoked_cursor_is_the_latest_time_not_the_largest_text(
    connector: tuple[PretixConnector, Store], server: tuple[Server, str]
) -> None:
    sync, store = connector
    fake, _ = server
    rows = [
        {"id": 1, "secret": "aaaaaaaaaaaaaaaa", "created": "2026-06-01T10:00:05.500000Z"},
        {"id": 2, "secret": "bbbbbbbbbbbbbbbb", "created": "2026-06-01T10:00:05Z"},
    ]
    fake.answers[f"{EVENT}/revokedsecrets/"] = (200, {**EMPTY_PAGE, "results": rows})
    stats = await sync.pull()
    assert stats.revoked == 2
    assert store.stats().revoked_codes == 2
    assert store.cursor("pretix:revoked-since") == "2026-06-01T10:00:05.500000Z"


async def _admitted(store: Store, code_hash: bytes, *, count: int = 1) -> None:
    for _ in range(count):
        await store.record(
            JournalEntry(
                # A moment ago: the pull that follows starts in a later millisecond.
                at=datetime.now(UTC) - timedelta(milliseconds=50),
                lane="L",
                direction=Direction.ENTRY,
                reason=Reason.ADMITTED,
                credential_id=None,
                code_hash=code_hash,
                code_hint="…test",
            )
        )


def _second_position(fake: Server) -> bytes:
    """Add position 6 (secret "second0000000000") to the order; its code hash."""
    path = f"{EVENT}/orders/"
    order = fake.answers[path][1]["results"][0]
    first = order["positions"][0]
    second = {**first, "id": 6, "secret": "second0000000000"}
    page = {**EMPTY_PAGE, "results": [{**order, "positions": [first, second]}]}
    fake.answers[path] = (200, page)
    return secret_hash("second0000000000")


@pytest.mark.parametrize("status", [409, 423, 429, 500, 502])
async def test_not_now_answers_are_never_final(
    connector: tuple[PretixConnector, Store], server: tuple[Server, str], status: int
) -> None:
    sync, store = connector
    fake, _ = server
    await sync.pull()
    await _admitted(store, secret_hash("e70j03ynzt5zfrr9"))
    redeem = f"{EVENT}/checkinlists/3/positions/5/redeem/"
    fake.answers[redeem] = (status, {"detail": "database is locked"})
    with pytest.raises(SyncError, match=f"HTTP {status}"):
        await sync.upload()
    assert len(store.unsent()) == 1
    assert store.reply_counts() == {}


async def test_a_row_that_always_fails_does_not_hold_up_the_rows_behind_it(
    connector: tuple[PretixConnector, Store], server: tuple[Server, str]
) -> None:
    sync, store = connector
    fake, _ = server
    second = _second_position(fake)
    await sync.pull()
    await _admitted(store, secret_hash("e70j03ynzt5zfrr9"))
    await _admitted(store, second)
    fake.answers[f"{EVENT}/checkinlists/3/positions/5/redeem/"] = (500, b"")
    fake.answers[f"{EVENT}/checkinlists/3/positions/6/redeem/"] = (201, {"status": "ok"})
    with pytest.raises(SyncError, match="1 check-ins not uploaded"):
        await sync.upload()
    (left,) = store.unsent()
    assert left.entry.code_hash == secret_hash("e70j03ynzt5zfrr9")
    assert store.reply_counts() == {"ok": 1}


async def test_the_upload_reads_its_queue_in_small_pages(
    connector: tuple[PretixConnector, Store], server: tuple[Server, str]
) -> None:
    # The upload reads the unsent rows on the event loop, a page at a time: a page of 500
    # held the loop 5.6-6.1 ms with a backlog, and every lane waited. Pages are of 100 now,
    # and the rows behind the first page still go.
    sync, store = connector
    fake, _ = server
    await sync.pull()
    await _admitted(store, secret_hash("e70j03ynzt5zfrr9"), count=250)
    fake.answers[f"{EVENT}/checkinlists/3/positions/5/redeem/"] = (201, {"status": "ok"})
    on_loop: list[str] = []
    store._reader.set_trace_callback(on_loop.append)
    try:
        stats = await sync.upload()
    finally:
        store._reader.set_trace_callback(None)
    assert (stats.sent, len(store.unsent(1000))) == (250, 0)
    pages = [sql for sql in on_loop if "FROM journal WHERE uploaded = 0" in sql]
    assert len(pages) >= 3
    assert all(sql.endswith("LIMIT 100") for sql in pages)


async def test_refusals_leave_the_queue_with_pretix_s_reason(
    connector: tuple[PretixConnector, Store], server: tuple[Server, str]
) -> None:
    sync, store = connector
    fake, _ = server
    second = _second_position(fake)
    await sync.pull()
    await _admitted(store, secret_hash("e70j03ynzt5zfrr9"), count=3)
    await _admitted(store, second)
    fake.answers[f"{EVENT}/checkinlists/3/positions/5/redeem/"] = (
        400,
        {"status": "error", "reason": "product", "reason_explanation": None},
    )
    fake.answers[f"{EVENT}/checkinlists/3/positions/6/redeem/"] = (201, {"status": "ok"})
    stats = await sync.upload()
    assert (stats.sent, stats.refused, len(store.unsent())) == (4, 3, 0)
    assert [(r.status, r.detail) for r in store.refusals()] == [("error", "product")] * 3
    assert sync.state.refused == 3
    assert [r["reason"] for r in sync.state.refusals] == ["product"] * 3
    shown = health(sync.state, store)
    assert (shown["refused"], shown["queue"], shown["uploaded"]) == (3, 0, 1)
    assert page_status(sync.state, store)["refusals"] == sync.state.refusals
    lines = "\n".join(status_lines(store))
    assert "pretix refused                    3  (error 3)" in lines
    assert "error     product" in lines


async def test_an_unmapped_scan_waits_for_two_pulls_then_leaves_the_queue(
    connector: tuple[PretixConnector, Store], server: tuple[Server, str]
) -> None:
    sync, store = connector
    await _admitted(store, secret_hash("nobody0000000000"))
    await sync.pull()
    assert (await sync.upload()).waiting == 1
    await sync.pull()
    stats = await sync.upload()
    assert (stats.waiting, stats.unmapped, len(store.unsent())) == (0, 1, 0)
    assert store.reply_counts() == {"unmapped": 1}


async def test_one_read_of_the_orders_tells_moved_from_gone(
    connector: tuple[PretixConnector, Store], server: tuple[Server, str]
) -> None:
    """Positions that left the list are told apart from the same read of the orders: none
    is looked up by id, and the list's own listing is never read."""
    sync, store = connector
    fake, _ = server
    listing = fake.answers[f"{EVENT}/checkinlists/3/"][1]
    fake.answers[f"{EVENT}/checkinlists/3/"] = (
        200,
        {**listing, "all_products": False, "limit_products": [1]},
    )
    _second_position(fake)
    path = f"{EVENT}/orders/"
    order = fake.answers[path][1]["results"][0]
    first, second = order["positions"]
    third = {**first, "id": 7, "secret": "third00000000000"}
    fake.answers[path] = (200, _orders(first, second, third)[1])
    await sync.pull()
    assert set((await store.plain_code_index()).values()) == {5, 6, 7}
    # Position 6 is gone from pretix; 7 moved to a product the list does not hold.
    fake.answers[path] = (200, _orders(first, {**third, "item": 2})[1])
    stats = await sync.pull()
    assert (stats.positions, stats.removed, stats.off_list) == (1, 1, 1)
    # Its facts and code go, and the event signs its secrets, so the code is revoked rather
    # than taken for a ticket sold later; the moved one keeps its code, under its product.
    assert set((await store.plain_code_index()).values()) == {5, 7}
    assert (await store.credential_index())[7] == (0, 2)
    assert 6 not in (await store.credential_index())
    assert store.stats().revoked_codes == 1
    stats = await sync.pull()
    assert (stats.removed, stats.off_list) == (0, 0)
    assert [r for r in fake.requests if "positions" in r] == []
    assert fake.requests.count(path) == 3


async def test_a_re_pull_writes_only_the_positions_that_changed(
    connector: tuple[PretixConnector, Store], server: tuple[Server, str]
) -> None:
    sync, store = connector
    fake, _ = server
    _second_position(fake)
    assert (await sync.pull()).changed == 2
    assert (await sync.pull()).changed == 0
    path = f"{EVENT}/orders/"
    first, second = fake.answers[path][1]["results"][0]["positions"]
    checkin = {"list": 3, "datetime": "2026-06-01T18:05:00+00:00", "type": "entry"}
    second = {**second, "checkins": [checkin]}
    fake.answers[path] = _orders(first, second)
    assert (await sync.pull()).changed == 1  # a passage pretix recorded
    assert len(store.pretix_passages(6)) == 1
    fake.answers[path] = _orders({**first, "secret": "reissued00000000"}, second)
    assert (await sync.pull()).changed == 1
    assert store.pretix_position(secret_hash("e70j03ynzt5zfrr9")) is None
    assert store.pretix_position(secret_hash("reissued00000000")) is not None
    assert len(store.pretix_passages(6)) == 1
    fake.answers[path] = _orders(second)
    assert (await sync.pull()).changed == 0
    assert store.pretix_position(secret_hash("reissued00000000")) is None  # gone


async def test_a_long_answer_is_read_to_its_end(
    connector: tuple[PretixConnector, Store], server: tuple[Server, str]
) -> None:
    sync, store = connector
    fake, _ = server
    path = f"{EVENT}/orders/"
    first = fake.answers[path][1]["results"][0]["positions"][0]
    rows = [
        {**first, "id": 100 + n, "secret": f"long{n:012d}", "attendee_name": "x" * 2000}
        for n in range(50)
    ]
    fake.answers[path] = _orders(*rows)  # ~100 kB, many TCP reads
    stats = await sync.pull()
    assert stats.positions == 50
    assert len(await store.plain_code_index()) == 50


# -- the same pulls through the daemon's worker process (sync.pretix.worker) -------------------


async def test_worker_pulls_what_a_pull_here_would(
    server: tuple[Server, str], tmp_path: Path
) -> None:
    fake, url = server
    _second_position(fake)
    settings = PretixSettings(url=url, organizer="org", event="ev", checkin_list=3, token="t")
    here = await Store.open(tmp_path / "here.db")
    there = await Store.open(tmp_path / "there.db")
    worker = PullWorker(there.path)
    try:
        async with aiohttp.ClientSession() as session:
            client = PretixClient(settings, session=session)
            expected = await PretixConnector(here, client, PretixResolver(here)).pull()
            resolver = PretixResolver(there)
            connector = PretixConnector(there, client, resolver, puller=worker)
            before = resolver.state
            stats = await connector.sync()
        assert stats == expected
        assert there.stats() == here.stats()
        assert (before, resolver.state) == (None, PretixResolver(here).state)  # reloaded
        assert connector.state.last_pull is not None
        assert there.pretix_position(secret_hash("second0000000000")) is not None
        assert await there.plain_code_index() == await here.plain_code_index()
    finally:
        await worker.close()
        await here.close()
        await there.close()


async def test_worker_errors_are_the_pulls_and_change_nothing(
    server: tuple[Server, str], tmp_path: Path
) -> None:
    fake, url = server
    fake.answers[f"{EVENT}/orders/"] = _orders({"id": 5, "item": 1, "secret": "x" * 600})
    settings = PretixSettings(url=url, organizer="org", event="ev", checkin_list=3, token="t")
    store = await Store.open(tmp_path / "edge.db")
    worker = PullWorker(store.path)
    try:
        before = store.stats()
        with pytest.raises(SyncError, match="not a ticket secret"):
            await worker.pull(settings)
        assert store.stats() == before
        assert store.cursor("pretix:keys") is None
        fake.answers = _good()
        assert (await worker.pull(settings)).positions == 1  # the same worker, still serving
        with pytest.raises(SyncError, match="ClientConnectorError"):
            await worker.pull(dataclasses.replace(settings, url="http://127.0.0.1:9"))
    finally:
        await worker.close()
        await store.close()


async def test_a_worker_per_pull_and_one_that_dies_or_is_abandoned_is_gone(
    server: tuple[Server, str], tmp_path: Path
) -> None:
    fake, url = server
    settings = PretixSettings(url=url, organizer="org", event="ev", checkin_list=3, token="t")
    store = await Store.open(tmp_path / "edge.db")
    worker = PullWorker(store.path)
    try:
        fake.hold = asyncio.Event()
        pending = asyncio.create_task(worker.pull(settings))
        await fake.held.wait()  # the worker's request reached the server
        first = worker._process
        assert first is not None
        fake.hold.set()
        assert (await pending).positions == 1
        # Its pull done, the worker has ended: its memory is the system's again.
        assert (worker._process, first.returncode) == (None, 0)
        # Killed during a pull: that pull fails, the next one has a new worker.
        fake.hold, fake.held = asyncio.Event(), asyncio.Event()
        pending = asyncio.create_task(worker.pull(settings))
        await fake.held.wait()
        assert worker._process is not None
        worker._process.kill()
        with pytest.raises(SyncError, match="exited"):
            await pending
        fake.hold.set()
        assert (await worker.pull(settings)).positions == 1
        # A pull given up on (the daemon stops, a timeout): that worker goes, so its late
        # answer can never be taken for the next pull's.
        fake.hold, fake.held = asyncio.Event(), asyncio.Event()
        pending = asyncio.create_task(worker.pull(settings))
        await fake.held.wait()
        abandoned = worker._process
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        assert abandoned is not None
        assert await abandoned.wait() != 0
        fake.hold.set()
        assert (await worker.pull(settings)).positions == 1
    finally:
        await worker.close()
        await store.close()


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="Linux /proc")
async def test_the_worker_yields_the_cpu_except_its_store_writers(
    server: tuple[Server, str], tmp_path: Path
) -> None:
    fake, url = server
    settings = PretixSettings(url=url, organizer="org", event="ev", checkin_list=3, token="t")
    store = await Store.open(tmp_path / "edge.db")
    worker = PullWorker(store.path)
    try:
        fake.hold = asyncio.Event()
        pending = asyncio.create_task(worker.pull(settings))
        await fake.held.wait()  # the store is open, its threads started; HTTP under way
        assert worker._process is not None
        nice = list(nice_values(worker._process.pid).values())
        fake.hold.set()
        await pending
        # The store's two writers hold the write locks the daemon's writes may wait for: the
        # daemon's priority. Everything else (HTTP, parsing, comparisons, checkpoints) below.
        assert sorted(nice)[:3] == [0, 0, BACKGROUND_NICE]
        assert len(nice) >= 4
    finally:
        await worker.close()
        await store.close()
