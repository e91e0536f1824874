"""Every HTTP endpoint answers a malformed body with 400/413 and an error body, logs no
traceback and changes nothing: handheld /scan, the counter's device API, pushes and the
reference central system, each a real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import until
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivers.gates.null import NullActuator, NullActuatorSettings
from drivers.scanners.handheld import MAX_BODY_BYTES, HandheldScanner, HandheldSettings
from edge.core.decide import GateRules
from edge.core.facts import Direction
from edge.counter.deviceapi import MAX_BODY, DeviceAPI, device_status, load_token
from edge.counter.printqueue import PrintQueue
from edge.counter.settings import CounterConfig
from edge.gate.gate import Gate
from edge.gate.lane import Lane
from edge.store.database import Store
from sync import protocol
from sync.central.db import CentralDB
from sync.central.server import serve
from sync.client.replicator import Replicator
from sync.client.settings import SyncConfig
from sync.client.state import REVISION_CURSOR

TOKEN = "k3Jx9-handheld-test-token-0123456789"
DEVICE = Ed25519PrivateKey.from_private_bytes(bytes([9]) * 32)
DEEP = 2000  # past Python's recursion limit


@dataclass
class Servers:
    """Base URLs and what each must leave unchanged."""

    handheld: str
    api: str
    api_token: str
    push: str
    central: str
    store: Store
    db: CentralDB

    def state(self) -> tuple[object, ...]:
        return (
            self.store.stats(),
            self.store.recent(5),
            self.db.log.head(),
            self.db.journals.count(),
        )


@pytest.fixture
async def servers(store: Store, tmp_path: Path) -> AsyncIterator[Servers]:
    await store.set_cursor(REVISION_CURSOR, "0")
    handheld = HandheldScanner("handheld-1", HandheldSettings(token=TOKEN, port=0))
    lane = Lane(
        rules=GateRules("Handheld 1"),
        gate=Gate(store),
        actuator=NullActuator("none", NullActuatorSettings()),
        sources=[(handheld, Direction.ENTRY)],
        repeat_window=0.0,
    )
    queue = PrintQueue(store, {}, {})
    token = load_token(tmp_path / "api.token")
    api = DeviceAPI(CounterConfig(port=0), token, queue=queue, desk=None, scanners={},
                    status=lambda: device_status("desk-1", store, None, queue))  # fmt: skip
    replicator = Replicator(
        SyncConfig(url="http://127.0.0.1:9", push_port=0, timeout_seconds=0.5),
        store,
        device="gate-1",
        identity=Ed25519PrivateKey.generate(),
    )
    db = CentralDB(tmp_path / "central.db")
    db.devices.add("gate-1", protocol.public_bytes(DEVICE))
    central: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    api_started = asyncio.Event()
    tasks = [
        asyncio.create_task(lane.run()),
        asyncio.create_task(api.run(api_started)),
        asyncio.create_task(replicator.run()),
        asyncio.create_task(serve(db, "127.0.0.1", 0, central.set_result)),
    ]
    try:
        await handheld.ready.wait()
        await api_started.wait()
        await until(lambda: replicator.listening_url is not None, "the push server to listen")
        assert handheld.url
        assert api.url
        assert replicator.listening_url
        yield Servers(handheld.url, api.url, token, replicator.listening_url, await central,
                      store, db)  # fmt: skip
    finally:
        await handheld.close()
        for task in tasks[1:]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        db.close()


def _nested_json(depth: int) -> bytes:
    return b'{"code": ' + b"[" * depth + b"]" * depth + b"}"


JSON_BODIES: dict[str, bytes] = {
    "deeply nested": _nested_json(DEEP),
    "nested past the depth limit": _nested_json(40),
    "lone surrogate": b'{"code": "\\ud800", "job_id": "\\udfff", "template": "t"}',
    "surrogate in a key": b'{"\\ud800": 1}',
    "not UTF-8": b'{"code": "\xff\xfe"}',
    "NaN": b'{"code": NaN}',
    "huge integer": b'{"code": ' + b"9" * 4310 + b"}",
    "not an object": b'["code"]',
    "truncated": b'{"code": "EDGE:',
    "empty": b"",
}

JSON_ENDPOINTS: dict[str, Callable[[Servers], tuple[str, dict[str, str]]]] = {
    "handheld /scan": lambda s: (s.handheld, {"Authorization": f"Bearer {TOKEN}"}),
    "/api/v1/print": lambda s: (
        f"{s.api}/api/v1/print",
        {"Authorization": f"Bearer {s.api_token}"},
    ),
    "/api/v1/desk/lookup": lambda s: (
        f"{s.api}/api/v1/desk/lookup",
        {"Authorization": f"Bearer {s.api_token}"},
    ),
    "/api/v1/desk/issue": lambda s: (
        f"{s.api}/api/v1/desk/issue",
        {"Authorization": f"Bearer {s.api_token}"},
    ),
}


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        assert record.exc_info is None, f"{record.name}: {record.getMessage()}"
        assert record.levelno < logging.ERROR, f"{record.name}: {record.getMessage()}"


async def send(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as r,
    ):
        return r.status, await r.read(), r.headers.get("Content-Type", "")


@pytest.mark.parametrize("endpoint", sorted(JSON_ENDPOINTS))
async def test_json_endpoints_answer_malformed_bodies_with_400_and_a_json_error(
    servers: Servers, endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url, headers = JSON_ENDPOINTS[endpoint](servers)
    before = servers.state()
    for name, body in JSON_BODIES.items():
        status, answer, content_type = await send(url, body, headers)
        assert status == 400, (name, answer)
        assert content_type.startswith("application/json"), name
        assert json.loads(answer)["error"], name
    status, answer, _ = await send(url, b'{"code": "' + b"X" * MAX_BODY + b'"}', headers)
    assert status == 413
    assert "too large" in json.loads(answer)["error"]
    assert servers.state() == before
    no_tracebacks(caplog)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"code": ["EDGE:X"]}', "code must be a string"),
        (b'{"code": 5}', "code must be a string"),
        (b'{"code": null}', "code must be a string"),
        (b'{"code": ""}', "code must be a string"),
    ],
)
async def test_the_handheld_refuses_wrong_types(
    servers: Servers, body: bytes, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    before = servers.state()
    status, answer, _ = await send(servers.handheld, body, {"Authorization": f"Bearer {TOKEN}"})
    assert (status, json.loads(answer)["error"][: len(error)]) == (400, error)
    assert servers.state() == before
    no_tracebacks(caplog)


async def test_print_refuses_wrong_types(
    servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {"Authorization": f"Bearer {servers.api_token}"}
    before = servers.state()
    for body in (
        {"job_id": 1, "template": "t"},
        {"job_id": "j", "template": ["t"]},
        {"job_id": "j", "template": "t", "fields": {"a": 1}},
        {"job_id": "j", "template": "t", "fields": []},
        {"job_id": "j", "template": "t", "printer": 3},
    ):
        status, answer, _ = await send(f"{servers.api}/api/v1/print", json.dumps(body).encode(),
                                       headers)  # fmt: skip
        assert status == 400, body
        assert json.loads(answer)["error"]
    assert servers.state() == before
    no_tracebacks(caplog)


def _signed(path: str, body: bytes) -> dict[str, str]:
    now = int(datetime.now(UTC).timestamp() * 1000)
    return protocol.sign_request(DEVICE, "gate-1", method="POST", path=path, time_ms=now, body=body)


MSGPACK_BODIES: dict[str, bytes] = {
    "deeply nested": b"\x91" * DEEP + b"\xc0",
    "lone surrogate": b"\x81\xa4code\xa3\xed\xa0\x80",
    "not UTF-8": b"\x81\xa4code\xa2\xff\xfe",
    "wrong types": protocol.pack({"revision": "zero", "since": [1], "entries": {"a": 1}}),
    "not a map": protocol.pack([1, 2, 3]),
    "truncated": b"\x82\xa1a",
    "reserved byte": b"\xc1",
    "extension type": b"\xd4\x01\x00",
    "empty": b"",
}


@pytest.mark.parametrize("path", ["/v1/hello", "/v1/changes", "/v1/journal", "/v1/desk/lookup",
                                  "/v1/desk/issue", "/v1/snapshot"])  # fmt: skip
async def test_central_endpoints_answer_malformed_bodies_with_error_bodies(
    servers: Servers, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    before = servers.state()
    for name, body in MSGPACK_BODIES.items():
        status, answer, _ = await send(servers.central + path, body, _signed(path, body))
        assert status == 400, (name, answer)
        assert protocol.unpack(answer, "answer", 1 << 16)["error"] == "bad-request", name
    big = b"\x00" * (protocol.MAX_REQUEST_BYTES + 1)
    status, answer, _ = await send(servers.central + path, big, _signed(path, big))
    assert (status, protocol.unpack(answer, "answer", 1 << 16)["error"]) == (413, "too-large")
    assert servers.state() == before
    no_tracebacks(caplog)


async def test_pushes_answer_malformed_bodies_with_error_bodies(
    servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    before = servers.state()
    for name, body in MSGPACK_BODIES.items():
        status, answer, _ = await send(servers.push, body, {})
        assert status == 400, (name, answer)
        assert protocol.unpack(answer, "answer", 1 << 16)["error"] == "bad-request", name
    status, answer, _ = await send(servers.push, b"\x00" * (protocol.MAX_PUSH_BYTES + 1), {})
    assert (status, protocol.unpack(answer, "answer", 1 << 16)["error"]) == (413, "too-large")
    assert servers.state() == before
    no_tracebacks(caplog)


async def _raw(url: str, request: bytes) -> bytes:
    host, port = url.split("//")[1].split("/", maxsplit=1)[0].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


@pytest.mark.parametrize("server", ["handheld", "api", "push", "central"])
async def test_a_request_without_host_header_logs_no_traceback(
    servers: Servers, server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url: str = getattr(servers, server)
    path = "/" + url.split("//")[1].partition("/")[2]
    answer = await _raw(url, f"POST {path} HTTP/1.0\r\nContent-Length: 2\r\n\r\n{{}}".encode())
    assert answer.startswith(b"HTTP/1."), answer[:80]
    assert int(answer.split()[1]) in range(400, 500), answer[:200]
    for request in (
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET /api/v1/status HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET /status HTTP/1.1\r\nOrigin: http://127.0.0.1\r\nConnection: close\r\n\r\n",
        f"POST {path} HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}".encode(),
        b"GET / HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: [::1\r\nConnection: close\r\n\r\n",
    ):
        answer = await _raw(url, request)
        assert answer.startswith(b"HTTP/1."), (request, answer[:80])
    no_tracebacks(caplog)


def test_the_limits_hold_for_the_values_the_tests_send() -> None:
    """The bodies above are malformed for the reasons named, not merely too large."""
    sizes: dict[str, Any] = {n: len(b) for n, b in {**JSON_BODIES, **MSGPACK_BODIES}.items()}
    assert max(sizes.values()) <= MAX_BODY_BYTES  # the smallest body limit (handheld)
