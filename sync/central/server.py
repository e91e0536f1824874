"""The reference central system's HTTP side: the device API and pushes to registered edges."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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
CHANNEL_KEEPALIVE = 20.0  # seconds between pings on a push channel; no pong in half: gone
CHANNEL_ANSWER_TIMEOUT = 10.0  # seconds an edge has to answer a pushed envelope
# Every gate holds one channel open: the process keeps this many connections (within its
# descriptor limit, a quarter of which stays in reserve) instead of the device's 512.
MAX_CONNECTIONS = 16_384
# A bootstrapping device's next snapshot part is read while it verifies and writes the one it
# got (each part up to ~2 MB held); for this many devices at once, and kept this long.
READ_AHEAD_DEVICES = 16
READ_AHEAD_SECONDS = 60.0
ENVELOPE_CACHE = 64  # recent envelopes kept, by (since, limit, head), for edges in step

# Central.venue of a device moved to another venue that has not bootstrapped since, and of
# one no longer registered.
_MOVED = "\x00moved"
_GONE = "\x00gone"


def _refuse_unrouted(venue: str | None) -> None:
    """Refuse a device that is removed, or moved and not yet bootstrapped in its new venue."""
    if venue == _GONE:
        raise RequestRejectedError(ErrorCode.UNKNOWN_DEVICE, "this device is not registered")
    if venue == _MOVED:
        raise RequestRejectedError(
            ErrorCode.REVISION_AHEAD,
            "this device was moved to another venue; it must bootstrap again",
        )


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


class ChangeFeed:
    """Wakes every subscriber (pushers, channels) when the head may have moved.

    Fed by `Central.moved`: after this process's own commits and by the watcher that polls
    for commits of other processes; a backend with notifications (LISTEN/NOTIFY) feeds it
    from those instead of the poll.
    """

    def __init__(self) -> None:
        self._events: set[asyncio.Event] = set()

    def subscribe(self) -> asyncio.Event:
        """An event set (now, and) on every move; the subscriber clears it."""
        event = asyncio.Event()
        event.set()
        self._events.add(event)
        return event

    def unsubscribe(self, event: asyncio.Event) -> None:
        """Stop waking `event`."""
        self._events.discard(event)

    def publish(self) -> None:
        """Wake every subscriber."""
        for event in self._events:
            event.set()

    def __len__(self) -> int:
        return len(self._events)


class Pusher:
    """Sends one edge the changes it lacks, in order, whenever the head moves."""

    def __init__(self, central: Central, device: str, url: str, revision: int) -> None:
        self.device = device
        self.url = url
        self.revision = revision
        self.wake = central.feed.subscribe()
        self.contact = asyncio.Event()  # the device reached us: stop backing off
        self._central = central

    async def run(self) -> None:
        """Push until cancelled; failures back off with jitter, then retry."""
        backoff = PUSH_BACKOFF_MIN
        while True:
            await self.wake.wait()
            self.wake.clear()
            if await self._central.venue(self.device) == _GONE:
                _LOGGER.info("%s: removed; no more pushes", self.device)
                self._central.feed.unsubscribe(self.wake)
                return
            # An open channel carries the pushes; this pusher resumes when it closes.
            while self.revision < self._central.head and self.device not in self._central.channels:
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
        venue = await self._central.venue(self.device)
        if venue in (_MOVED, _GONE):  # nothing until it bootstraps its new venue
            raise protocol.ProtocolError("moved to another venue; not bootstrapped since")
        body = await self._central.envelope_since(self.revision, PUSH_LIMIT, venue=venue)
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
        reported, status = protocol.parse_push_answer(data)
        if reported == self.revision and status != "applied":
            # The edge did not move (it refused, or is busy pulling): wait, then try again.
            raise protocol.ProtocolError(f"edge stayed at revision {reported}")
        self.revision = reported  # behind (a gap it now pulls), or ahead: send from there


class Channel:
    """One edge's open push channel: sends the changes it lacks, one envelope per answer."""

    def __init__(
        self, central: Central, device: str, ws: web.WebSocketResponse, revision: int
    ) -> None:
        self.device = device
        self.revision = revision
        self.ws = ws
        self.wake = central.feed.subscribe()
        self._central = central
        self._answers: asyncio.Queue[tuple[int, str]] = asyncio.Queue()

    async def run(self) -> None:
        """Read the edge's answers while a task sends; return when the connection closes."""
        sender = asyncio.create_task(self._send())
        try:
            async for message in self.ws:
                if message.type is not aiohttp.WSMsgType.BINARY:
                    await self.ws.close(code=protocol.CloseCode.UNSUPPORTED, message=b"binary")
                    break
                try:
                    self._answers.put_nowait(protocol.parse_push_answer(message.data))
                except protocol.ProtocolError as err:
                    _LOGGER.info("%s: channel answer refused: %s", self.device, err)
                    await self.ws.close(code=protocol.CloseCode.REFUSED, message=b"refused")
                    break
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            self._central.feed.unsubscribe(self.wake)

    async def _send(self) -> None:
        central = self._central
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                while self.revision < central.head:
                    # Cleared before the envelope is built: a move after this is not in it.
                    self.wake.clear()
                    venue = await central.venue(self.device)
                    if venue == _GONE:
                        await self.ws.close(code=protocol.CloseCode.REMOVED, message=b"removed")
                        return
                    if venue == _MOVED:  # its pulls are refused until it bootstraps again
                        await self.ws.close(code=protocol.CloseCode.REFUSED, message=b"moved")
                        return
                    body = await central.envelope_since(
                        self.revision, PUSH_LIMIT, central.head, venue=venue
                    )
                    await self.ws.send_bytes(body)
                    reported, status = await asyncio.wait_for(
                        self._answers.get(), CHANNEL_ANSWER_TIMEOUT
                    )
                    self.revision = reported
                    if status == "gap":
                        break  # the edge pulls what it lacks; send again on the next move
        except TimeoutError:
            _LOGGER.info("%s: channel: no answer in %.0f s", self.device, CHANNEL_ANSWER_TIMEOUT)
            await self.ws.close(code=protocol.CloseCode.SILENT, message=b"no answer")
        except (ConnectionError, aiohttp.ClientError) as err:
            _LOGGER.info("%s: channel send failed: %s", self.device, err)
            await self.ws.close()


@dataclass(frozen=True, slots=True)
class _Ahead:
    """A snapshot part read before the device asked for it."""

    key: tuple[bytes, int, str | None]  # the request it answers (_part_key)
    part: asyncio.Future[tuple[protocol.PackedChanges, tuple[str, Any] | None]]
    at: float  # monotonic time it was started


def _part_key(
    cursor: tuple[str, Any] | None, limit: int, venue: str | None
) -> tuple[bytes, int, str | None]:
    return protocol.pack(list(cursor) if cursor else None), limit, venue


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class Central:
    """The running central system: its database, HTTP app, pushers and channels."""

    def __init__(self, db: CentralDB) -> None:
        self.db = db
        self.head = db.log.head()
        self.feed = ChangeFeed()
        self.pushers: dict[str, tuple[Pusher, asyncio.Task[None]]] = {}
        self.channels: dict[str, Channel] = {}
        self._envelopes: dict[tuple[int, int, int, str | None], asyncio.Future[bytes]] = {}
        # Each device's venue (or _MOVED, _GONE), read again when a notice says devices changed.
        self._venues: dict[str, str | None] = {}
        self._log: bytes | None = None  # the change log's identity (hello answers)
        self._ahead: dict[str, _Ahead] = {}  # each bootstrapping device's next part, read ahead
        self.session: aiohttp.ClientSession

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
        app.router.add_get(protocol.CHANNEL_PATH, self._channel)
        DeskAPI(self.db.desk, authenticate=self._device, moved=self.moved).add_routes(app)
        app.cleanup_ctx.append(self._background)
        app.on_shutdown.append(self._close_channels)
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

    def moved(self, head: int | None = None) -> None:
        """The head may have moved (to `head`, if known): wake every pusher and channel."""
        if head is None:
            head = self.db.log.head()
        elif head <= self.head:
            return  # a notice of a commit already seen
        if head != self.head:
            self.head = head
            self.feed.publish()

    async def _close_channels(self, app: web.Application) -> None:
        del app
        for channel in list(self.channels.values()):
            await channel.ws.close(code=protocol.CloseCode.GOING_AWAY, message=b"shutdown")

    async def _watch(self) -> None:
        """Notice commits by other processes (the admin CLI, other servers) and push them.

        One read per notice, whatever the number of connections: the devices (when they may
        have changed) in one query, and the head unless the notice carries it.
        """
        async with self.db.connection.notifier() as notifier:
            while True:
                notice = await notifier.wait()
                if notice.devices:  # a device may have been removed, moved or bootstrapped
                    routes = await asyncio.to_thread(self.db.devices.routes)
                    self._venues = {name: _venue(route) for name, route in routes.items()}
                self.moved(notice.head)

    async def venue(self, device: str) -> str | None:
        """The device's venue (None: all), _MOVED while a moved device must bootstrap, or
        _GONE once it is removed; kept until a notice says devices changed."""
        if device not in self._venues:
            route = await asyncio.to_thread(self.db.devices.route, device)
            self._venues[device] = _GONE if route is None else _venue(route)
        return self._venues[device]

    async def envelope_since(
        self, revision: int, limit: int, head: int | None = None, *, venue: str | None = None
    ) -> bytes:
        """A signed CHANGES envelope with up to `limit` changes after `revision` (of a device
        of `venue`: only those that concern the venue or the whole group).

        When the head moves, every channel and pusher at the same revision asks for the same
        envelope at once: it is built and signed once, the others wait for it. `head` is the
        head the caller saw move (the database's own when None); the envelope holds at
        least the changes up to it.
        """
        _refuse_unrouted(venue)
        key = (revision, limit, self.db.log.head() if head is None else head, venue)
        future = self._envelopes.get(key)
        if future is None:
            future = asyncio.ensure_future(self._build_envelope(revision, limit, venue))
            future.add_done_callback(lambda done: self._forget_failed(key, done))
            self._envelopes[key] = future
            while len(self._envelopes) > ENVELOPE_CACHE:
                del self._envelopes[next(iter(self._envelopes))]
        return await asyncio.shield(future)

    def _forget_failed(
        self, key: tuple[int, int, int, str | None], done: asyncio.Future[bytes]
    ) -> None:
        if (done.cancelled() or done.exception() is not None) and self._envelopes.get(key) is done:
            del self._envelopes[key]

    async def _build_envelope(self, revision: int, limit: int, venue: str | None) -> bytes:
        def build() -> bytes:
            revisions = None
            if venue is None:
                first, changes, head = self.db.log.changes_since(revision, limit)
                last = first + len(changes)
            else:
                first, last, revisions, changes, head = self.db.log.venue_changes_since(
                    revision, limit, venue
                )
            key_id, key, chain = self.db.keys.signer()
            return protocol.seal(
                EnvelopeKind.CHANGES,
                key_id,
                key,
                first=first,
                last=last,
                at_ms=now_ms(),
                changes=changes,
                chain=chain,
                head=head,
                revisions=revisions,
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
        if self._log is None:  # fixed once the log has a first change
            self._log = await asyncio.to_thread(self.db.log.identity)
        return self._answer(
            {"protocol": protocol.VERSION, "time": now_ms(), "head": self.db.log.head(),
             "log": self._log}
        )  # fmt: skip

    async def _changes(self, request: web.Request) -> web.Response:
        device, body = await self._device(request)
        fields = protocol.fields(body, "changes request")
        since = fields.integer("since")
        limit = min(
            fields.integer("limit", 1, CHANGES_LIMIT, optional=True) or CHANGES_LIMIT, CHANGES_LIMIT
        )
        envelope = await self.envelope_since(since, limit, venue=await self.venue(device))
        await asyncio.to_thread(self.db.devices.seen, device, revision=since)
        pusher = self.pushers.get(device)
        if pusher is not None:
            pusher[0].revision = max(pusher[0].revision, since)
            pusher[0].contact.set()
        return web.Response(body=envelope, headers=protocol.HEADERS)

    async def _channel(self, request: web.Request) -> web.StreamResponse:
        device, _ = await self._device(request)
        revision = request.query.get("revision", "")
        if not revision.isdigit() or len(revision) > 19:
            raise protocol.ProtocolError("channel: revision must be a revision number")
        since, head = int(revision), self.db.log.head()
        if since > head:
            raise RequestRejectedError(
                ErrorCode.REVISION_AHEAD, f"revision {since} is beyond the head {head}"
            )
        venue = await self.venue(device)
        _refuse_unrouted(venue)
        # No permessage-deflate: signed envelopes hardly compress, and a zlib context per
        # direction per gate costs hundreds of kilobytes across thousands of channels.
        ws = web.WebSocketResponse(
            heartbeat=CHANNEL_KEEPALIVE, max_msg_size=1 << 10, autoping=True, compress=False
        )
        await ws.prepare(request)
        channel = Channel(self, device, ws, since)
        previous = self.channels.get(device)
        self.channels[device] = channel
        if previous is not None:
            await previous.ws.close(code=protocol.CloseCode.REPLACED, message=b"replaced")
        await asyncio.to_thread(self.db.devices.seen, device, revision=since)
        _LOGGER.info("%s: channel open at revision %d (head %d)", device, since, self.head)
        try:
            await channel.run()
        finally:
            if self.channels.get(device) is channel:
                del self.channels[device]
                pusher = self.pushers.get(device)
                if pusher is not None:  # inbound pushes take over from where the channel was
                    pusher[0].revision = max(pusher[0].revision, channel.revision)
                    pusher[0].wake.set()
            _LOGGER.info("%s: channel closed at revision %d", device, channel.revision)
        return ws

    async def _snapshot(self, request: web.Request) -> web.Response:
        device, body = await self._device(request)
        fields = protocol.fields(body, "snapshot request")
        revision = fields.integer("revision", optional=True)
        raw_cursor = fields.map.get("cursor")
        cursor = None if raw_cursor is None else protocol.snapshot_cursor(raw_cursor, "cursor")
        limit = min(
            fields.integer("limit", 1, SNAPSHOT_LIMIT, optional=True) or SNAPSHOT_LIMIT,
            SNAPSHOT_LIMIT,
        )

        def route() -> tuple[int, str | None]:
            # The first chunk pins the revision; later chunks may show newer state, which
            # is harmless: the edge then pulls every change after the pinned revision, and
            # applying a change twice leaves the same state.
            pinned = self.db.log.head() if revision is None else revision
            if cursor is None and self.db.devices.must_bootstrap(device):
                self.db.devices.bootstrapped(device)  # a moved device starts over
            return pinned, self.db.devices.venue(device)

        pinned, venue = await asyncio.to_thread(route)
        started = time.monotonic()
        changes, next_cursor = await self._snapshot_part(device, cursor, limit, venue)
        queried = time.monotonic()
        if next_cursor is not None:  # read while the edge verifies and writes this one
            self._read_ahead(device, next_cursor, limit, venue)

        def seal() -> bytes:
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
                venue=venue,
            )

        answer = await asyncio.to_thread(seal)
        _LOGGER.debug(
            "%s: snapshot chunk from %s: %d items, %d bytes, query %.0f ms, seal %.0f ms",
            device, cursor[0] if cursor else "the start", changes.count, len(answer),
            (queried - started) * 1000, (time.monotonic() - queried) * 1000,
        )  # fmt: skip
        self._venues.pop(device, None)
        return web.Response(body=answer, headers=protocol.HEADERS)

    async def _snapshot_part(
        self, device: str, cursor: tuple[str, Any] | None, limit: int, venue: str | None
    ) -> tuple[protocol.PackedChanges, tuple[str, Any] | None]:
        """A snapshot part: the one read ahead for this request if there is one, else read
        now."""
        ahead = self._ahead.pop(device, None)
        if ahead is not None and ahead.key == _part_key(cursor, limit, venue):
            with contextlib.suppress(*self.db.connection.errors):  # failed: read it again
                return await ahead.part
        elif ahead is not None:
            ahead.part.cancel()
        return await asyncio.to_thread(self.db.log.snapshot_part, cursor, limit, venue)

    def _read_ahead(
        self, device: str, cursor: tuple[str, Any], limit: int, venue: str | None
    ) -> None:
        """Start reading the part of a device's snapshot it will most likely ask for next, so
        the database works while the edge verifies and writes the part it got. At most
        READ_AHEAD_DEVICES parts are held; one not asked for in READ_AHEAD_SECONDS goes."""
        now = time.monotonic()
        for name, held in list(self._ahead.items()):
            if now - held.at > READ_AHEAD_SECONDS:
                held.part.cancel()
                del self._ahead[name]
        if len(self._ahead) >= READ_AHEAD_DEVICES:
            return
        part = asyncio.ensure_future(
            asyncio.to_thread(self.db.log.snapshot_part, cursor, limit, venue)
        )
        part.add_done_callback(_retrieve)  # an abandoned read's failure is nobody's to report
        self._ahead[device] = _Ahead(_part_key(cursor, limit, venue), part, now)

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


def _venue(route: tuple[str | None, bool]) -> str | None:
    venue, must_bootstrap = route
    return _MOVED if must_bootstrap else venue


async def serve(db: CentralDB, address: str, port: int, ready: Callable[[str], None]) -> None:
    """Run the central system until cancelled; `ready` gets its base URL."""
    central = Central(db)
    runner = http.runner(central.app())
    await runner.setup()
    http.GUARD.allow(MAX_CONNECTIONS)
    try:
        await http.listen(runner, address, port)
        host, bound = runner.addresses[0][:2]
        ready(f"http://{f'[{host}]' if ':' in host else host}:{bound}")
        await asyncio.get_running_loop().create_future()
    finally:
        await runner.cleanup()
