"""The central system's side of the push channel, against a real server on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync import protocol
from sync.central.db import CentralDB
from sync.central.server import serve
from sync.client.settings import SyncConfig
from sync.protocol import CloseCode, EnvelopeKind

WAIT = 10.0


class _Central:
    def __init__(self, db: CentralDB, url: str, identity: Ed25519PrivateKey) -> None:
        self.db, self.url, self.identity = db, url, identity

    def headers(self, path: str, device: str = "gate-1") -> dict[str, str]:
        return protocol.sign_request(
            self.identity, device, method="GET", path=path,
            time_ms=int(time.time() * 1000), body=b"",
        )  # fmt: skip


@pytest.fixture
async def central(tmp_path: Path) -> AsyncIterator[_Central]:
    db = CentralDB(tmp_path / "central.db")
    db.keys.add()
    identity = Ed25519PrivateKey.generate()
    db.devices.add("gate-1", protocol.public_bytes(identity))
    # The server has its own connection, as in production: it notices the commits made
    # through `db` by polling, like those of the admin CLI.
    served = CentralDB(tmp_path / "central.db")
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(serve(served, "127.0.0.1", 0, ready.set_result))
    try:
        yield _Central(db, await ready, identity)
    finally:
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server
        served.close()
        db.close()


async def _open(
    central: _Central, session: aiohttp.ClientSession, revision: int = 0, device: str = "gate-1"
) -> aiohttp.ClientWebSocketResponse:
    path = protocol.channel_path(revision)
    return await session.ws_connect(central.url + path, headers=central.headers(path, device))


async def _next(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    return await asyncio.wait_for(ws.receive(), WAIT)


async def test_the_channel_sends_what_the_edge_lacks_and_follows_its_answers(
    central: _Central,
) -> None:
    db = central.db
    product = db.catalogue.add_product("Ticket")
    _, sold = db.sales.sell(product, count=2)
    head = db.log.head()
    trusted = {k: public for k, public, _ in db.keys.public_keys()}
    async with aiohttp.ClientSession() as session, await _open(central, session) as ws:
        first = protocol.open_envelope((await _next(ws)).data, trusted.get,
                                       limit=protocol.MAX_PUSH_BYTES)  # fmt: skip
        assert (first.kind, first.first, first.last) == (EnvelopeKind.CHANGES, 0, head)
        await ws.send_bytes(protocol.push_answer(head, "applied"))
        db.workflows.revoke_code(sold[0].code)  # committed by "another process": the poll
        second = protocol.open_envelope((await _next(ws)).data, trusted.get)
        assert (second.first, second.last) == (head, head + 1)
        # A gap answer: nothing more until the head moves, then from the reported revision.
        await ws.send_bytes(protocol.push_answer(1, "gap"))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.receive(), 0.3)
        db.workflows.revoke_code(sold[1].code)
        third = protocol.open_envelope((await _next(ws)).data, trusted.get)
        assert (third.first, third.last) == (1, head + 2)


@pytest.mark.parametrize(
    ("device", "signed", "revision", "status"),
    [
        ("gate-1", False, 0, 401),
        ("stranger", True, 0, 403),
        ("gate-1", True, 10**6, 409),
    ],
)
async def test_the_handshake_is_a_signed_request(
    central: _Central, device: str, signed: bool, revision: int, status: int
) -> None:
    path = protocol.channel_path(revision)
    headers = central.headers(path, device)
    if not signed:
        headers[protocol.SIGNATURE_HEADER] = headers[protocol.SIGNATURE_HEADER][::-1]
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(central.url + path, headers=headers)
    assert refused.value.status == status


@pytest.mark.parametrize(
    ("frame", "code"),
    [(b"\xc1 not msgpack", CloseCode.REFUSED), ("text", CloseCode.UNSUPPORTED)],
)
async def test_a_bad_answer_closes_the_channel(
    central: _Central, frame: bytes | str, code: CloseCode
) -> None:
    async with aiohttp.ClientSession() as session, await _open(central, session) as ws:
        await _next(ws)  # the keys
        if isinstance(frame, str):
            await ws.send_str(frame)
        else:
            await ws.send_bytes(frame)
        message = await _next(ws)
        assert (message.type, ws.close_code) == (aiohttp.WSMsgType.CLOSE, code)


async def test_a_newer_channel_replaces_the_older_and_a_removed_device_is_closed(
    central: _Central,
) -> None:
    async with aiohttp.ClientSession() as session:
        old = await _open(central, session)
        await _next(old)
        new = await _open(central, session)
        assert (await _next(old)).type is aiohttp.WSMsgType.CLOSE
        assert old.close_code == CloseCode.REPLACED
        message = await _next(new)
        await new.send_bytes(protocol.push_answer(central.db.log.head(), "applied"))
        assert message.type is aiohttp.WSMsgType.BINARY
        central.db.devices.remove("gate-1")
        product = central.db.catalogue.add_product("Ticket")
        central.db.sales.sell(product)  # the head moves: the channel looks again
        assert (await _next(new)).type is aiohttp.WSMsgType.CLOSE
        assert new.close_code == CloseCode.REMOVED


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"proxy": "socks5://p:1"}, "proxy must be an http"),
        ({"ca_file": "/etc/ca.pem"}, "url is not https"),
        ({"keepalive_seconds": 0.0}, "keepalive_seconds must be"),
    ],
)
def test_channel_settings_are_checked(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SyncConfig(url="http://central:8400", **fields)  # type: ignore[arg-type]
