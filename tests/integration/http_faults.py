"""An HTTP proxy on 127.0.0.1 in front of a real server that fails chosen requests on purpose.

Requests whose path matches go through a script of faults, one per request, then pass:

- ``500``: answered "500 database is locked" without forwarding (the server never saw it);
- ``500-after``: forwarded, the server's answer is replaced by a 500 (it did the work);
- ``cut``: not forwarded, the connection is closed without an answer;
- ``cut-after``: forwarded, then the connection is closed without an answer.

Every other request is forwarded as it is. It runs on the test's event loop.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

import aiohttp
from aiohttp import web

FAULTS = ("500", "500-after", "cut", "cut-after")
_HOP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class HttpFaults:
    """Forwards to `target` (http://host:port); `script` faults for paths containing `match`."""

    def __init__(self, target: str, *, match: str, script: Iterable[str] = ()) -> None:
        self.target = target.rstrip("/")
        self.match = match
        self.script: collections.deque[str] = collections.deque(script)
        self.counts: collections.Counter[str] = collections.Counter()
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> str:
        """Listen on a free port; returns the proxy's URL."""
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        """Close the listener and the upstream session."""
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.Response:
        if self._session is None:
            raise RuntimeError("the proxy is not started")
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        async with self._session.request(
            request.method,
            f"{self.target}{request.path_qs}",
            data=body,
            headers=headers,
            allow_redirects=False,
        ) as upstream:
            raw = await upstream.read()
            kept = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS}
            return web.Response(status=upstream.status, body=raw, headers=kept)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        fault = "pass"
        if self.match in request.path and self.script:
            fault = self.script.popleft()
        self.counts[fault] += 1
        if fault == "500":
            return web.Response(status=500, text="database is locked")
        if fault == "cut":
            return self._cut(request)
        response = await self._forward(request)
        if fault == "500-after":
            return web.Response(status=500, text="database is locked")
        if fault == "cut-after":
            return self._cut(request)
        return response

    @staticmethod
    def _cut(request: web.Request) -> web.StreamResponse:
        if request.transport is not None:
            request.transport.abort()
        # Nothing reaches the client: its connection is gone before any byte of this.
        return web.Response(status=204)
