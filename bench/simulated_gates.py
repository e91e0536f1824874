"""Simulated gates for the fan-out benches: outbound push channels opened as a gate opens them.

Each `Gate` is a registered device (name, raw Ed25519 private key, the server it connects
to); `simulator` runs a share of them in one client process: it opens every channel (a real
WebSocket, the request signed as a gate signs it), opens each envelope as a gate does
(signature, key chain, every change; with a cache, each distinct envelope once per process),
answers with the revision reached and records when each revision arrived (CLOCK_MONOTONIC,
which every process of the machine shares). The pipe protocol: "ready" once every channel
is open and current, then, after the parent sends anything, ([(arrived, failures)], opened).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync import protocol
from sync.protocol import Envelope, EnvelopeKind

OPEN_SECONDS = 300.0  # for every channel to open and catch up

Arrivals = list[tuple[dict[int, float], int]]  # per gate: revision -> arrival, failures


@dataclass(frozen=True, slots=True)
class Gate:
    """What a client process needs of one simulated gate (picklable)."""

    name: str
    private: bytes  # raw Ed25519 private key
    url: str  # the server it connects to


class Client:
    """One simulated gate: a channel that opens envelopes as a gate does and answers them."""

    def __init__(self, gate: Gate, opener: Opener) -> None:
        self.gate = gate
        self.identity = Ed25519PrivateKey.from_private_bytes(gate.private)
        self.opener = opener
        self.revision = 0
        self.arrived: dict[int, float] = {}  # revision -> monotonic time it arrived
        self.open = asyncio.Event()
        self.failures: list[str] = []

    async def run(self, session: aiohttp.ClientSession) -> None:
        """Keep the channel open, reconnecting after a failure as a gate does."""
        while True:
            try:
                await self._once(session)
            except (aiohttp.ClientError, TimeoutError, OSError) as err:
                self.failures.append(f"{type(err).__name__}: {err}")
            await asyncio.sleep(0.5)

    async def _once(self, session: aiohttp.ClientSession) -> None:
        path = protocol.channel_path(self.revision)
        headers = protocol.sign_request(
            self.identity, self.gate.name, method="GET", path=path,
            time_ms=time.time_ns() // 1_000_000, body=b"",
        )  # fmt: skip
        async with session.ws_connect(
            self.gate.url + path, headers=headers, heartbeat=20.0, compress=0
        ) as ws:
            self.open.set()
            async for message in ws:
                envelope = self.opener.open(message.data)
                now = time.monotonic()
                status = "stale"
                if envelope.first > self.revision:
                    status = "gap"
                elif envelope.last > self.revision:
                    for revision in range(self.revision + 1, envelope.last + 1):
                        self.arrived[revision] = now
                    self.revision, status = envelope.last, "applied"
                await ws.send_bytes(protocol.push_answer(self.revision, status))


class Opener:
    """Opens envelopes with the group's keys; with `cache`, each distinct one once."""

    def __init__(self, trusted: dict[int, tuple[bytes, bool]], *, cache: bool) -> None:
        self._trusted = trusted
        self._cache: dict[bytes, Envelope] | None = {} if cache else None
        self.opened = 0

    def open(self, data: bytes) -> Envelope:
        if self._cache is not None and data in self._cache:
            return self._cache[data]
        self.opened += 1
        envelope = protocol.open_envelope(
            data, self._trusted.get, limit=protocol.MAX_PUSH_BYTES, kinds=(EnvelopeKind.CHANGES,)
        )
        if self._cache is not None:
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[data] = envelope
        return envelope


async def _simulate(
    gates: list[Gate], opener: Opener, head: int, pipe: Connection
) -> tuple[list[tuple[dict[int, float], int]], int]:
    clients = [Client(gate, opener) for gate in gates]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = []
        for i, client in enumerate(clients):
            tasks.append(asyncio.create_task(client.run(session)))
            if i % 50 == 49:
                await asyncio.sleep(0.05)  # a venue's gates do not all start in one instant
        try:
            await asyncio.wait_for(asyncio.gather(*(c.open.wait() for c in clients)), OPEN_SECONDS)
        except TimeoutError:
            failures = [f for c in clients for f in c.failures]
            raise SystemExit(
                f"channels did not open; {len(failures)} failures: {failures[:5]}"
            ) from None
        # Plain ints of many clients: a poll is simpler than an event per client.
        while any(c.revision < head for c in clients):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        pipe.send("ready")
        await asyncio.to_thread(pipe.recv)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return [(c.arrived, len(c.failures)) for c in clients], opener.opened


def simulator(
    gates: list[Gate], trusted: dict[int, tuple[bytes, bool]], cache: bool, head: int,
    pipe: Connection,
) -> None:  # fmt: skip
    """A client process's entry: run `gates` until told to stop; see the module's text."""
    opener = Opener(trusted, cache=cache)
    pipe.send(asyncio.run(_simulate(gates, opener, head, pipe)))
