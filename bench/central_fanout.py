"""Fan-out: two `edge-central serve` processes on one PostgreSQL, many gate connections.

    ./dev bench central_fanout                      # 1,000 connections, 100 revocations
    ./dev bench central_fanout --gates 200 --revocations 20
    ./dev bench central_fanout --dsn postgresql://user@/db?host=/run/postgresql

The gates are simulated in this process: each registers with its own Ed25519 key, says hello
(signed, as a gate does) to one of the two servers, alternately, and takes pushes on its own
path of one local HTTP server, answering with the revision it reached. Each revocation is made
on the shared database (as `edge-central revoke` does), by neither server; both learn of it by
LISTEN/NOTIFY and push to their own half. Prints figures beside the issue's targets; asserts
nothing (the machines are shared and noisy).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import msgpack
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from integration.sync_harness import CentralProcess  # noqa: E402
from pgcluster import Cluster  # noqa: E402

from sync import protocol  # noqa: E402
from sync.central.changelog import now_ms  # noqa: E402

TARGET_P99_MS = 500.0
WAIT_SECONDS = 10.0  # a gate that has not got a revocation by then counts as missed


class Gates:
    """The simulated gates: the revision each holds and when it got there."""

    def __init__(self, count: int) -> None:
        self.names = [f"sim-{i:05d}" for i in range(count)]
        self.private = {name: Ed25519PrivateKey.generate() for name in self.names}
        self.revision = dict.fromkeys(self.names, 0)
        self.reached: dict[str, float] = {}
        self.target = 0
        self.pushes = 0

    async def push(self, request: web.Request) -> web.Response:
        device = request.match_info["device"]
        outer = msgpack.unpackb(await request.read())
        body = msgpack.unpackb(outer["body"])  # simulated: trusted without verifying
        last = int(body["last"])
        self.pushes += 1
        if last > self.revision[device]:
            self.revision[device] = last
            if last >= self.target and device not in self.reached:
                self.reached[device] = time.perf_counter()
        answer = {"revision": self.revision[device], "status": "applied"}
        return web.Response(body=protocol.pack(answer), headers=protocol.HEADERS)


async def _hello(
    session: aiohttp.ClientSession, url: str, name: str, key: Ed25519PrivateKey, push: str
) -> None:
    body = protocol.pack({"revision": 0, "push_url": push})
    headers = protocol.sign_request(
        key, name, method="POST", path="/v1/hello", time_ms=now_ms(), body=body
    )
    async with session.post(url + "/v1/hello", data=body, headers=headers) as response:
        if response.status != 200:
            raise SystemExit(f"hello {name}: {response.status} {await response.read()!r}")


async def fanout(directory: Path, dsn: str, count: int, revocations: int) -> None:
    """Revocations on the shared database reach every simulated gate through both servers."""
    a = CentralProcess(directory / "a", dsn)
    b = CentralProcess(directory / "b", dsn)
    db = a.db
    db.keys.add()
    product = db.catalogue.add_product("Ticket")
    _, sold = db.sales.sell(product, count=revocations)
    gates = Gates(count)
    for name in gates.names:
        public = gates.private[name].public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        db.devices.add(name, public)
    app = web.Application()
    app.router.add_post("/{device}/v1/push", gates.push)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    urls = [a.start(), b.start()]
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50)) as session:
            await asyncio.gather(
                *(
                    _hello(
                        session,
                        urls[i % 2],
                        name,
                        gates.private[name],
                        f"http://127.0.0.1:{port}/{name}/v1/push",
                    )
                    for i, name in enumerate(gates.names)
                )
            )
        head = db.log.head()
        gates.target = head
        await _settle(gates, head, 120.0)
        print(f"  ({count:,} gates at revision {head} through 2 servers)")
        latencies: list[float] = []
        missed = 0
        for credential in sold:
            gates.reached.clear()
            started = time.perf_counter()
            await asyncio.to_thread(db.workflows.revoke_code, credential.code)
            gates.target = db.log.head()
            await _settle(gates, gates.target, WAIT_SECONDS)
            missed += count - len(gates.reached)
            latencies.extend((t - started) * 1000 for t in gates.reached.values())
        latencies.sort()
        p50 = statistics.median(latencies)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(
            f"fan-out to {count:,} gates on 2 servers, {revocations} revocations:"
            f" p50 {p50:.0f} ms, p99 {p99:.0f} ms (target <= {TARGET_P99_MS:.0f} ms),"
            f" max {latencies[-1]:.0f} ms; missed {missed} (target 0); pushes {gates.pushes:,}"
        )
    finally:
        a.close()
        b.close()
        await runner.cleanup()


async def _settle(gates: Gates, revision: int, seconds: float) -> None:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if all(r >= revision for r in gates.revision.values()):
            return
        await asyncio.sleep(0.002)


def main() -> None:
    """Run the figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gates", type=int, default=1000)
    parser.add_argument("--revocations", type=int, default=100)
    parser.add_argument("--dsn", help="a PostgreSQL to use (default: a throwaway cluster)")
    args = parser.parse_args()
    cluster = None if args.dsn else Cluster()
    try:
        dsn = args.dsn or (cluster.database() if cluster else "")
        with tempfile.TemporaryDirectory(prefix="edge-bench-fanout-") as directory:
            asyncio.run(fanout(Path(directory), dsn, args.gates, args.revocations))
    finally:
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    main()
