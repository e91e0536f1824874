"""Hostile or broken pretix answers: a clear SyncError and no change to the store.

pretix itself never sends these, so a small HTTP server on 127.0.0.1 does (the friendly
paths run against a real pretix in tests/integration/test_pretix.py).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from edge.core.decide import Reason
from edge.core.errors import SyncError
from edge.core.facts import Direction
from edge.store.database import Store
from edge.store.gate import JournalEntry
from sync.pretix.client import PretixClient, PretixSettings
from sync.pretix.connector import PretixConnector
from sync.pretix.resolver import PretixResolver

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
        "order__status": "p",
        "valid_from": None,
        "valid_until": None,
        "checkins": [],
    }
    return {
        f"{EVENT}/": (200, {"valid_keys": {"pretix_sig1": [KEY]}, "has_subevents": False}),
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
        f"{EVENT}/checkinlists/3/positions/": (200, {**EMPTY_PAGE, "results": [position]}),
    }


class Server:
    """Answers each path with a configured (status, JSON or raw bytes)."""

    def __init__(self) -> None:
        self.answers = _good()
        self.requests: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
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
            f"{EVENT}/checkinlists/3/positions/",
            (200, {**EMPTY_PAGE, "results": [{"id": 5, "item": 1, "secret": "x" * 600}]}),
            "not a ticket secret",
        ),
        (
            f"{EVENT}/checkinlists/3/positions/",
            (
                200,
                {
                    **EMPTY_PAGE,
                    "results": [
                        {"id": 5, "item": 1, "secret": "abc", "valid_from": "2026-06-01T10:00"}
                    ],
                },
            ),
            "no time zone",
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
