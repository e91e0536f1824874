"""The central system's fan-out to many channels, on both backends: notices say what changed,
and a connection that stops reading holds nobody else up."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st
from pgcluster import Cluster

from sync import protocol
from sync.central.connection import UNKNOWN, Notice
from sync.central.db import CentralDB
from sync.central.postgres import notice_payload, parse_notice
from sync.central.server import serve
from sync.protocol import EnvelopeKind

WAIT = 10.0


@given(st.one_of(st.none(), st.integers(0, 2**63 - 1)), st.booleans())
def test_a_notice_survives_its_notify_payload(head: int | None, devices: bool) -> None:
    notice = Notice(head, devices=devices)
    expected = notice if head is not None or devices else UNKNOWN
    assert parse_notice(notice_payload(notice)) == expected


@pytest.mark.parametrize("payload", ["", "head=", "head=-1", "head=1 x", "devices=1", "head=1e3"])
def test_a_payload_it_cannot_read_means_anything_may_have_changed(payload: str) -> None:
    assert parse_notice(payload) == UNKNOWN


def test_merged_notices_keep_the_newest_head_and_any_unknown() -> None:
    log_5, log_3, log_7 = (Notice(head, devices=False) for head in (5, 3, 7))
    assert log_5.merge(log_3) == log_5
    assert log_5.merge(UNKNOWN) == UNKNOWN
    assert Notice(5, devices=True).merge(log_7) == Notice(7, devices=True)


@asynccontextmanager
async def _server(target: str) -> AsyncIterator[str]:
    """`serve` on its own connection to `target`, as a separate process would be."""
    db = CentralDB(target)
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(db, "127.0.0.1", 0, ready.set_result))
    try:
        yield await ready
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        db.close()


def _signed(identity: Ed25519PrivateKey, device: str, method: str, path: str,
            body: bytes = b"") -> dict[str, str]:  # fmt: skip
    return protocol.sign_request(
        identity, device, method=method, path=path, time_ms=int(time.time() * 1000), body=body
    )


def _stuck_channel(
    url: str, identity: Ed25519PrivateKey, device: str
) -> tuple[socket.socket, bytes]:
    """A channel whose handshake completes and which then never reads nor answers: what the
    server sends stays in the kernel's buffers. Returns it and what followed the handshake."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    sock = socket.create_connection((parts.hostname, parts.port), timeout=WAIT)
    path = protocol.channel_path(0)
    headers = {
        "Host": parts.netloc,
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
        **_signed(identity, device, "GET", path),
    }
    request = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock.sendall(request.encode() + b"\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(4096)
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock, rest


def _opcodes(data: bytes) -> list[int]:
    """The opcodes of the (unmasked, server-sent) WebSocket frames in `data` (RFC 6455 5.2)."""
    found = []
    while len(data) >= 2:
        size, at = data[1] & 0x7F, 2
        if size == 126:
            size, at = int.from_bytes(data[2:4]), 4
        elif size == 127:
            size, at = int.from_bytes(data[2:10]), 10
        found.append(data[0] & 0x0F)
        data = data[at + size :]
    return found


def _drain(sock: socket.socket) -> tuple[bytes, bool]:
    """What the peer has sent so far, without waiting, and whether it closed the connection."""
    sock.settimeout(0.0)
    received = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := sock.recv(1 << 16):
            received += chunk
        return received, True
    return received, False


async def test_a_channel_that_stops_reading_holds_up_no_other(central_target: str) -> None:
    db = CentralDB(central_target)
    try:
        db.keys.add()
        trusted = {k: (public, retired) for k, public, retired in db.keys.public_keys()}
        identities = {f"gate-{i}": Ed25519PrivateKey.generate() for i in range(6)}
        for name, identity in identities.items():
            db.devices.add(name, protocol.public_bytes(identity))
        product = db.catalogue.add_product("Ticket")
        _, (sold,) = db.sales.sell(product)
        head = db.log.head()
        async with _server(central_target) as url, aiohttp.ClientSession() as session:
            # Opened first, so the server's sends reach it before the others.
            stuck, received = await asyncio.to_thread(
                _stuck_channel, url, identities.pop("gate-0"), "gate-0"
            )
            channels = []
            for name, identity in identities.items():
                path = protocol.channel_path(head)
                headers = _signed(identity, name, "GET", path)
                channels.append(await session.ws_connect(url + path, headers=headers))
            db.workflows.revoke_code(sold.code)
            for ws in channels:
                message = await asyncio.wait_for(ws.receive(), WAIT)
                envelope = protocol.open_envelope(message.data, trusted.get,
                                                  kinds=(EnvelopeKind.CHANGES,))  # fmt: skip
                assert (envelope.first, envelope.last) == (head, head + 1)
            # Every other channel got the revocation before the server gave up on the stuck
            # one: it holds its envelope, unanswered, and no close frame yet.
            more, closed = _drain(stuck)
            assert (_opcodes(received + more), closed) == ([0x2], False)  # the envelope only
            stuck.close()
            for ws in channels:
                await ws.close()
    finally:
        db.close()


async def test_a_removed_gate_is_closed_and_a_re_added_one_served_again(
    central_target: str,
) -> None:
    """Device changes reach the server as notices: it reads every device again, once."""
    db = CentralDB(central_target)
    identity = Ed25519PrivateKey.generate()
    try:
        db.keys.add()
        db.devices.add("gate-1", protocol.public_bytes(identity))
        product = db.catalogue.add_product("Ticket")
        async with _server(central_target) as url, aiohttp.ClientSession() as session:
            ws = await _channel_or_status(session, url, identity)
            assert isinstance(ws, aiohttp.ClientWebSocketResponse), ws
            message = await asyncio.wait_for(ws.receive(), WAIT)
            await ws.send_bytes(protocol.push_answer(db.log.head(), "applied"))
            assert message.type is aiohttp.WSMsgType.BINARY
            db.devices.remove("gate-1")
            db.sales.sell(product)  # the head moves: the channel looks again
            assert (await asyncio.wait_for(ws.receive(), WAIT)).type is aiohttp.WSMsgType.CLOSE
            assert ws.close_code == protocol.CloseCode.REMOVED
            db.devices.add("gate-1", protocol.public_bytes(identity))
            deadline = time.monotonic() + WAIT
            while (again := await _channel_or_status(session, url, identity)) == 403:
                assert time.monotonic() < deadline, "the re-added gate is still refused"
                await asyncio.sleep(0.05)
            assert isinstance(again, aiohttp.ClientWebSocketResponse), again
            assert (await asyncio.wait_for(again.receive(), WAIT)).type is aiohttp.WSMsgType.BINARY
            await again.close()
    finally:
        db.close()


async def _channel_or_status(
    session: aiohttp.ClientSession, url: str, identity: Ed25519PrivateKey
) -> aiohttp.ClientWebSocketResponse | int:
    path = protocol.channel_path(0)
    try:
        return await session.ws_connect(
            url + path, headers=_signed(identity, "gate-1", "GET", path)
        )
    except aiohttp.WSServerHandshakeError as err:
        return err.status


@pytest.fixture
def postgres_target(postgres: Cluster) -> str:
    """A new database on the session's PostgreSQL."""
    return postgres.database()


async def test_a_moved_gate_bootstrapped_through_one_server_is_served_by_the_other(
    postgres_target: str,
) -> None:
    """Bootstrapping again is a device change every server hears of, not only the one that
    served the snapshot."""
    target = postgres_target
    db = CentralDB(target)
    identity = Ed25519PrivateKey.generate()
    try:
        db.keys.add()
        db.devices.add("gate-1", protocol.public_bytes(identity))
        path = protocol.channel_path(0)
        async with (
            _server(target) as a,
            _server(target) as b,
            aiohttp.ClientSession() as session,
        ):
            db.devices.move("gate-1", "hall")
            async with session.get(a + path, headers=_signed(identity, "gate-1", "GET", path)) as r:
                assert r.status == 409  # server A now holds gate-1 as moved
            body = protocol.pack({})
            headers = _signed(identity, "gate-1", "POST", "/v1/snapshot", body)
            async with session.post(b + "/v1/snapshot", data=body, headers=headers) as r:
                assert r.status == 200
            deadline = time.monotonic() + WAIT
            while (ws := await _channel_or_status(session, a, identity)) == 409:
                assert time.monotonic() < deadline, "server A still refuses the gate"
                await asyncio.sleep(0.05)
            assert isinstance(ws, aiohttp.ClientWebSocketResponse), ws
            assert (await asyncio.wait_for(ws.receive(), WAIT)).type is aiohttp.WSMsgType.BINARY
            await ws.close()
    finally:
        db.close()
