"""edge.web.http: strict JSON bodies, and the connection limits against real sockets."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.web import http
from edge.web.http import BodyError, ConnectionGuard, connection_cap, json_document


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[" * 100_000, "nests deeper than 32"),
        (b"[" * 33 + b"]" * 33, "nests deeper than 32"),
        (b'"\\ud800"', "lone surrogate (\\ud800)"),
        (b'{"\\udfff": 1}', "lone surrogate (\\udfff)"),
        (b'"\xff"', "not UTF-8 (byte 1)"),
        (b"NaN", "NaN is not a number"),
        (b"[Infinity]", "Infinity is not a number"),
        (b"9" * 5000, "not JSON"),
        (b"", "not JSON"),
        (b'{"a": 1', "not JSON"),
    ],
)
def test_json_bodies_are_parsed_strictly(body: bytes, message: str) -> None:
    with pytest.raises(BodyError, match=re.escape(message)) as err:
        json_document(body)
    assert err.value.status == 400


def test_json_within_the_limits_parses() -> None:
    deepest = b"[" * 32 + b"]" * 32
    assert json_document(deepest) is not None
    assert json_document('{"name": "Zoë 🎟"}'.encode()) == {"name": "Zoë 🎟"}
    with pytest.raises(BodyError, match="must be a JSON object, not list"):
        http.json_object(b"[]")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=100).map(str.encode))
def test_any_bytes_give_a_value_or_a_body_error(body: bytes) -> None:
    try:
        value = json_document(body)
    except BodyError:
        return
    json.dumps(value).encode("utf-8")  # what is accepted can be stored and answered


def test_the_cap_stays_below_the_descriptor_limit() -> None:
    assert connection_cap(1024) == 512
    assert connection_cap(256) == 192
    assert connection_cap(8192) == 512
    assert connection_cap(32) == 1
    for limit in range(65, 5000, 7):
        assert connection_cap(limit) <= limit - 64


# -- real sockets ----------------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[tuple[int, ConnectionGuard]]:
    """An application behind the process's guard (reset for the test) on a free port."""
    app = http.application(max_body=1024)

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"got": len(await request.read())})

    app.router.add_post("/echo", echo)
    app.router.add_get("/health", echo)
    runner = http.runner(app)
    await runner.setup()
    await http.listen(runner, "127.0.0.1", 0)
    try:
        yield runner.addresses[0][1], http.GUARD
    finally:
        await runner.cleanup()


async def _answer(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def test_a_client_sending_headers_a_line_at_a_time_is_cut(
    server: tuple[int, ConnectionGuard], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, guard = server
    monkeypatch.setattr(http, "HEADER_TIMEOUT", 0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\n")
    started = asyncio.get_running_loop().time()
    cut = False
    for i in range(200):  # a line every 50 ms would keep it open for 10 s
        try:
            writer.write(f"X-Slow-{i}: 1\r\n".encode())
            await writer.drain()
            if await asyncio.wait_for(reader.read(1), 0.05) == b"":
                cut = True
                break
        except TimeoutError:
            continue
        except ConnectionError:
            cut = True
            break
    writer.close()
    took = asyncio.get_running_loop().time() - started
    print(f"slow header client cut after {took:.2f} s (timeout 0.3 s)")
    assert cut
    assert guard.timeouts >= 1


async def test_a_slow_body_is_answered_408(
    server: tuple[int, ConnectionGuard], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, _ = server
    monkeypatch.setattr(http, "BODY_TIMEOUT", 0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    answer = await asyncio.wait_for(reader.read(), 10)  # the answer, then the end
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"did not arrive within" in answer


async def test_at_the_cap_idle_connections_make_room_for_genuine_ones(
    server: tuple[int, ConnectionGuard], caplog: pytest.LogCaptureFixture
) -> None:
    port, guard = server
    caplog.set_level(logging.INFO)
    cap = 20
    guard._cap, saved = cap, guard._cap
    slow = []
    try:
        for _ in range(3 * cap):
            client = socket.create_connection(("127.0.0.1", port))
            client.sendall(b"GET /health HTTP/1.1\r\n")
            slow.append(client)
        await asyncio.sleep(0)  # the loop accepts them
        for _ in range(3):
            answer = await _answer(
                port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
        assert len(guard) <= cap
        assert guard.evicted >= 2 * cap
    finally:
        guard._cap = saved
        for client in slow:
            client.close()
    lines = [r for r in caplog.records if "connections open" in r.getMessage()]
    assert len(lines) == 1  # rate-limited: one line, not one per eviction
