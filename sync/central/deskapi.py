"""The reference central system's counter operations: device-signed desk requests.

Every operation but the lookup carries the desk's idempotency key: the first request does
it, a repeat (a lost answer, a queue sent again after a restart) gets the first answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from sync import protocol
from sync.central.desk import MAX_KEY_LENGTH, IssueRequest, PassDesk, Person

TEXT_LIMIT = 200
CODE_LIMIT = 200


Authenticate = Callable[[web.Request], Awaitable[tuple[str, bytes]]]


class DeskAPI:
    """Routes under /v1/desk, served from `desk`.

    `authenticate` checks a request's device signature and returns (device, body); `moved`
    is called after an operation that may have moved the head (not after a repeat).
    """

    def __init__(
        self, desk: PassDesk, *, authenticate: Authenticate, moved: Callable[[], None]
    ) -> None:
        self._desk = desk
        self._authenticate = authenticate
        self._moved = moved

    def add_routes(self, app: web.Application) -> None:
        """Register the desk endpoints."""
        app.router.add_post("/v1/desk/lookup", self._lookup)
        app.router.add_post("/v1/desk/issue", self._issue)
        app.router.add_post("/v1/desk/extend", self._extend)
        app.router.add_post("/v1/desk/replace", self._replace)
        app.router.add_post("/v1/desk/cancel", self._cancel)

    def _done(self, answer: Mapping[str, object]) -> web.Response:
        if not answer.get("duplicate"):
            self._moved()
        return web.Response(body=protocol.pack(answer), headers=protocol.HEADERS)

    async def _lookup(self, request: web.Request) -> web.Response:
        _, body = await self._authenticate(request)
        fields = protocol.fields(body, "desk lookup")
        code = fields.text("code", optional=True, limit=CODE_LIMIT)
        number = fields.integer("number", optional=True)
        answer = await asyncio.to_thread(self._desk.lookup, code, number)
        return web.Response(body=protocol.pack(answer), headers=protocol.HEADERS)

    async def _issue(self, request: web.Request) -> web.Response:
        device, body = await self._authenticate(request)
        fields = protocol.fields(body, "desk issue")
        holder = Person(
            fields.text("surname", limit=TEXT_LIMIT),
            fields.text("first_name", limit=TEXT_LIMIT),
            fields.text("address", limit=TEXT_LIMIT),
        )
        issue = IssueRequest(
            voucher=fields.text("voucher", limit=CODE_LIMIT),
            holder=holder,
            valid_from=fields.integer("valid_from"),
            shipping=fields.text("shipping", limit=20),
            card_code=fields.text("card_code", limit=CODE_LIMIT),
            nfc_uid=fields.text("nfc_uid", optional=True, limit=CODE_LIMIT),
        )
        key = fields.text("key", limit=MAX_KEY_LENGTH)
        return self._done(await asyncio.to_thread(self._desk.issue, device, key, issue))

    async def _extend(self, request: web.Request) -> web.Response:
        device, body = await self._authenticate(request)
        fields = protocol.fields(body, "desk extend")
        key, cid = fields.text("key", limit=MAX_KEY_LENGTH), fields.integer("credential")
        return self._done(await asyncio.to_thread(self._desk.extend, device, key, cid))

    async def _replace(self, request: web.Request) -> web.Response:
        device, body = await self._authenticate(request)
        fields = protocol.fields(body, "desk replace")
        key, cid = fields.text("key", limit=MAX_KEY_LENGTH), fields.integer("credential")
        card = fields.text("card_code", limit=CODE_LIMIT)
        chip = fields.text("nfc_uid", optional=True, limit=CODE_LIMIT)
        answer = await asyncio.to_thread(self._desk.replace, device, key, cid, card, chip)
        return self._done(answer)

    async def _cancel(self, request: web.Request) -> web.Response:
        device, body = await self._authenticate(request)
        fields = protocol.fields(body, "desk cancel")
        key, cid = fields.text("key", limit=MAX_KEY_LENGTH), fields.integer("credential")
        return self._done(await asyncio.to_thread(self._desk.cancel, device, key, cid))
