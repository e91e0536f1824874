"""pretix re-sync figures: a full pull of a large check-in list while a lane decides scans.

    ./dev bench pretix_sync                       # 50,000 positions
    ./dev bench pretix_sync --positions 5000      # smaller

A stand-in pretix (this script with --serve, another process on 127.0.0.1) serves the
list's positions page by page, as pretix's API does. The gate pulls it three times: the first
pull (everything new), an unchanged re-pull, and a re-pull after 1 % of the secrets were
re-issued and 1 % of the positions cancelled (looked up, then removed). During each pull a
lane decides a scan every millisecond; the figures are the pull's duration and the scans'
latency (decision plus waiting for the loop), which principle 2 keeps in milliseconds.
Prints figures; asserts nothing (the machines are shared and noisy).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from edge.core.decide import GateRules  # noqa: E402
from edge.core.facts import Direction  # noqa: E402
from edge.gate.gate import Gate  # noqa: E402
from edge.store.database import Store  # noqa: E402
from sync.pretix.client import PAGE_SIZE, PretixClient, PretixSettings  # noqa: E402
from sync.pretix.connector import PretixConnector  # noqa: E402
from sync.pretix.resolver import PretixResolver  # noqa: E402

EVENT = "/api/v1/organizers/org/events/ev"
LIST_ID = 3
SCAN_EVERY = 0.001  # seconds between scans while a pull runs
TARGET_SCAN_MS = 5.0  # what a scan may wait for bulk work (principle 2: "a few milliseconds")


def _secret(position: int, generation: int) -> str:
    return f"g{generation}p{position:010d}xyz"


class _Listing:
    """The stand-in pretix's state: every position, and which generation of changes."""

    def __init__(self, positions: int) -> None:
        self.positions = positions
        self.changed = 0  # 0: as sold; 1: 1 % re-issued and 1 % cancelled

    def row(self, position: int) -> dict[str, Any] | None:
        step = 100
        if self.changed and position % step == 1:
            return None  # cancelled: gone from the list, 404 by id
        generation = 1 if self.changed and position % step == 2 else 0
        return {
            "id": position,
            "item": 1,
            "subevent": None,
            "secret": _secret(position, generation),
            "order__status": "p",
            "valid_from": None,
            "valid_until": None,
            "blocked": None,
            "checkins": [],
        }

    async def handle(self, request: web.Request) -> web.Response:
        path = request.path
        if path == "/control/change":
            self.changed = 1
            return web.json_response({})
        empty: dict[str, Any] = {"count": 0, "next": None, "previous": None, "results": []}
        if path == f"{EVENT}/":
            return web.json_response(
                {
                    "valid_keys": {"pretix_sig1": []},
                    "has_subevents": False,
                    "timezone": "Europe/Berlin",
                    "date_from": "2026-06-01T10:00:00+02:00",
                    "date_to": None,
                    "date_admission": None,
                }
            )
        if path == f"{EVENT}/checkinlists/{LIST_ID}/":
            return web.json_response(
                {
                    "id": LIST_ID,
                    "all_products": True,
                    "limit_products": [],
                    "subevent": None,
                    "include_pending": False,
                    "allow_multiple_entries": False,
                }
            )
        if path == f"{EVENT}/items/":
            return web.json_response({**empty, "results": [{"id": 1, "name": "Admission"}]})
        if path in (f"{EVENT}/revokedsecrets/", f"{EVENT}/blockedsecrets/"):
            return web.json_response(empty)
        if path == f"{EVENT}/checkinlists/{LIST_ID}/positions/":
            page = int(request.query.get("page", "1"))
            first = (page - 1) * PAGE_SIZE + 1
            last = min(first + PAGE_SIZE, self.positions + 1)
            rows = [r for p in range(first, last) if (r := self.row(p)) is not None]
            more = last <= self.positions
            return web.json_response({**empty, "results": rows, "next": "more" if more else None})
        if path == f"{EVENT}/orders/":  # the decision table's read: one order per position
            page = int(request.query.get("page", "1"))
            first = (page - 1) * PAGE_SIZE + 1
            last = min(first + PAGE_SIZE, self.positions + 1)
            orders = [
                {"status": "p", "positions": [row]}
                for p in range(first, last)
                if (row := self.row(p)) is not None
            ]
            more = last <= self.positions
            return web.json_response({**empty, "results": orders, "next": "more" if more else None})
        if path.startswith(f"{EVENT}/orderpositions/"):
            row = self.row(int(path.rstrip("/").rsplit("/", 1)[1]))
            if row is None:
                return web.json_response({"detail": "Not found."}, status=404)
            return web.json_response(row)
        return web.json_response({"detail": "Not found."}, status=404)


def serve(port: int, positions: int) -> None:
    """Run the stand-in pretix until killed, on any core (the gate is measured on one)."""
    os.sched_setaffinity(0, range(os.cpu_count() or 1))
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _Listing(positions).handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _scans(gate: Gate, secrets: list[bytes], stop: asyncio.Event) -> list[float]:
    """Decide a scan every SCAN_EVERY seconds; each scan's latency including loop delay."""
    rules = GateRules(gate="Bench 1")
    latencies: list[float] = []
    number = 0
    while not stop.is_set():
        due = time.perf_counter() + SCAN_EVERY
        await asyncio.sleep(SCAN_EVERY)
        gate.check(secrets[number % len(secrets)], rules, Direction.ENTRY)
        latencies.append(max(0.0, time.perf_counter() - due))
        number += 1
    return latencies


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def run(url: str, positions: int, directory: Path) -> None:
    """Pull three times with scans running; print the figures."""
    store = await Store.open(directory / "gate.db")
    settings = PretixSettings(url=url, organizer="org", event="ev", checkin_list=LIST_ID, token="t")
    try:
        async with aiohttp.ClientSession() as session:
            client = PretixClient(settings, session=session)
            resolver = PretixResolver(store)
            connector = PretixConnector(store, client, resolver)
            gate = Gate(store, resolver=resolver)
            secrets = [_secret(p, 0).encode() for p in range(1, positions + 1, 7)]
            # The same scans with no pull: what this machine's load alone costs a scan.
            stop = asyncio.Event()
            scans = asyncio.create_task(_scans(gate, secrets, stop))
            await asyncio.sleep(1.0)
            stop.set()
            idle = await scans
            print(
                f"{'no pull (baseline)':36} scans: {len(idle):,}, p50 {_p(idle, 0.5):.2f} ms, "
                f"p99 {_p(idle, 0.99):.2f} ms, max {max(idle) * 1000:.1f} ms"
            )
            for label in ("first pull", "unchanged re-pull", "re-pull, 1 % re-issued + 1 % gone"):
                if label.startswith("re-pull,"):
                    async with session.post(f"{url}/control/change") as response:
                        response.raise_for_status()
                stop = asyncio.Event()
                scans = asyncio.create_task(_scans(gate, secrets, stop))
                started = time.perf_counter()
                try:
                    stats = await connector.pull()
                finally:  # a failed pull must not leave scans running on a closing store
                    stop.set()
                    latencies = await scans
                took = time.perf_counter() - started
                print(
                    f"{label:36} {positions:>7,} positions: pull {took:6.1f} s "
                    f"({positions / took:,.0f} positions/s); scans during it: "
                    f"{len(latencies):,}, p50 {_p(latencies, 0.5):.2f} ms, "
                    f"p99 {_p(latencies, 0.99):.2f} ms, max {max(latencies) * 1000:.1f} ms "
                    f"(target {TARGET_SCAN_MS:.0f} ms)  removed {stats.removed}"
                )
            print(json.dumps({"plain_codes": store.stats().plain_codes}))
    finally:
        await store.close()


def main() -> None:
    """Start the stand-in pretix, run the pulls, stop it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=50_000)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.positions)
        return
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), "--positions", str(args.positions)]
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the stand-in pretix did not start") from None
                time.sleep(0.1)  # another process's port: nothing to wait on
        with tempfile.TemporaryDirectory() as directory:
            asyncio.run(run(f"http://127.0.0.1:{port}", args.positions, Path(directory)))
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
