"""Fuzzing every HTTP body: hostile bodies against the real servers on 127.0.0.1.

Handheld /scan, the counter's device API, the push endpoint and the reference central system
run on an event loop in a thread; hypothesis sends bodies over real sockets. Property: no
answer is a 5xx, every refusal carries an error body, and a refusal changes nothing.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fuzzing import TRIED, fuzz, report
from hypothesis import given
from hypothesis import strategies as st

from drivers.gates.null import NullActuator, NullActuatorSettings
from drivers.scanners.handheld import HandheldScanner, HandheldSettings
from edge.core.decide import GateRules
from edge.core.facts import Direction
from edge.counter.deviceapi import DeviceAPI, device_status, load_token
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
T = TypeVar("T")
# The push server's sync client retries its (absent) central system with random jitter on
# the servers' thread while hypothesis draws; that is not randomness inside a strategy.
pytestmark = pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
JSON_TARGET = "HTTP bodies: JSON endpoints (handheld, device API)"
MSGPACK_TARGET = "HTTP bodies: msgpack endpoints (push, central)"


@pytest.fixture(scope="module", autouse=True)
def _report(request: pytest.FixtureRequest) -> None:
    report(request.config)


class Servers:
    """The servers on a loop of their own thread; `call` runs a coroutine there."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.tasks: list[asyncio.Task[Any]] = []
        self.ports: dict[str, int] = {}
        self.api_token = ""

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    async def start(self) -> None:
        self.store = store = await Store.open(self.directory / "edge.db")
        await store.set_cursor(REVISION_CURSOR, "0")
        self.handheld = HandheldScanner("handheld-1", HandheldSettings(token=TOKEN, port=0))
        lane = Lane(
            rules=GateRules("Handheld 1"),
            gate=Gate(store),
            actuator=NullActuator("none", NullActuatorSettings()),
            sources=[(self.handheld, Direction.ENTRY)],
            repeat_window=0.0,
        )
        queue = PrintQueue(store, {}, {})
        self.api_token = load_token(self.directory / "api.token")
        api = DeviceAPI(
            CounterConfig(port=0),
            self.api_token,
            queue=queue,
            desk=None,
            scanners={},
            status=lambda: device_status("d", store, None, queue),
        )
        replicator = Replicator(
            SyncConfig(url="http://127.0.0.1:9", push_port=0, timeout_seconds=0.5),
            store,
            device="gate-1",
            identity=Ed25519PrivateKey.generate(),
        )
        self.db = CentralDB(self.directory / "central.db")
        self.db.devices.add("gate-1", protocol.public_bytes(DEVICE))
        central: asyncio.Future[str] = self.loop.create_future()
        api_started = asyncio.Event()
        self.tasks = [
            asyncio.create_task(lane.run()),
            asyncio.create_task(api.run(api_started)),
            asyncio.create_task(replicator.run()),
            asyncio.create_task(serve(self.db, "127.0.0.1", 0, central.set_result)),
        ]
        await self.handheld.ready.wait()
        await api_started.wait()
        while replicator.listening_url is None:  # noqa: ASYNC110 - no event for it
            await asyncio.sleep(0.01)
        for name, url in (
            ("handheld", self.handheld.url),
            ("api", api.url),
            ("push", replicator.listening_url),
            ("central", await central),
        ):
            assert url is not None
            self.ports[name] = int(url.split("//")[1].split("/")[0].rsplit(":", 1)[1])

    async def state(self) -> tuple[object, ...]:
        store, db = self.store, self.db
        return (
            store.stats(),
            store.recent(3),
            store.known_keys(),
            db.log.head(),
            db.journals.count(),
        )

    async def stop(self) -> None:
        await self.handheld.close()
        for task in self.tasks[1:]:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.store.close()
        self.db.close()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    running = Servers(tmp_path_factory.mktemp("fuzz-http"))
    running.call(running.start())
    try:
        yield running
    finally:
        running.call(running.stop())
        running.loop.call_soon_threadsafe(running.loop.stop)
        running.thread.join(10)


def post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=10,
)
JSON_FIELDS = st.dictionaries(
    st.sampled_from(
        [
            "code",
            "job_id",
            "template",
            "fields",
            "printer",
            "number",
            "voucher",
            "surname",
            "credential",
            "valid_from",
            "shipping",
        ]
    ),
    JSON_VALUES,
    max_size=5,
)
JSON_BODIES = (
    st.binary(max_size=300)
    | JSON_VALUES.map(lambda v: json.dumps(v).encode())
    | JSON_FIELDS.map(lambda v: json.dumps(v).encode())
    | st.text(max_size=60).map(lambda t: ('{"code": "' + t + '"}').encode("utf-8", "surrogatepass"))
)


@fuzz(400)
@given(
    endpoint=st.sampled_from(
        [
            "/scan",
            "/api/v1/print",
            "/api/v1/desk/lookup",
            "/api/v1/desk/issue",
            "/api/v1/desk/extend",
        ]
    ),
    body=JSON_BODIES,
)
def test_json_endpoints_never_fail_and_change_nothing_on_refusal(
    servers: Servers, endpoint: str, body: bytes
) -> None:
    TRIED[JSON_TARGET] += 1
    port = servers.ports["handheld" if endpoint == "/scan" else "api"]
    token = TOKEN if endpoint == "/scan" else servers.api_token
    before = servers.call(servers.state())
    status, answer = post(
        port,
        endpoint,
        body,
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert status < 500, (status, answer)
    if status >= 400:
        assert json.loads(answer)["error"]
        assert servers.call(servers.state()) == before


MSGPACK_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=10,
)
MSGPACK_FIELDS = st.dictionaries(
    st.sampled_from(
        [
            "revision",
            "since",
            "limit",
            "entries",
            "cursor",
            "push_url",
            "code",
            "number",
            "key",
            "credential",
            "v",
            "chain",
            "body",
            "sig",
        ]
    ),
    MSGPACK_VALUES,
    max_size=5,
)
MSGPACK_BODIES = (
    st.binary(max_size=300) | MSGPACK_VALUES.map(protocol.pack) | MSGPACK_FIELDS.map(protocol.pack)
)


@fuzz(400)
@given(
    endpoint=st.sampled_from(
        [
            "push",
            "/v1/hello",
            "/v1/changes",
            "/v1/snapshot",
            "/v1/journal",
            "/v1/desk/lookup",
            "/v1/desk/issue",
            "/v1/desk/cancel",
        ]
    ),
    body=MSGPACK_BODIES,
)
def test_msgpack_endpoints_never_fail_and_change_nothing_on_refusal(
    servers: Servers, endpoint: str, body: bytes
) -> None:
    TRIED[MSGPACK_TARGET] += 1
    if endpoint == "push":
        port, path, headers = servers.ports["push"], "/v1/push", {}
    else:
        now = int(datetime.now(UTC).timestamp() * 1000)
        port, path = servers.ports["central"], endpoint
        headers = protocol.sign_request(
            DEVICE, "gate-1", method="POST", path=path, time_ms=now, body=body
        )
    before = servers.call(servers.state())
    status, answer = post(port, path, body, headers)
    assert status < 500, (status, answer)
    if status >= 400:
        assert protocol.unpack(answer, "answer", 1 << 16)["error"]
        assert servers.call(servers.state()) == before
