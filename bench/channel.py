"""Push channel figures: gates without a listening port, and fan-out to many channels.

    ./dev bench channel                          # 10 gates x 200 revocations, 1,000 channels
    ./dev bench channel --only latency --revocations 1000
    ./dev bench channel --only fanout --clients 1000 --rounds 100

Real processes on 127.0.0.1. `latency`: `edge-central serve` and `edge run` gates that take
no inbound pushes (`push_listen = false`) and pull once in 10 minutes, so every revocation
reaches them through their outbound channel. `fanout`: one `edge-central serve` (SQLite)
and many simulated gates in this process, each a real WebSocket that verifies every
envelope as a gate does and answers it. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing
import multiprocessing.process
import os
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from integration.sync_harness import CentralProcess, GateProcess, wait_for  # noqa: E402

from bench.simulated_gates import Gate, simulator  # noqa: E402
from sync import protocol  # noqa: E402

NO_PORT = "push_listen = false"


def _p(ordered: list[float], q: float) -> float:
    return ordered[max(0, int(len(ordered) * q) - 1)] * 1000


def latency(directory: Path, gates: int, revocations: int) -> None:
    """From the central system's revoke call to every portless gate holding the revocation."""
    central = CentralProcess(directory / "central")
    key_id = central.db.keys.add()
    public_b64 = base64.b64encode(central.db.keys.public_keys()[0][1]).decode()
    fleet = [
        GateProcess(directory / f"g{i}", f"gate-{i}", key_id, public_b64) for i in range(gates)
    ]
    for gate in fleet:
        central.db.devices.add(gate.name, gate.public_key)
        gate.sync_extra = NO_PORT
    url = central.start()
    try:
        product = central.db.catalogue.add_product("Ticket")
        _, sold = central.db.sales.sell(product, count=revocations)
        for gate in fleet:
            gate.start(url, pull_interval=600.0)
        head = central.db.log.head()
        wait_for(lambda: all((g.revision() or 0) >= head for g in fleet), 60, "bootstrap")
        wait_for(
            lambda: all("push channel open" in g.log.read_text(errors="replace") for g in fleet),
            60,
            "every channel",
        )
        readers = [
            sqlite3.connect(f"file:{g.store_path}?mode=ro", uri=True, timeout=10) for g in fleet
        ]
        query = "SELECT value FROM sync_cursors WHERE name = 'sync.revision'"
        samples: list[float] = []
        for item in sold:
            started = time.perf_counter()
            central.db.workflows.revoke_code(item.code)
            target = central.db.log.head()
            pending = set(range(len(fleet)))
            while pending:
                for i in list(pending):
                    row = readers[i].execute(query).fetchone()
                    if row and int(row[0]) >= target:
                        samples.append(time.perf_counter() - started)
                        pending.discard(i)
                if time.perf_counter() - started > 10:
                    raise SystemExit(f"revision {target} did not reach every gate in 10 s")
        for reader in readers:
            reader.close()
        rejected = fleet[-1].scan(sold[0].code)
        ordered = sorted(samples)
        print(
            f"push-to-enforced through the channel, gates with no listening port,"
            f" {revocations} revocations x {gates} gates:"
            f" p50 {statistics.median(ordered) * 1000:.1f} ms, p99 {_p(ordered, 0.99):.1f} ms,"
            f" max {ordered[-1] * 1000:.1f} ms"
            f" (target p99 <= 250 ms); a revoked code then scans as {rejected!r}"
        )
    finally:
        for gate in fleet:
            gate.kill(signal.SIGTERM)
        central.close()


def fanout(directory: Path, count: int, rounds: int, processes: int, interval: float) -> None:
    """Many channels on one central process; revocation commit to each channel's arrival.

    Arrival and commit times are both CLOCK_MONOTONIC (time.monotonic), which every
    process of the machine shares.
    """
    central = CentralProcess(directory / "central")
    central.db.keys.add()
    trusted = {k: (public, retired) for k, public, retired in central.db.keys.public_keys()}
    identities = [Ed25519PrivateKey.generate() for _ in range(count)]
    for i, identity in enumerate(identities):
        central.db.devices.add(f"sim-{i}", protocol.public_bytes(identity))
    product = central.db.catalogue.add_product("Ticket")
    _, sold = central.db.sales.sell(product, count=rounds)
    url = central.start()
    raw = (Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    gates = [Gate(f"sim-{i}", key.private_bytes(*raw), url) for i, key in enumerate(identities)]
    context = multiprocessing.get_context("fork")
    workers: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
    try:
        started = time.monotonic()
        head = central.db.log.head()
        for share in range(processes):
            ours, theirs = context.Pipe()
            # Every simulated gate verifies every envelope (no cache): as many checks as
            # real gates would make, on this machine's cores.
            worker = context.Process(
                target=simulator, args=(gates[share::processes], trusted, False, head, theirs)
            )
            worker.start()
            workers.append((worker, ours))
        for _, pipe in workers:
            if not pipe.poll(360):
                raise SystemExit("the simulated gates did not connect in 360 s")
            pipe.recv()
        print(
            f"  {count} channels from {processes} processes open and current"
            f" in {time.monotonic() - started:.1f} s"
        )
        committed: dict[int, float] = {}
        for item in sold:
            at = time.monotonic()
            central.db.workflows.revoke_code(item.code)
            committed[central.db.log.head()] = at
            time.sleep(interval)
        time.sleep(3.0)
        arrivals: list[tuple[dict[int, float], int]] = []
        for _, pipe in workers:
            pipe.send("stop")
        for _, pipe in workers:
            arrivals.extend(pipe.recv()[0])
    finally:
        for process, _ in workers:
            process.join(10)
            if process.is_alive():
                process.kill()
        central.close()
    samples: list[float] = []
    missed = 0
    reconnects = sum(failures for _, failures in arrivals)
    for revision, at in committed.items():
        for arrived, _ in arrivals:
            if revision in arrived:
                samples.append(arrived[revision] - at)
            else:
                missed += 1
    ordered = sorted(samples)
    print(
        f"fan-out, 1 edge-central (SQLite), {count} channels in {processes} client processes,"
        f" {rounds} revocations {interval:g} s apart:"
        f" p50 {statistics.median(ordered) * 1000:.1f} ms,"
        f" p99 {_p(ordered, 0.99):.1f} ms, max {ordered[-1] * 1000:.1f} ms"
        f" (target p99 <= 500 ms); missed {missed} of {len(committed) * count} (target 0),"
        f" {reconnects} failed connections retried;"
        f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )


def main() -> None:
    """Run the chosen figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["latency", "fanout"])
    parser.add_argument("--gates", type=int, default=10)
    parser.add_argument("--revocations", type=int, default=200)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--processes", type=int, default=4, help="fanout: client processes")
    parser.add_argument("--interval", type=float, default=0.2, help="fanout: s between revocations")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        if args.only in (None, "latency"):
            latency(directory / "latency", args.gates, args.revocations)
        if args.only in (None, "fanout"):
            fanout(directory / "fanout", args.clients, args.rounds, args.processes, args.interval)


if __name__ == "__main__":
    main()
