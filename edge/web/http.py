"""The limits every HTTP server of the project shares (docs/security.md, "Limits").

Pushes, handheld scanners, /health and /metrics, the counter's device API and the reference
central system build their application with `application()` and listen with `listen()`:

- a connection has `HEADER_TIMEOUT` seconds to deliver a request's line and headers (from
  connecting, or from the end of its previous answer) and `BODY_TIMEOUT` seconds for the
  body; a client sending a header line now and then is cut;
- the process keeps at most `connection_cap()` connections open, well below its file
  descriptor limit; at the cap a new connection closes the oldest one that is not inside a
  request, so slow clients cannot lock genuine ones out;
- running out of descriptors anyway (accept() failing with EMFILE) logs one line a minute,
  not a traceback per attempt;
- a body is read (bounded, timed) before any handler runs; bodies that are too large, too
  slow or malformed are answered 413/408/400 with an error body and never reach a handler.

`json_document` and `json_object` parse JSON bodies strictly: UTF-8, nesting at most
`MAX_JSON_DEPTH`, no lone surrogates, no NaN or Infinity.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from edge.core.errors import EdgeError

_LOGGER = logging.getLogger(__name__)

HEADER_TIMEOUT = 10.0  # seconds for a request's line and headers
BODY_TIMEOUT = 10.0  # seconds for its body, once the headers are in
MAX_CONNECTIONS = 512  # open connections per process, every server together
MIN_FD_RESERVE = 64  # descriptors always left for the store, devices and outgoing sync
FD_RESERVE_SHARE = 4  # ... or a quarter of the limit, whichever is more
BACKLOG = 1024  # pending connections the kernel queues: a full queue drops SYNs (1 s retry)
MAX_JSON_DEPTH = 32  # nesting of arrays and objects in a JSON body
CLOSE_GRACE = 1.0  # seconds to deliver a 408/413 answer before the connection is cut
LOG_INTERVAL = 60.0  # seconds between two log lines about the same overload
ACCEPT_OUT_OF_RESOURCES = "socket.accept() out of system resource"  # asyncio's message

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ErrorBody = Callable[[int, str], web.Response]


class BodyError(EdgeError, ValueError):
    """A request body that is malformed (400), too large (413) or too slow (408)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# -- bodies ------------------------------------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise BodyError(f"the body is not JSON: {name} is not a number JSON allows")


def json_document(raw: bytes) -> Any:
    """The JSON value of a body, or BodyError saying what is wrong with it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BodyError(f"the body is not UTF-8 (byte {err.start})") from None
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise BodyError(f"the body nests deeper than {MAX_JSON_DEPTH} levels") from None
    except json.JSONDecodeError as err:
        raise BodyError(f"the body is not JSON: {err.msg} at character {err.pos}") from None
    except ValueError as err:  # an integer of more than 4300 digits
        raise BodyError(f"the body is not JSON: {str(err)[:100]}") from None
    _check_json(value)
    return value


def _check_json(value: Any) -> None:
    """Depth and text checks without recursion: a hostile document cannot exhaust the stack."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, list | dict):
            if depth >= MAX_JSON_DEPTH:
                raise BodyError(f"the body nests deeper than {MAX_JSON_DEPTH} levels")
            if isinstance(item, dict):
                for key in item:
                    _check_text(key)
                pending.extend((v, depth + 1) for v in item.values())
            else:
                pending.extend((v, depth + 1) for v in item)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise BodyError(
            f"the body holds a lone surrogate (\\u{ord(text[err.start]):04x}), which is not text"
        ) from None


def json_object(raw: bytes) -> dict[str, Any]:
    """The JSON object of a body, or BodyError."""
    value = json_document(raw)
    if not isinstance(value, dict):
        raise BodyError(f"the body must be a JSON object, not {type(value).__name__}")
    return value


def json_error(status: int, message: str) -> web.Response:
    """The default error answer: {"error": message}."""
    return web.json_response({"error": message}, status=status)


# -- connections -------------------------------------------------------------------------------


def connection_cap(soft_limit: int, ceiling: int = MAX_CONNECTIONS) -> int:
    """How many connections a process with this descriptor limit keeps open at most."""
    reserve = max(MIN_FD_RESERVE, soft_limit // FD_RESERVE_SHARE)
    return max(1, min(ceiling, soft_limit - reserve))


class _RateLimitedLog:
    """One line per LOG_INTERVAL for a repeating condition, with how often it happened."""

    def __init__(self, message: str, level: int = logging.WARNING) -> None:
        self._message = message + " (%d times in the last %.0f s)"
        self._level = level
        self._last = -LOG_INTERVAL
        self._count = 0

    def hit(self, *args: object) -> None:
        self._count += 1
        now = time.monotonic()
        if now - self._last >= LOG_INTERVAL:
            elapsed = min(now - self._last, LOG_INTERVAL)
            _LOGGER.log(self._level, self._message, *args, self._count, elapsed)
            self._last, self._count = now, 0


@dataclass(eq=False, slots=True)
class _Connection:
    transport: asyncio.Transport
    busy: int = 0  # requests inside a handler (0 or 1: HTTP/1.1 answers in order)
    timer: asyncio.TimerHandle | None = field(default=None)


class ConnectionGuard:
    """Every open connection of the process: the cap, the header timeout, eviction."""

    def __init__(self, cap: int | None = None) -> None:
        self._cap = cap
        self._open: dict[asyncio.Transport, _Connection] = {}  # oldest first
        self._full = _RateLimitedLog("HTTP: %d connections open, closing the oldest idle ones")
        self.timeouts = 0  # connections cut for slow headers
        self.evicted = 0  # idle connections closed to make room

    @property
    def cap(self) -> int:
        """The connection cap (from RLIMIT_NOFILE unless set)."""
        if self._cap is None:
            self._cap = connection_cap(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        return self._cap

    def __len__(self) -> int:
        return len(self._open)

    def allow(self, ceiling: int) -> None:
        """Raise the cap up to `ceiling`, within the descriptor limit (a server whose clients
        each hold a long-lived connection: the central system's push channels)."""
        self._cap = connection_cap(resource.getrlimit(resource.RLIMIT_NOFILE)[0], ceiling)

    def opened(self, transport: asyncio.Transport) -> bool:
        """Admit a new connection, making room if needed; False: it was closed."""
        while len(self._open) >= self.cap:
            idle = next((c for c in self._open.values() if not c.busy), None)
            self._full.hit(len(self._open))
            if idle is None:
                transport.abort()
                return False
            self._drop(idle)
            self.evicted += 1
        conn = _Connection(transport)
        self._open[transport] = conn
        self._arm(conn)
        return True

    def closed(self, transport: asyncio.Transport) -> None:
        """Forget a connection that ended."""
        conn = self._open.pop(transport, None)
        if conn is not None and conn.timer is not None:
            conn.timer.cancel()

    def started(self, transport: asyncio.Transport | None) -> None:
        """A request's headers are in: its handler runs without the header timeout."""
        conn = self._open.get(transport) if transport is not None else None
        if conn is not None:
            conn.busy += 1
            if conn.timer is not None:
                conn.timer.cancel()
                conn.timer = None

    def finished(self, transport: asyncio.Transport | None, *, closing: bool = False) -> None:
        """A request was answered: the next one's headers are timed again.

        `closing`: the body was not read to its end, so nothing more is read from this
        connection; it is cut after CLOSE_GRACE instead of lingering for the rest of it.
        """
        conn = self._open.get(transport) if transport is not None else None
        if conn is not None:
            conn.busy = max(0, conn.busy - 1)
            if not conn.busy:
                self._arm(conn, CLOSE_GRACE if closing else None)

    def _arm(self, conn: _Connection, seconds: float | None = None) -> None:
        if conn.timer is not None:
            conn.timer.cancel()
        loop = asyncio.get_running_loop()
        delay = HEADER_TIMEOUT if seconds is None else seconds
        conn.timer = loop.call_later(delay, self._expire, conn)

    def _expire(self, conn: _Connection) -> None:
        if not conn.busy and self._open.get(conn.transport) is conn:
            self.timeouts += 1
            self._drop(conn)

    def _drop(self, conn: _Connection) -> None:
        self.closed(conn.transport)
        conn.transport.abort()


GUARD = ConnectionGuard()  # one per process: the descriptor limit is the process's


class _GuardedProtocol(asyncio.Protocol):
    """aiohttp's protocol behind the guard: refused connections never reach it."""

    def __init__(self, inner: asyncio.Protocol, guard: ConnectionGuard) -> None:
        self._inner = inner
        self._guard = guard
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        if self._guard.opened(transport):
            self._transport = transport
            self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._transport is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._transport is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._guard.closed(self._transport)
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._inner.resume_writing()


class GuardedSite(web.TCPSite):
    """A TCP site whose connections pass the process's ConnectionGuard."""

    async def start(self) -> None:
        """Listen (the same as TCPSite.start, with each connection behind the guard)."""
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        _quiet_accept_errors(loop)
        server = self._runner.server
        if server is None:
            raise RuntimeError("the runner is not set up")
        self._server = await loop.create_server(
            lambda: _GuardedProtocol(server(), GUARD),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port


async def listen(runner: web.AppRunner, address: str | None, port: int) -> web.TCPSite:
    """Start serving `runner` on address:port behind the limits; OSError if it cannot bind."""
    site = GuardedSite(runner, address, port, backlog=BACKLOG)
    await site.start()
    return site


def _quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Log running out of descriptors in accept() once a minute instead of each retry."""
    previous = loop.get_exception_handler()
    if getattr(previous, "edge_accept_guard", False):
        return
    log = _RateLimitedLog("HTTP: cannot accept connections: %s; retrying every second")

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == ACCEPT_OUT_OF_RESOURCES:
            log.hit(context.get("exception"))
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    handler.edge_accept_guard = True  # type: ignore[attr-defined]
    loop.set_exception_handler(handler)


class _ServerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server log: a client's malformed request is a rate-limited line, not a traceback.

    Anything else (a bug in a handler) keeps its traceback.
    """

    def __init__(self) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self._malformed = _RateLimitedLog("HTTP: refused a malformed request: %s", logging.INFO)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        """Log, with a malformed request's exception reduced to its message."""
        exc = kwargs.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            self._malformed.hit(exc.message)
            return
        super().log(level, msg, *args, **kwargs)


SERVER_LOG = _ServerLog()


def runner(app: web.Application, **kwargs: Any) -> web.AppRunner:
    """The runner for an application from `application()`: no access log, quiet client errors."""
    return web.AppRunner(app, access_log=None, logger=SERVER_LOG, **kwargs)


# -- the application ---------------------------------------------------------------------------


def application(
    *, max_body: int, errors: ErrorBody = json_error, middlewares: tuple[Any, ...] = ()
) -> web.Application:
    """An aiohttp application whose requests pass the limits before its own middlewares."""
    return web.Application(
        client_max_size=max_body, middlewares=[_limits(errors, max_body), *middlewares]
    )


def _limits(errors: ErrorBody, max_body: int) -> Any:
    @web.middleware
    async def limits(request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        GUARD.started(transport)
        refused: web.Response | None = None
        try:
            if request.body_exists:
                try:
                    async with asyncio.timeout(BODY_TIMEOUT):
                        await request.read()
                except TimeoutError:
                    slow = f"the body did not arrive within {BODY_TIMEOUT:g} s"
                    refused = errors(408, slow)
                except web.HTTPRequestEntityTooLarge:
                    large = f"the body is too large: more than {max_body} bytes"
                    refused = errors(413, large)
            if refused is not None:
                refused.force_close()
                return refused
            try:
                return await handler(request)
            except BodyError as err:
                return errors(err.status, err.message)
        finally:
            GUARD.finished(transport, closing=refused is not None)

    return limits
