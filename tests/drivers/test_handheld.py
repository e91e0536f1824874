"""drivers.scanners.handheld: a handheld app's HTTP endpoint as a lane, over loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import KEY_ID, PRIVATE, mint_code, public_bytes, ticket

from drivers.gates.null import NullActuator, NullActuatorSettings
from drivers.scanners.handheld import HandheldScanner, HandheldSettings
from edge.config import parse
from edge.core.decide import GateRules
from edge.core.errors import ScannerError
from edge.core.facts import Direction
from edge.daemon import serve
from edge.gate.gate import Gate
from edge.gate.lane import Lane
from edge.store.database import Store

TOKEN = "k3Jx9-handheld-test-token-0123456789"


@pytest.fixture
async def endpoint(store: Store) -> AsyncIterator[tuple[HandheldScanner, Lane]]:
    scanner = HandheldScanner("handheld-1", HandheldSettings(token=TOKEN, port=0))
    lane = Lane(
        rules=GateRules("Handheld 1"),
        gate=Gate(store),
        actuator=NullActuator("none", NullActuatorSettings()),
        sources=[(scanner, Direction.ENTRY)],
        repeat_window=0.0,
    )
    running = asyncio.create_task(lane.run())
    await scanner.ready.wait()
    yield scanner, lane
    await scanner.close()
    await running


async def post(url: str, body: bytes, token: str | None = TOKEN) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as r,
    ):
        return r.status, await r.json()


async def test_posted_code_gets_the_decision(endpoint: tuple[HandheldScanner, Lane]) -> None:
    scanner, _ = endpoint
    assert scanner.url is not None
    code = mint_code(ticket(5001))
    status, answer = await post(scanner.url, json.dumps({"code": code}).encode())
    assert (status, answer["admitted"], answer["outcome"]) == (200, True, "admit-entry")
    status, answer = await post(scanner.url, json.dumps({"code": code}).encode())
    assert (status, answer["admitted"], answer["outcome"]) == (200, False, "reject")
    assert answer["text"]  # what the handheld shows: "already used ..."


@pytest.mark.parametrize(
    ("body", "token", "status", "error"),
    [
        (b'{"code": "X"}', None, 401, "token"),
        (b'{"code": "X"}', "wrong-token-wrong-token-wrong", 401, "token"),
        (b"not json", TOKEN, 400, "JSON"),
        (b'{"code": 5}', TOKEN, 400, "code must be a string"),
        (b'{"code": "X", "more": 1}', TOKEN, 400, "exactly"),
        (b'["X"]', TOKEN, 400, "exactly"),
        (b'{"code": "' + b"X" * 10_000 + b'"}', TOKEN, 413, "too large"),
    ],
)
async def test_bad_requests_change_nothing(
    endpoint: tuple[HandheldScanner, Lane],
    store: Store,
    body: bytes,
    token: str | None,
    status: int,
    error: str,
) -> None:
    scanner, _ = endpoint
    assert scanner.url is not None
    got, answer = await post(scanner.url, body, token)
    assert got == status
    assert error in answer["error"]
    assert store.recent(10) == []  # nothing was journaled


async def test_port_in_use_is_a_scanner_error() -> None:
    first = HandheldScanner("a", HandheldSettings(token=TOKEN, port=0))
    scans = first.scans()
    pending = asyncio.ensure_future(anext(scans, None))
    await first.ready.wait()
    assert first.url is not None
    port = int(first.url.rsplit(":", 1)[1].split("/")[0])
    second = HandheldScanner("b", HandheldSettings(token=TOKEN, port=port))
    with pytest.raises(ScannerError, match=r"cannot listen on 127\.0\.0\.1 port"):
        await anext(second.scans())
    await first.close()
    assert await pending is None  # closing ends the iteration


def test_settings() -> None:
    with pytest.raises(ValueError, match="token must be at least 24"):
        HandheldSettings(token="short")
    with pytest.raises(ValueError, match="address must be an IP address"):
        HandheldSettings(token=TOKEN, address="localhost")


async def test_handheld_lane_from_configuration(tmp_path: Path) -> None:
    """The daemon builds a handheld lane from its configuration; the app gets decisions."""
    port = _free_port()
    config = parse(
        f"""
[device]
name = "gate"
store = "{tmp_path / "edge.db"}"

[[keys]]
id = {KEY_ID}
public = "{base64.b64encode(public_bytes(PRIVATE)).decode()}"

[[scanners]]
name = "handheld-1"
type = "handheld"
token = "{TOKEN}"
port = {port}

[[actuators]]
name = "handheld-1"
type = "none"

[[lanes]]
name = "Handheld 1"
actuator = "handheld-1"
entry = ["handheld-1"]

[metrics]
enabled = false
""",
        tmp_path / "gate.toml",
    )
    stop = asyncio.Event()
    daemon = asyncio.create_task(serve(config, stop=stop))
    url = f"http://127.0.0.1:{port}/scan"
    body = json.dumps({"code": mint_code(ticket(6001))}).encode()
    try:
        for _ in range(200):  # until the daemon listens
            try:
                status, answer = await post(url, body)
                break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
        else:
            pytest.fail("the handheld lane never listened (10 s)")
        assert status == 200
        assert answer["admitted"]
    finally:
        stop.set()
        await daemon


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
