"""The reference central system's HTTP side: the device API and pushes to registered edges."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from edge.web import http
from sync import protocol
from sync.central.changelog import now_ms
from sync.central.db import CentralDB
from sync.central.deskapi import DeskAPI
from sync.central.errors import CentralError
from sync.protocol import EnvelopeKind, ErrorCode, RequestRejectedError

_LOGGER = logging.getLogger(__name__)

CHANGES_LIMIT = 5_000  # changes per pull answer
SNAPSHOT_LIMIT = 50_000  # state items per bootstrap chunk
PUSH_LIMIT = 500  # changes per push
PUSH_TIMEOUT = 3.0  # seconds for one push request
PUSH_BACKOFF_MIN = 0.2
PUSH_BACKOFF_MAX = 10.0
WATCH_INTERVAL = 0.02  # seconds between checks for commits by the admin CLI

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, code: ErrorCode, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=protocol.error_body(code, message, time_ms=now_ms()),
        headers=protocol.HEADERS,
    )


def _limit_error(status: int, message: str) -> web.Response:
    return web.Response(
        status=status, body=protocol.limit_error_body(status, message), headers=protocol.HEADERS
    )


_STATUS = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.UNKNOWN_DEVICE: 403,
    ErrorCode.CLOCK_SKEW: 401,
    ErrorCode.UNSUPPORTED_PROTOCOL: 400,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.REVISION_AHEAD: 409,
}


class Pusher:
    """Sends one edge the changes it lacks, in order, whenever the head moves."""

    def __init__(self, central: Central, device: str, url: str, revision: int) -> None:
        self.device = device
        self.url = url
        self.revision = revision
        self.wake = asyncio.Event()
        self.wake.set()
        self.contact = asyncio.Event()  # the device reached us: stop backing off
        self._central = central

    async def run(self) -> None:
        """Push until cancelled; failures back off with jitter, then retry."""
        backoff = PUSH_BACKOFF_MIN
        while True:
            await self.wake.wait()
            self.wake.clear()
            if self._central.db.devices.public_key(self.device) is None:
                _LOGGER.info("%s: removed; no more pushes", self.device)
                return
            while self.revision < self._central.head:
                try:
                    await self._push_once()
                    backoff = PUSH_BACKOFF_MIN
                except (aiohttp.ClientError, TimeoutError, protocol.ProtocolError) as err:
                    _LOGGER.info("%s: push failed (%s); retry in %.1f s", self.device, err, backoff)
                    self.contact.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            self.contact.wait(), backoff * random.uniform(0.5, 1.0)
                        )
                    backoff = min(backoff * 2, PUSH_BACKOFF_MAX)

    async def _push_once(self) -> None:
        body = await self._central.envelope_since(self.revision, PUSH_LIMIT)
        timeout = aiohttp.ClientTimeout(total=PUSH_TIMEOUT)
        async with self._central.session.post(
            self.url,
            data=body,
            headers=protocol.HEADERS,
            timeout=timeout,
        ) as response:
            data = await response.read()
        if response.status >= 300:
            raise protocol.ProtocolError(
                f"push answered {protocol.parse_error(response.status, data)}"
            )
        answer = protocol.fields(data, "push answer")
        reported = answer.integer("revision")
        if reported == self.revision and answer.text("status", limit=20) != "applied":
            # The edge did not move (it refused, or is busy pulling): wait, then try again.
            raise protocol.ProtocolError(f"edge stayed at revision {reported}")
        self.revision = reported  # behind (a gap it now pulls), or ahead: send from there


class Central:
    """The running central system: its database, HTTP app and pushers."""

    def __init__(self, db: CentralDB) -> None:
        self.db = db
        self.head = db.log.head()
        self.pushers: dict[str, tuple[Pusher, asyncio.Task[None]]] = {}
        self.session: aiohttp.ClientSession
        self._version = db.log.data_version()

    def app(self) -> web.Application:
        """The aiohttp application (routes under /v1)."""
        app = http.application(
            max_body=protocol.MAX_REQUEST_BYTES,
            errors=_limit_error,
            middlewares=(self._errors,),
        )
        app.router.add_post("/v1/hello", self._hello)
        app.router.add_post("/v1/changes", self._changes)
        app.router.add_post("/v1/snapshot", self._snapshot)
        app.router.add_post("/v1/journal", self._journal)
        DeskAPI(self.db.desk, authenticate=self._device, moved=self.moved).add_routes(app)
        app.cleanup_ctx.append(self._background)
        return app

    async def _background(self, app: web.Application) -> Any:
        del app
        self.session = aiohttp.ClientSession()
        for name, url, revision, _ in self.db.devices.registered():
            if url:
                self._pusher(name, url, revision)
        watcher = asyncio.create_task(self._watch())
        yield
        watcher.cancel()
        for _, task in self.pushers.values():
            task.cancel()
        for _, task in self.pushers.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await self.session.close()

    def _pusher(self, device: str, url: str, revision: int) -> Pusher:
        existing = self.pushers.get(device)
        if existing is not None and not existing[1].done():
            pusher = existing[0]
            pusher.url, pusher.revision = url, revision
            pusher.wake.set()
            pusher.contact.set()
            return pusher
        pusher = Pusher(self, device, url, revision)
        self.pushers[device] = (pusher, asyncio.create_task(pusher.run()))
        return pusher

    def moved(self) -> None:
        """The head may have moved: wake every pusher."""
        head = self.db.log.head()
        if head != self.head:
            self.head = head
            for pusher, _ in self.pushers.values():
                pusher.wake.set()

    async def _watch(self) -> None:
        """Notice commits by other processes (the admin CLI) and push them."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            version = self.db.log.data_version()
            if version != self._version:
                self._version = version
                self.moved()

    async def envelope_since(self, revision: int, limit: int) -> bytes:
        """A signed CHANGES envelope with up to `limit` changes after `revision`."""

        def build() -> bytes:
            first, changes, head = self.db.log.changes_since(revision, limit)
            key_id, key, chain = self.db.keys.signer()
            return protocol.seal(
                EnvelopeKind.CHANGES,
                key_id,
                key,
                first=first,
                last=first + len(changes),
                at_ms=now_ms(),
                changes=changes,
                chain=chain,
                head=head,
            )

        return await asyncio.to_thread(build)

    # -- middleware and handlers -------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except RequestRejectedError as err:
            _LOGGER.info("%s %s: %s", request.method, request.path, err)
            return _error(_STATUS.get(err.code, 400), err.code, err.message)
        except (protocol.ProtocolError, CentralError) as err:
            _LOGGER.info("%s %s: %s", request.method, request.path, err)
            return _error(400, ErrorCode.BAD_REQUEST, str(err))
        except web.HTTPRequestEntityTooLarge:
            return _error(413, ErrorCode.TOO_LARGE, "body too large")
        except web.HTTPException as err:
            return _error(err.status, ErrorCode.BAD_REQUEST, err.reason)

    async def _device(self, request: web.Request) -> tuple[str, bytes]:
        body = await request.read()
        device = protocol.verify_request(
            request.headers,
            method=request.method,
            path=request.path_qs,
            body=body,
            now_ms=now_ms(),
            public_key_of=self.db.devices.public_key,
        )
        return device, body

    @staticmethod
    def _answer(value: Any) -> web.Response:
        return web.Response(
            body=protocol.pack(value),
            headers=protocol.HEADERS,
        )

    async def _hello(self, request: web.Request) -> web.Response:
        device, body = await self._device(request)
        fields = protocol.fields(body, "hello")
        revision = fields.integer("revision")
        push_url = fields.text("push_url", optional=True, limit=300)
        if push_url is not None:
            parts = urlsplit(push_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise protocol.ProtocolError("hello.push_url: must be an http(s) URL")
        await asyncio.to_thread(self.db.devices.seen, device, revision=revision, push_url=push_url)
        if push_url:
            self._pusher(device, push_url, revision)
        _LOGGER.info("%s: hello at revision %d (head %d)", device, revision, self.head)
        return self._answer(
            {"protocol": protocol.VERSION, "time": now_ms(), "head": self.db.log.head()}
        )

    async def _changes(self, request: web.Request) -> web.Response:
        device, body = await self._device(request)
        fields = protocol.fields(body, "changes request")
        since = fields.integer("since")
        limit = min(
            fields.integer("limit", 1, CHANGES_LIMIT, optional=True) or CHANGES_LIMIT, CHANGES_LIMIT
        )
        envelope = await self.envelope_since(since, limit)
        await asyncio.to_thread(self.db.devices.seen, device, revision=since)
        pusher = self.pushers.get(device)
        if pusher is not None:
            pusher[0].revision = max(pusher[0].revision, since)
            pusher[0].contact.set()
        return web.Response(body=envelope, headers=protocol.HEADERS)

    async def _snapshot(self, request: web.Request) -> web.Response:
        _, body = await self._device(request)
        fields = protocol.fields(body, "snapshot request")
        revision = fields.integer("revision", optional=True)
        raw_cursor = fields.map.get("cursor")
        cursor = None if raw_cursor is None else protocol.snapshot_cursor(raw_cursor, "cursor")
        limit = min(
            fields.integer("limit", 1, SNAPSHOT_LIMIT, optional=True) or SNAPSHOT_LIMIT,
            SNAPSHOT_LIMIT,
        )

        def build() -> bytes:
            # The first chunk pins the revision; later chunks may show newer state, which
            # is harmless: the edge then pulls every change after the pinned revision, and
            # applying a change twice leaves the same state.
            pinned = self.db.log.head() if revision is None else revision
            changes, next_cursor = self.db.log.snapshot_chunk(cursor, limit)
            key_id, key, chain = self.db.keys.signer()
            return protocol.seal(
                EnvelopeKind.SNAPSHOT,
                key_id,
                key,
                first=pinned,
                last=pinned,
                at_ms=now_ms(),
                changes=changes,
                next_cursor=next_cursor,
                chain=chain,
                head=max(pinned, self.db.log.head()),
            )

        return web.Response(body=await asyncio.to_thread(build), headers=protocol.HEADERS)

    async def _journal(self, request: web.Request) -> web.Response:
        device, body = await self._device(request)
        records = protocol.journal_from_wire(body)
        started = time.monotonic()
        new, duplicates = await asyncio.to_thread(self.db.journals.ingest, device, records)
        if new:
            self.moved()
        _LOGGER.debug(
            "%s: journal %d new, %d duplicate in %.1f ms",
            device,
            new,
            duplicates,
            (time.monotonic() - started) * 1000,
        )
        return self._answer(
            {
                "accepted": new,
                "duplicates": duplicates,
                "through": max((r.seq for r in records), default=0),
            }
        )


async def serve(db: CentralDB, address: str, port: int, ready: Callable[[str], None]) -> None:
    """Run the central system until cancelled; `ready` gets its base URL."""
    central = Central(db)
    runner = http.runner(central.app())
    await runner.setup()
    try:
        await http.listen(runner, address, port)
        host, bound = runner.addresses[0][:2]
        ready(f"http://{f'[{host}]' if ':' in host else host}:{bound}")
        await asyncio.get_running_loop().create_future()
    finally:
        await runner.cleanup()
