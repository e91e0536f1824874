"""The outbound push channel with real processes: gates without a listening port.

Every gate here pulls only once a minute and takes no inbound pushes, so what reaches it
within the waits below came through its channel (or the pull a reconnect starts).
"""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.core.codes import parse
from integration.fault_proxy import FaultProxy
from integration.sync_harness import CentralProcess, GateProcess, free_port, wait_for
from sync import protocol
from sync.central.catalogue import Sold
from sync.protocol import EnvelopeKind, Revocation, RevokeCode

PULL_INTERVAL = 60.0  # far beyond every wait: a pull on the timer cannot explain a result
WAIT = 20.0
NO_PORT = "push_listen = false\nkeepalive_seconds = 1.0"


def _venue(tmp_path: Path, count: int) -> tuple[CentralProcess, list[GateProcess]]:
    central = CentralProcess(tmp_path / "central")
    key_id = central.db.keys.add()
    (_, public, _) = central.db.keys.public_keys()[0]
    public_b64 = base64.b64encode(public).decode()
    gates = [GateProcess(tmp_path / f"g{i}", f"gate-{i}", key_id, public_b64) for i in range(count)]
    for gate in gates:
        central.db.devices.add(gate.name, gate.public_key)
        gate.sync_extra = NO_PORT
    return central, gates


@pytest.fixture
def venue(tmp_path: Path) -> Iterator[tuple[CentralProcess, list[GateProcess]]]:
    central, gates = _venue(tmp_path, 2)
    try:
        yield central, gates
    finally:
        for gate in gates:
            gate.kill()
        central.close()


def _tickets(central: CentralProcess, count: int) -> list[Sold]:
    db = central.db
    event = db.catalogue.add_event("Concert")
    ticket = db.catalogue.add_product("Ticket")
    return db.sales.sell(ticket, event_id=event, count=count)[1]


def _at_head(central: CentralProcess, gates: list[GateProcess], what: str) -> float:
    head = central.db.log.head()
    took = wait_for(lambda: all((g.revision() or 0) >= head for g in gates), WAIT, what)
    print(f"{what}: revision {head} on every gate after {took * 1000:.0f} ms")
    return took


def _opened(gate: GateProcess) -> int:
    return gate.log.read_text(errors="replace").count("push channel open")


def _wait_channels(gates: list[GateProcess], count: int = 1) -> None:
    wait_for(lambda: all(_opened(g) >= count for g in gates), WAIT, f"{count} channel(s) each")


@pytest.mark.slow
def test_gate_without_a_port_gets_a_revocation_through_the_channel(
    venue: tuple[CentralProcess, list[GateProcess]],
) -> None:
    central, gates = venue
    tickets = _tickets(central, 3)
    url = central.start()
    for gate in gates:
        gate.start(url, pull_interval=PULL_INTERVAL)
    _at_head(central, gates, "bootstrap")
    _wait_channels(gates)
    assert all("taking pushes" not in g.log.read_text(errors="replace") for g in gates)

    central.db.workflows.revoke_code(tickets[0].code)
    _at_head(central, gates, "revocation through the channel")
    assert [g.scan(tickets[0].code) for g in gates] == ["revoked"] * 2
    assert gates[0].scan(tickets[1].code) == "admitted"


@pytest.mark.slow
def test_gate_reconnects_after_the_central_system_restarts(
    venue: tuple[CentralProcess, list[GateProcess]],
) -> None:
    central, gates = venue
    tickets = _tickets(central, 3)
    port = free_port()
    url = central.start(port)
    for gate in gates:
        gate.start(url, pull_interval=PULL_INTERVAL)
    _at_head(central, gates, "bootstrap")
    _wait_channels(gates)

    central.kill()
    central.db.workflows.revoke_code(tickets[0].code)  # committed while it is down
    central.start(port)
    _at_head(central, gates, "after the restart")
    _wait_channels(gates, 2)
    central.db.workflows.revoke_code(tickets[1].code)  # through the new channel
    _at_head(central, gates, "revocation after the restart")
    assert [g.scan(t.code) for g in gates for t in tickets[:2]] == ["revoked"] * 4


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["cut", "blackhole"])
def test_a_lost_connection_is_noticed_and_the_gap_pulled(
    venue: tuple[CentralProcess, list[GateProcess]], fault: str
) -> None:
    central, gates = venue
    tickets = _tickets(central, 3)
    url = central.start()
    proxy = FaultProxy(int(url.rsplit(":", 1)[1]), rate=0.0, seed=1)
    proxy.start()
    try:
        for gate in gates:
            gate.start(f"http://127.0.0.1:{proxy.port}", pull_interval=PULL_INTERVAL)
        _at_head(central, gates, "bootstrap")
        _wait_channels(gates)
        if fault == "cut":
            proxy.cut_open()
        else:
            proxy.blackhole_open()
        central.db.workflows.revoke_code(tickets[0].code)
        # A blackholed channel delivers nothing: only the keep-alive (1 s) notices it.
        _at_head(central, gates, f"after a {fault}")
        _wait_channels(gates, 2)
        assert [g.scan(tickets[0].code) for g in gates] == ["revoked"] * 2
    finally:
        proxy.stop()


class _Attacker:
    """Stands between a gate and its central system: forwards requests, forges the channel."""

    def __init__(self, central_url: str, attacker_key: Ed25519PrivateKey, key_id: int) -> None:
        self.central_url = central_url
        self.key = attacker_key
        self.key_id = key_id
        self.revoke_hash = b""
        self.closes: list[int | None] = []
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None

    def start(self) -> str:
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(10)
        return self.url

    def stop(self) -> None:
        async def stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        ready.set()
        self._loop.run_forever()

    async def _serve(self) -> None:
        app = web.Application(client_max_size=protocol.MAX_REQUEST_BYTES)
        app.router.add_get(protocol.CHANNEL_PATH, self._channel)
        app.router.add_post("/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def _forward(self, request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower().startswith("edge-")}
        headers["Content-Type"] = protocol.CONTENT_TYPE
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                self.central_url + request.path, data=await request.read(), headers=headers
            ) as answer,
        ):
            return web.Response(status=answer.status, body=await answer.read())

    def _frame(self, revision: int) -> bytes:
        change = RevokeCode(self.revoke_hash, Revocation.REVOKED)
        if len(self.closes) % 2 == 0:  # signed by a key the gate does not trust
            return protocol.seal(
                EnvelopeKind.CHANGES, self.key_id, self.key, first=revision,
                last=revision + 1, at_ms=0, changes=[change], chain=[], head=revision + 1,
            )  # fmt: skip
        return protocol.pack(  # not signed at all
            {"v": 1, "key": self.key_id, "chain": [], "body": b"\x80", "sig": b""}
        )

    async def _channel(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_bytes(self._frame(int(request.query["revision"])))
        async for _ in ws:
            pass
        self.closes.append(ws.close_code)
        return ws


@pytest.mark.slow
def test_a_forged_or_unsigned_frame_is_refused_and_the_channel_closed(
    venue: tuple[CentralProcess, list[GateProcess]],
) -> None:
    central, gates = venue
    gate = gates[0]
    tickets = _tickets(central, 2)
    attacker = _Attacker(central.start(), Ed25519PrivateKey.generate(), gate.key_id)
    attacker.revoke_hash = parse(tickets[0].code.encode()).hash
    url = attacker.start()
    try:
        gate.start(url, pull_interval=PULL_INTERVAL)
        _at_head(central, [gate], "bootstrap through the attacker")
        wait_for(lambda: len(attacker.closes) >= 2, WAIT, "two channels refused")
        assert attacker.closes[:2] == [protocol.CloseCode.REFUSED] * 2
        log = gate.log.read_text(errors="replace")
        assert log.count("channel frame refused") >= 2, log[-2000:]
        assert gate.scan(tickets[0].code) == "admitted"  # the forged revocation changed nothing
        assert gate.count("revoked_codes") == 0
    finally:
        gate.kill()
        attacker.stop()
