"""The counter's local device API: each attack of docs/security.md is refused, and the
WebSocket carries a real scanner's reads (a `lines` scanner on a FIFO) to a client with the
token."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import aiohttp
import pytest

from drivers.scanners.lines import LineScanner, LineScannerSettings
from edge.config import parse
from edge.core.decide import Reason
from edge.core.errors import ConfigError
from edge.core.facts import Direction
from edge.counter.deviceapi import DeviceAPI, device_status, load_token
from edge.counter.printqueue import PrintQueue
from edge.counter.settings import CounterConfig
from edge.store.database import Store
from edge.store.gate import JournalEntry

APP = "https://tickets.example.org"


class Running(NamedTuple):
    """A device API serving on 127.0.0.1, its token, its scanner's FIFO and its store."""

    server: DeviceAPI
    token: str
    fifo: Path
    store: Store
    task: asyncio.Task[None]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Running]:
    store = await Store.open(tmp_path / "edge.db")
    queue = PrintQueue(store, {}, {})
    fifo = tmp_path / "scans"
    os.mkfifo(fifo)
    scanner = LineScanner("desk-scanner", LineScannerSettings(path=str(fifo)))
    settings = CounterConfig(port=0, allowed_origins=(APP,))
    token = load_token(tmp_path / "api.token")
    api = DeviceAPI(
        settings,
        token,
        queue=queue,
        desk=None,
        scanners={"desk-scanner": scanner},
        status=lambda: device_status("desk-1", store, None, queue),
    )
    started = asyncio.Event()
    task = asyncio.create_task(api.run(started))
    await started.wait()
    try:
        yield Running(api, token, fifo, store, task)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await scanner.close()
        await store.close()


async def get(url: str, **headers: str) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status, dict(response.headers), await response.text()


async def test_every_call_needs_the_token_in_a_header(api: Running) -> None:
    server, token = api.server, api.token
    url = f"{server.url}/api/v1/status"
    assert (await get(url))[0] == 401
    assert (await get(url, Authorization="Bearer wrong-token-of-some-length"))[0] == 401
    status, _, body = await get(f"{url}?token={token}")
    assert status == 400
    assert "never put the token in a URL" in body
    status, _, body = await get(url, Authorization=f"Bearer {token}")
    assert status == 200
    assert json.loads(body)["device"] == "desk-1"


async def test_the_status_shows_the_last_decisions(api: Running) -> None:
    server, token, store = api.server, api.token, api.store
    entry = JournalEntry(
        datetime.now(UTC),
        "north-1",
        Direction.ENTRY,
        Reason.REPLACED,
        7,
        b"\x01" * 16,
        "EDGE:…WXYZ",
    )
    await store.record(entry)
    status, _, body = await get(f"{server.url}/api/v1/status", Authorization=f"Bearer {token}")
    assert status == 200
    (decision,) = json.loads(body)["decisions"]
    assert (decision["lane"], decision["reason"], decision["code"]) == (
        "north-1",
        "replaced",
        "EDGE:…WXYZ",
    )


async def test_a_rebound_host_name_is_refused(api: Running) -> None:
    server, token = api.server, api.token
    status, _, body = await get(
        f"{server.url}/api/v1/status", Host="evil.example", Authorization=f"Bearer {token}"
    )
    assert status == 421
    assert "DNS rebinding" in body
    assert (await get(f"{server.url}/desk", Host="evil.example"))[0] == 421


async def test_only_allowed_origins_get_cors(api: Running) -> None:
    server, token = api.server, api.token
    url = f"{server.url}/api/v1/status"
    status, headers, _ = await get(
        url, Origin="https://evil.example", Authorization=f"Bearer {token}"
    )
    assert status == 403
    assert "Access-Control-Allow-Origin" not in headers
    status, headers, _ = await get(url, Origin=APP, Authorization=f"Bearer {token}")
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == APP
    assert "Access-Control-Allow-Credentials" not in headers
    async with (
        aiohttp.ClientSession() as session,
        session.options(
            url, headers={"Origin": APP, "Access-Control-Request-Headers": "authorization"}
        ) as response,
    ):
        assert response.status == 204
        assert "Authorization" in response.headers["Access-Control-Allow-Headers"]


async def test_scans_reach_a_websocket_with_the_token(api: Running) -> None:
    server, token, fifo = api.server, api.token, api.fifo
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{server.url}/api/v1/scans") as socket:
            await socket.send_str(json.dumps({"token": "wrong-token-of-some-length"}))
            await socket.receive()
            assert socket.close_code == 4401
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(
                f"{server.url}/api/v1/scans", headers={"Origin": "https://evil.example"}
            )
        assert refused.value.status == 403
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{server.url}/api/v1/scans") as socket,
    ):
        await socket.send_str(json.dumps({"token": token}))
        ready = await socket.receive_json(timeout=10)
        assert ready == {"type": "ready", "scanners": ["desk-scanner"]}
        writer = await asyncio.to_thread(os.open, fifo, os.O_WRONLY)
        try:
            os.write(writer, b"EDGE:VOUCHER1\n")
            scan = await socket.receive_json(timeout=10)
        finally:
            os.close(writer)
    assert (scan["type"], scan["scanner"], scan["code"]) == (
        "scan",
        "desk-scanner",
        "EDGE:VOUCHER1",
    )


def test_the_token_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "api.token"
    token = load_token(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(token) >= 40
    assert load_token(path) == token
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_token(path)
    with pytest.raises(ConfigError, match="cannot create the API token file"):
        load_token(tmp_path / "missing-directory" / "api.token")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('allowed_origins = ["https://a.example/path"]', "scheme and host, no path"),
        ('address = "localhost"', "must be an IP address"),
        ('card_template = "nope"', "is not a card template"),
        ("port = 70000", "port must be 0..65535"),
        ('nfc_reader = "nfc"', "'nfc' is not a \\[\\[scanners\\]\\] entry of type \"pcsc\""),
        (
            'nfc_reader = "nfc"\n[[scanners]]\nname = "nfc"\ntype = "lines"\npath = "-"',
            "is not a \\[\\[scanners\\]\\] entry",
        ),
        (
            (
                'nfc_reader = "nfc"\n[[scanners]]\nname = "nfc"\ntype = "pcsc"\n'
                '[[actuators]]\nname = "a"\ntype = "console"\n'
                '[[lanes]]\nname = "l"\nactuator = "a"\nentry = ["nfc"]'
            ),
            "feeds a lane",
        ),
        ('nfc_reader = "nfc"\n[[scanners]]\nname = "nfc"\ntype = "pcsc"', None),
        ('[[scanners]]\nname = "n"\ntype = "pcsc"\ntimeout_seconds = 0', "timeout_seconds"),
    ],
)
def test_counter_configuration_errors(tmp_path: Path, section: str, message: str | None) -> None:
    text = f'[device]\nname = "desk"\n[counter]\n{section}\n'
    if message is None:  # the valid case beside the invalid ones
        assert parse(text, tmp_path / "edge.toml").counter is not None
        return
    with pytest.raises(ConfigError, match=message):
        parse(text, tmp_path / "edge.toml")


async def test_stopping_does_not_wait_for_an_open_websocket(api: Running) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{api.server.url}/api/v1/scans") as socket,
    ):
        await socket.send_str(json.dumps({"token": api.token}))
        assert (await socket.receive_json(timeout=10))["type"] == "ready"
        api.task.cancel()
        async with asyncio.timeout(10):  # aiohttp's default would be 60 s
            with pytest.raises(asyncio.CancelledError):
                await api.task
        closing = await socket.receive(timeout=10)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


def test_every_counter_key_is_documented() -> None:
    readme = (Path(__file__).parents[2] / "config" / "README.md").read_text("utf-8")
    section = readme.split("## `[counter]`", 1)[1].split("\n## ", 1)[0]
    for field in dataclasses.fields(CounterConfig):
        assert f"| `{field.name}` |" in section, field.name
