"""The counter's local device API for web applications, and the operator pages it serves.

Browsers reach the counter's printers and scanners through it, the way local hardware bridges
work: print jobs by template, printer status, scanner events over a WebSocket, and the pass
desk (edge/counter/desk.py). Every /api call needs the token from the token file, sent as
`Authorization: Bearer TOKEN` (the WebSocket sends it as its first message: browsers cannot
set headers on one); a token in a URL is refused. A request whose Host is not this device
(DNS rebinding) or whose Origin is neither the pages' own nor in `allowed_origins` is refused
before anything else happens. docs/security.md has the threat model.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import secrets
import stat
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from drivers.protocols import ScanSource
from edge.core.codes import scan_text
from edge.core.errors import CodeError, ConfigError, PrinterError
from edge.counter.desk import Desk, DeskError, IssueForm
from edge.counter.pages import desk_page, status_page
from edge.counter.printqueue import JobRecord, PrintJob, PrintQueue
from edge.counter.settings import CounterConfig
from edge.store.database import Store
from edge.web import http

_LOGGER = logging.getLogger(__name__)

MAX_BODY = 1 << 20  # a print job's fields are a few kB
TOKEN_BYTES = 32
MIN_TOKEN_CHARS = 20
AUTH_TIMEOUT = 5.0  # seconds a WebSocket has to send its token
STATUS_TIMEOUT = 2.0  # seconds for a printer to answer a status request
SCAN_BACKLOG = 100  # scans buffered per WebSocket client before the oldest are dropped
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
WS_CLOSE_UNAUTHORIZED = 4401
SHUTDOWN_TIMEOUT = 2.0  # seconds open requests get when the daemon stops

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def load_token(path: Path) -> str:
    """The API token: created (mode 0600) on first use; a file others can read is refused."""
    if not path.exists():
        token = secrets.token_urlsafe(TOKEN_BYTES)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it just now: read theirs
        except OSError as err:
            raise ConfigError(
                f"cannot create the API token file {path}: {err.strerror}; point "
                "token_file at a writable place such as /var/lib/edge/api.token",
                key="counter.token_file",
            ) from err
        else:
            with os.fdopen(fd, "w") as file:
                file.write(token + "\n")
            _LOGGER.info("created the API token file %s", path)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read the API token: {err}", key="counter.token_file") from err
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{path} is readable by other users (mode {stat.S_IMODE(mode):o}); "
            f"run `chmod 600 {path}`",
            key="counter.token_file",
        )
    if len(text) < MIN_TOKEN_CHARS or not text.isprintable():
        raise ConfigError(
            f"{path} must hold a token of at least {MIN_TOKEN_CHARS} characters; "
            "delete it to have a new one created",
            key="counter.token_file",
        )
    return text


@dataclass(frozen=True, slots=True)
class ScanMessage:
    """One scan as the WebSocket sends it."""

    scanner: str
    code: str
    at: str  # ISO time, UTC

    def to_json(self) -> str:
        """The message text."""
        return json.dumps(
            {"type": "scan", "scanner": self.scanner, "code": self.code, "at": self.at}
        )


class ScanHub:
    """Fans the counter's scans out to every connected WebSocket."""

    def __init__(self) -> None:
        self._clients: set[asyncio.Queue[ScanMessage]] = set()
        self.last: dict[str, float] = {}  # scanner -> unix time of its last scan

    def subscribe(self) -> asyncio.Queue[ScanMessage]:
        """A queue that receives every scan from now on."""
        queue: asyncio.Queue[ScanMessage] = asyncio.Queue(SCAN_BACKLOG)
        self._clients.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[ScanMessage]) -> None:
        """Stop delivering to `queue`."""
        self._clients.discard(queue)

    def publish(self, message: ScanMessage) -> None:
        """Deliver to every client; a client too slow to keep up loses its oldest scan."""
        for queue in self._clients:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(message)

    async def feed(self, source: ScanSource) -> None:
        """Publish every scan of `source` until it ends."""
        async for event in source.scans():
            try:
                code = scan_text(event.data)
            except CodeError as err:
                _LOGGER.info("%s: unreadable scan ignored: %s", source.name, err)
                continue
            now = time.time()
            self.last[source.name] = now
            self.publish(
                ScanMessage(source.name, code, datetime.fromtimestamp(now, UTC).isoformat())
            )


def _error(status: int, message: str, field: str | None = None) -> web.Response:
    return web.json_response({"error": message, "field": field}, status=status)


def _desk_error(err: DeskError, language: str) -> web.Response:
    """A desk error in the device's language: the whole message, a headline and the detail
    apart (for the desk's result banner), the form field at fault and the catalogue key (for
    web apps that show their own texts)."""
    return web.json_response(
        {
            "error": err.text(language),
            "title": err.title(language),
            "detail": err.detail,
            "field": err.field,
            "key": err.key,
        },
        status=422,
    )


def _job(record: JobRecord) -> dict[str, Any]:
    return {
        "job_id": record.job_id,
        "printer": record.printer,
        "template": record.template,
        "state": record.state.value,
        "attempts": record.attempts,
        "error": record.error,
        "duplicate": record.duplicate,
    }


class DeviceAPI:
    """The HTTP server of [counter]: the /api endpoints and the operator pages."""

    def __init__(
        self,
        settings: CounterConfig,
        token: str,
        *,
        queue: PrintQueue,
        desk: Desk | None,
        scanners: Mapping[str, ScanSource],
        status: Callable[[], dict[str, Any]],
        language: str = "en",
        zone: str = "UTC",
        token_path: str = "",
    ) -> None:
        self._settings = settings
        self._token = token.encode()
        self._queue = queue
        self.desk = desk
        self.hub = ScanHub()
        self._scanners = dict(scanners)
        self._status = status
        self._language = language
        where = token_path or settings.token_file
        self._pages = {
            "status": status_page(language, zone, where),
            "desk": desk_page(
                language,
                zone,
                where,
                ticket=desk is not None and desk.prints_tickets,
                terms=desk is not None and desk.prints_terms,
            ),
        }
        self._hosts = LOCAL_HOSTS | {h.lower() for h in settings.allowed_hosts}
        self._origins = frozenset(o.rstrip("/").lower() for o in settings.allowed_origins)
        self.url: str | None = None
        self._sockets: set[web.WebSocketResponse] = set()

    # -- serving -----------------------------------------------------------------------------

    def app(self) -> web.Application:
        """The application: pages, then /api/v1 routes behind the checks."""
        app = http.application(max_body=MAX_BODY, errors=_error, middlewares=(self._guard,))
        app.router.add_get("/", self._page_status)
        app.router.add_get("/status", self._page_status)
        app.router.add_get("/desk", self._page_desk)
        app.router.add_get("/api/v1/status", self._api_status)
        app.router.add_get("/api/v1/printers", self._printers)
        app.router.add_post("/api/v1/print", self._print)
        app.router.add_get("/api/v1/print/{job_id}", self._print_job)
        app.router.add_get("/api/v1/scans", self._scans)
        app.router.add_post("/api/v1/desk/lookup", self._desk_lookup)
        app.router.add_post("/api/v1/desk/issue", self._desk_issue)
        app.router.add_post("/api/v1/desk/extend", self._desk_extend)
        app.router.add_post("/api/v1/desk/replace", self._desk_replace)
        app.router.add_post("/api/v1/desk/cancel", self._desk_cancel)
        app.router.add_post("/api/v1/desk/ticket", self._desk_ticket)
        app.router.add_post("/api/v1/desk/terms", self._desk_terms)
        app.on_shutdown.append(self._close_sockets)
        return app

    async def _close_sockets(self, app: web.Application) -> None:
        """Close open WebSockets on shutdown, so stopping never waits for a browser."""
        del app
        for socket in list(self._sockets):
            await socket.close(code=WSCloseCode.GOING_AWAY, message=b"the edge is stopping")

    async def run(self, started: asyncio.Event | None = None) -> None:
        """Serve until cancelled, feeding the scanners it owns into the WebSocket hub."""
        runner = http.runner(self.app(), shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        try:
            await http.listen(runner, self._settings.address, self._settings.port)
            host, port = runner.addresses[0][:2]
            self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
            _LOGGER.info("device API and pages on %s", self.url)
            if started is not None:
                started.set()
            async with asyncio.TaskGroup() as group:
                for source in self._scanners.values():
                    group.create_task(self.hub.feed(source))
                group.create_task(asyncio.Event().wait())  # until cancelled
        finally:
            await runner.cleanup()

    # -- the checks every request passes -----------------------------------------------------

    def _host_allowed(self, request: web.Request) -> bool:
        host = (request.host or "").lower()
        if host.startswith("["):
            name = host[: host.find("]") + 1]
        else:
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        bound = self._settings.address
        return name in self._hosts or (name == bound and bound not in ("0.0.0.0", "::"))  # noqa: S104

    def _origin_allowed(self, request: web.Request, origin: str) -> bool:
        own = f"{request.scheme}://{request.host}".lower()
        return origin.lower() in (own, *self._origins)

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self._host_allowed(request):
            return _error(421, f"Host {request.host!r} is not this device (DNS rebinding?)")
        origin = request.headers.get("Origin")
        if origin is not None and not self._origin_allowed(request, origin):
            return _error(403, f"origin {origin} is not in [counter] allowed_origins")
        cors = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if origin else {}
        if request.method == "OPTIONS":
            return web.Response(
                status=204,
                headers={
                    **cors,
                    "Access-Control-Allow-Methods": "GET, POST",
                    "Access-Control-Allow-Headers": "Authorization, Content-Type",
                    "Access-Control-Max-Age": "600",
                },
            )
        if request.path.startswith("/api/"):
            if any(k.lower() in ("token", "access_token") for k in request.query):
                return _error(400, "never put the token in a URL; send it in Authorization")
            if request.path != "/api/v1/scans" and not self._authorized(
                request.headers.get("Authorization", "")
            ):
                response: web.StreamResponse = _error(401, "missing or wrong API token")
                response.headers.update(cors)
                return response
        try:
            response = await handler(request)
        except DeskError as err:
            response = _desk_error(err, self._language)
        except PrinterError as err:
            response = _error(422, str(err))
        except http.BodyError as err:
            response = _error(err.status, err.message)
        if not response.prepared:
            response.headers.update(cors)
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    def _authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        return scheme == "Bearer" and hmac.compare_digest(token.strip().encode(), self._token)

    @staticmethod
    async def _json(request: web.Request) -> dict[str, Any]:
        return http.json_object(await request.read())

    # -- pages -------------------------------------------------------------------------------

    async def _page_status(self, request: web.Request) -> web.Response:
        del request
        return web.Response(text=self._pages["status"], content_type="text/html")

    async def _page_desk(self, request: web.Request) -> web.Response:
        del request
        return web.Response(text=self._pages["desk"], content_type="text/html")

    # -- device endpoints --------------------------------------------------------------------

    async def _api_status(self, request: web.Request) -> web.Response:
        del request
        status = self._status()
        status["scanners"] = [
            {"name": name, "last_scan": self.hub.last.get(name)} for name in self._scanners
        ]
        if self.desk is not None:
            status["queues"]["desk"] = self.desk.counts()
            status["desk_operations"] = self.desk.operations(10)
        return web.json_response(status)

    async def _printers(self, request: web.Request) -> web.Response:
        del request
        pending = self._queue.pending()
        out = []
        for name, printer in self._queue.printers.items():
            try:
                state = (await asyncio.wait_for(printer.status(), STATUS_TIMEOUT)).value
            except (OSError, TimeoutError) as err:
                state = f"offline ({err or 'no answer'})"
            out.append(
                {
                    "name": name,
                    "kind": printer.kind,
                    "state": state,
                    "paused": self._queue.paused.get(name),
                    "pending": pending.get(name, 0),
                }
            )
        return web.json_response({"printers": out})

    async def _print(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        fields = body.get("fields", {})
        job_id, template = body.get("job_id"), body.get("template")
        printer = body.get("printer")
        if not isinstance(job_id, str) or not isinstance(template, str):
            return _error(400, "job_id and template are required strings")
        if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
            return _error(400, "fields must be an object of strings")
        if printer is not None and not isinstance(printer, str):
            return _error(400, "printer must be a string")
        record = await self._queue.submit(PrintJob(job_id, template, fields, printer=printer))
        return web.json_response(_job(record), status=200 if record.duplicate else 202)

    async def _print_job(self, request: web.Request) -> web.Response:
        record = self._queue.job(request.match_info["job_id"])
        if record is None:
            return _error(404, "no such job")
        return web.json_response(_job(record))

    async def _scans(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(heartbeat=30)
        await socket.prepare(request)
        try:
            async with asyncio.timeout(AUTH_TIMEOUT):
                first = await socket.receive()
        except TimeoutError:
            first = None
        token = ""
        if first is not None and first.type is WSMsgType.TEXT:
            with contextlib.suppress(json.JSONDecodeError, AttributeError):
                token = str(json.loads(first.data).get("token", ""))
        if not self._authorized(f"Bearer {token}"):
            await socket.close(code=WS_CLOSE_UNAUTHORIZED, message=b"missing or wrong API token")
            return socket
        queue = self.hub.subscribe()
        self._sockets.add(socket)
        await socket.send_str(json.dumps({"type": "ready", "scanners": list(self._scanners)}))
        reader = asyncio.ensure_future(socket.receive())
        try:
            while not socket.closed:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    await socket.send_str(getter.result().to_json())
                else:
                    getter.cancel()
                    if reader.result().type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR):
                        break
                    reader = asyncio.ensure_future(socket.receive())
        finally:
            reader.cancel()
            self._sockets.discard(socket)
            self.hub.unsubscribe(queue)
            await socket.close()
        return socket

    # -- the pass desk -----------------------------------------------------------------------

    def _the_desk(self) -> Desk:
        if self.desk is None:
            raise DeskError("no_desk")
        return self.desk

    @staticmethod
    def _credential(body: Mapping[str, Any]) -> int:
        value = body.get("credential")
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise DeskError("pass_number", field="credential")
        return value

    async def _desk_lookup(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        code, number = body.get("code"), body.get("number")
        if number is not None:
            return web.json_response(
                await self._the_desk().lookup(None, self._credential({"credential": number}))
            )
        if not isinstance(code, str):
            raise DeskError("scan_or_number", field="code")
        return web.json_response(await self._the_desk().lookup(code))

    async def _desk_issue(self, request: web.Request) -> web.Response:
        form = IssueForm.parse(await self._json(request))
        return web.json_response(await self._the_desk().issue(form))

    async def _desk_extend(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        code = body.get("code")
        if code is not None and not isinstance(code, str):
            raise DeskError("scan_pass", field="code")
        answer = await self._the_desk().extend(self._credential(body), code or None)
        return web.json_response(answer)

    async def _desk_replace(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        return web.json_response(await self._the_desk().replace(self._credential(body)))

    async def _desk_cancel(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        return web.json_response(await self._the_desk().cancel(self._credential(body)))

    async def _desk_ticket(self, request: web.Request) -> web.Response:
        code = (await self._json(request)).get("code")
        if not isinstance(code, str):
            raise DeskError("scan_or_number", field="code")
        return web.json_response(await self._the_desk().print_ticket(code), status=202)

    async def _desk_terms(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        key = body.get("key")
        if key is not None and not isinstance(key, str):
            raise DeskError("bad_request", detail="key must be text")
        return web.json_response(await self._the_desk().print_terms(key), status=202)


def device_status(
    device: str, store: Store, sync: Mapping[str, object] | None, queue: PrintQueue
) -> dict[str, Any]:
    """What the status page shows: sync (as the sync client reports it), queues, decisions."""
    decisions = [
        {
            "seq": row.seq,
            "at": row.entry.at.isoformat(),
            "lane": row.entry.lane,
            "direction": row.entry.direction.value,
            "reason": row.entry.reason.value,
            "code": row.entry.code_hint,
        }
        for row in store.recent(10)
    ]
    return {
        "device": device,
        "sync": sync,
        "queues": {"journal": store.seen_backlog(), "print": queue.pending()},
        "decisions": decisions,
    }
