"""Fault rounds: one central system, gates, fault proxies on every link, SIGKILLs at random.

Used by tests/integration/test_sync_faults.py (a few rounds) and bench/sync.py (200).
After the rounds the faults stop and the run checks that every gate reached the central
system's revision, that the central system holds every journal row of every gate exactly
once, and that every gate counts each admitted entry of the venue exactly once.
"""

from __future__ import annotations

import base64
import collections
import random
import signal
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from edge.store.base import journal_path
from integration.fault_proxy import FaultProxy
from integration.sync_harness import CentralProcess, GateProcess, free_port, wait_for

CONVERGE_TIMEOUT = 90.0


@dataclass
class FaultReport:
    """What happened and what was checked."""

    rounds: int = 0
    scans: int = 0
    changes: int = 0
    gate_kills: int = 0
    central_kills: int = 0
    faults: collections.Counter[str] = field(default_factory=collections.Counter)
    journal_rows: int = 0  # on all gates
    lost: int = 0  # gate journal rows the central system lacks
    duplicated: int = 0  # rows the central system holds more than once, or never had
    entry_mismatches: int = 0  # (gate, credential) whose entry count differs from the venue's
    converge_seconds: float = 0.0
    behind: list[str] = field(default_factory=list)


def _entries(path: Path) -> dict[int, int]:
    journal = journal_path(str(path))  # a store's passages are in its journal file
    conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=10)
    try:
        return {int(c): int(n) for c, n in conn.execute("SELECT credential_id, count FROM entries")}
    finally:
        conn.close()


def run(
    directory: Path, rounds: int, *, seed: int, gates: int = 3, rate: float = 0.3
) -> FaultReport:
    """Run the rounds; never raises for a failed check, the report counts it."""
    rng = random.Random(seed)
    report = FaultReport()
    central = CentralProcess(directory / "central")
    key_id = central.db.keys.add()
    public_b64 = base64.b64encode(central.db.keys.public_keys()[0][1]).decode()
    event = central.db.catalogue.add_event("Fault rounds")
    product = central.db.catalogue.add_product("Ticket")
    _, sold = central.db.sales.sell(product, event_id=event, count=max(20, rounds * 2))
    codes = [s.code for s in sold]

    central_port = free_port()
    central.start(central_port)
    proxies = [FaultProxy(central_port, rate=rate, seed=seed)]
    proxies[0].start()
    central_url = f"http://127.0.0.1:{proxies[0].port}"
    fleet = []
    for i in range(gates):
        gate = GateProcess(directory / f"gate{i}", f"gate-{i}", key_id, public_b64)
        central.db.devices.add(gate.name, gate.public_key)
        push_port = free_port()
        proxy = FaultProxy(push_port, rate=rate, seed=seed + i + 1)
        proxy.start()
        proxies.append(proxy)
        push_url = f"http://127.0.0.1:{proxy.port}/v1/push"
        fleet.append((gate, push_port, push_url))
        gate.start(central_url, pull_interval=2.0, push_port=push_port, push_url=push_url)
    try:
        for _ in range(rounds):
            report.rounds += 1
            if rng.random() < 0.5:
                central.db.workflows.revoke_code(rng.choice(codes))
            else:
                _, (new,) = central.db.sales.sell(product, event_id=event)
                codes.append(new.code)
            report.changes += 1
            for _ in range(rng.randint(1, 4)):
                gate, _, _ = rng.choice(fleet)
                gate.scan(rng.choice(codes))
                report.scans += 1
            roll = rng.random()
            if roll < 0.25:
                gate, push_port, push_url = rng.choice(fleet)
                gate.kill(signal.SIGKILL)
                gate.start(central_url, pull_interval=2.0, push_port=push_port, push_url=push_url)
                report.gate_kills += 1
            elif roll < 0.35:
                central.kill(signal.SIGKILL)
                central.start(central_port)
                report.central_kills += 1
        for proxy in proxies:
            proxy.rate = 0.0
        started = time.monotonic()
        head = central.db.log.head()

        def settled() -> bool:
            nonlocal head
            head = central.db.log.head()
            return (
                all(g.unsent() == 0 and (g.revision() or 0) >= head for g, _, _ in fleet)
                and central.db.log.head() == head
            )

        try:
            wait_for(settled, CONVERGE_TIMEOUT, "every gate uploaded and at the head")
        except AssertionError:
            report.behind = [
                f"{g.name}: revision {g.revision()} of {head}, {g.unsent()} unsent"
                for g, _, _ in fleet
            ]
        report.converge_seconds = time.monotonic() - started
        venue: collections.Counter[int] = collections.Counter()
        for gate, _, _ in fleet:
            rows = gate.last_seq()
            report.journal_rows += rows
            held = central.db.journals.seqs(gate.name)
            report.lost += len(set(range(1, rows + 1)) - set(held))
            report.duplicated += (
                len(held) - len(set(held)) + len(set(held) - set(range(1, rows + 1)))
            )
        for cid, count in central.db.journals.admitted_entries().items():
            venue[cid] = count
        for gate, _, _ in fleet:
            counts = _entries(gate.store_path)
            for cid in set(counts) | set(venue):
                if counts.get(cid, 0) != venue.get(cid, 0):
                    report.entry_mismatches += 1
    finally:
        for gate, _, _ in fleet:
            gate.kill(signal.SIGTERM)
        central.close()
        for proxy in proxies:
            report.faults.update(proxy.counts)
            proxy.stop()
    return report
