"""Handheld scanners over the network: an app posts each code and gets the decision back.

Each handheld scanner is its own small HTTP server on its own configured address and port,
feeding a lane of its own (whose actuator is usually `none`). The app sends

    POST /scan
    Authorization: Bearer <token>
    Content-Type: application/json

    {"code": "EDGE:..."}

and receives `{"admitted": true, "outcome": "admit-entry", "text": "Welcome"}` once the lane
has decided, journaled and actuated. 401 without the right token, 400 for a malformed body,
413 for an oversized one, 503 when the lane is too busy to answer in time.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from drivers.protocols import MAX_SCAN_BYTES, DeviceState, Outcome, ScanEvent
from edge.core.errors import ScannerError
from edge.core.tables import check_listener
from edge.web import http

_LOGGER = logging.getLogger(__name__)

REPLY_TIMEOUT_SECONDS = 5.0  # a lane answers in milliseconds; this long means it is stuck
MAX_BODY_BYTES = MAX_SCAN_BYTES + 256
PENDING_MAX = 16  # scans waiting for the lane; a handheld sends one at a time
MIN_TOKEN_CHARS = 24


@dataclass(frozen=True, slots=True)
class HandheldSettings:
    """Configuration of a handheld endpoint."""

    token: str  # shared secret the app sends as "Authorization: Bearer <token>"
    address: str = "127.0.0.1"  # 0.0.0.0 or a venue-network address for real handhelds
    port: int = 9110  # each handheld endpoint needs its own port; 0 picks one (tests)

    def __post_init__(self) -> None:
        if len(self.token) < MIN_TOKEN_CHARS or not self.token.isascii() or " " in self.token:
            raise ValueError(
                f"token must be at least {MIN_TOKEN_CHARS} ASCII characters without spaces "
                "(e.g. from `openssl rand -base64 32`)"
            )
        check_listener(self.address, self.port)


class HandheldScanner:
    """A ScanSource whose scans come from HTTP requests and whose replies answer them."""

    def __init__(self, name: str, settings: HandheldSettings) -> None:
        self.name = name
        self.settings = settings
        self._token = f"Bearer {settings.token}".encode()
        self._queue: asyncio.Queue[ScanEvent | None] = asyncio.Queue(PENDING_MAX)
        self._runner: web.AppRunner | None = None
        self.url: str | None = None  # where it listens, once it does
        self.state = DeviceState.ABSENT
        self.ready = asyncio.Event()

    async def _start(self) -> None:
        app = http.application(max_body=MAX_BODY_BYTES)
        app.router.add_post("/scan", self._scan)
        runner = http.runner(app)
        await runner.setup()
        try:
            await http.listen(runner, self.settings.address, self.settings.port)
        except OSError as err:
            await runner.cleanup()
            self.state = DeviceState.FAILED
            raise ScannerError(
                f"cannot listen on {self.settings.address} port {self.settings.port}: "
                f"{err.strerror}",
                device=self.name,
            ) from err
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}/scan"
        self.state = DeviceState.READY
        self.ready.set()
        _LOGGER.info("%s: handheld endpoint on %s", self.name, self.url)

    async def scans(self) -> AsyncIterator[ScanEvent]:
        """Serve the endpoint and yield each posted code until close()."""
        if self._runner is None:
            await self._start()
        while (scan := await self._queue.get()) is not None:
            yield scan

    async def _scan(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(header, self._token):
            return _error(401, "missing or wrong token", headers={"WWW-Authenticate": "Bearer"})
        document = http.json_document(await request.read())  # the limits answer BodyError
        if not isinstance(document, dict) or set(document) != {"code"}:
            return _error(400, 'body must be exactly {"code": "..."}')
        code = document["code"]
        if not isinstance(code, str) or not code or len(code) > MAX_SCAN_BYTES:
            return _error(400, f"code must be a string of 1..{MAX_SCAN_BYTES} characters")
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[tuple[Outcome, str]] = loop.create_future()

        def reply(outcome: Outcome, text: str) -> None:
            if not answer.done():
                answer.set_result((outcome, text))

        scan = ScanEvent(self.name, code.encode("utf-8"), time.monotonic(), reply)
        try:
            self._queue.put_nowait(scan)
        except asyncio.QueueFull:
            return _error(503, "the lane is busy; try again")
        try:
            outcome, text = await asyncio.wait_for(answer, REPLY_TIMEOUT_SECONDS)
        except TimeoutError:
            return _error(503, "the lane did not answer in time; try again")
        return web.json_response(
            {"admitted": outcome is not Outcome.REJECT, "outcome": outcome.value, "text": text}
        )

    async def close(self) -> None:
        """Stop serving; a pending `scans()` iteration ends."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self.ready.clear()
        self.state = DeviceState.ABSENT
        while True:
            try:
                self._queue.put_nowait(None)
                break
            except asyncio.QueueFull:
                self._queue.get_nowait()  # its request was cancelled with the server


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)
