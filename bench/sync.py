"""Sync figures: push-to-enforced latency, bootstrap, journal upload, fault rounds.

    ./dev bench sync                      # about two minutes: smaller bootstrap, fewer rounds
    ./dev bench sync --full               # the issue's sizes (1M + 1M bootstrap, 200 rounds)
    ./dev bench sync --only latency       # one figure
    ./dev bench sync --only bootstrap --full --postgres   # the central on PostgreSQL

Real processes on 127.0.0.1: `edge-central serve` and `edge run` gates. Prints figures;
asserts nothing (the machines are shared and noisy).
"""

from __future__ import annotations

import argparse
import base64
import os
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The repository first (so `sync` is the package, not this script), then tests/ for the
# process harness, imported by the names the tests themselves use.
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from integration import fault_rounds  # noqa: E402
from integration.sync_harness import CentralProcess, GateProcess, wait_for  # noqa: E402

from edge.core.codes import Claims, Kind, mint, parse  # noqa: E402
from edge.keys import SigningKey  # noqa: E402
from sync.protocol import CredentialChange, Revocation, RevokeCode  # noqa: E402

# With --postgres: what makes each figure's central database (a PostgreSQL DSN); without, a
# SQLite file per figure.
_DATABASES: list[Callable[[], str]] = []


def _venue(directory: Path, gates: int) -> tuple[CentralProcess, list[GateProcess]]:
    central = CentralProcess(directory / "central", _DATABASES[0]() if _DATABASES else None)
    key_id = central.db.keys.add()
    public_b64 = base64.b64encode(central.db.keys.public_keys()[0][1]).decode()
    fleet = [
        GateProcess(directory / f"gate{i}", f"gate-{i}", key_id, public_b64) for i in range(gates)
    ]
    for gate in fleet:
        central.db.devices.add(gate.name, gate.public_key)
    return central, fleet


def _revision_reader(gate: GateProcess) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{gate.store_path}?mode=ro", uri=True, timeout=10)


def latency(directory: Path, gates: int, revocations: int) -> None:
    """From the central system's revoke call to every gate holding the revocation."""
    central, fleet = _venue(directory, gates)
    url = central.start()
    try:
        product = central.db.catalogue.add_product("Ticket")
        _, sold = central.db.sales.sell(product, count=revocations)
        for gate in fleet:
            gate.start(url, pull_interval=30.0)
        head = central.db.log.head()
        wait_for(lambda: all((g.revision() or 0) >= head for g in fleet), 60, "bootstrap")
        readers = [_revision_reader(g) for g in fleet]
        query = "SELECT value FROM sync_cursors WHERE name = 'sync.revision'"
        samples: list[float] = []
        slowest: list[float] = []
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
            slowest.append(samples[-1])
        rejected = fleet[-1].scan(sold[0].code)
        ordered = sorted(samples)
        p50 = statistics.median(ordered) * 1000
        p99 = ordered[int(len(ordered) * 0.99) - 1] * 1000
        print(
            f"push-to-enforced latency, {revocations} revocations x {gates} gates:"
            f" p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {ordered[-1] * 1000:.1f} ms"
            f" (target p99 <= 250 ms); a revoked code then scans as {rejected!r}"
        )
        for reader in readers:
            reader.close()
        # The same path ending in real scans: one gate scans the code until it rejects it.
        _, fresh = central.db.sales.sell(product, count=100)
        head = central.db.log.head()
        wait_for(lambda: all((g.revision() or 0) >= head for g in fleet), 60, "the new sales")
        scanned: list[float] = []
        for item in fresh:
            started = time.perf_counter()
            central.db.workflows.revoke_code(item.code)
            while fleet[0].scan(item.code) != "revoked":
                if time.perf_counter() - started > 10:
                    raise SystemExit("a revoked code still scanned as valid after 10 s")
            scanned.append(time.perf_counter() - started)
        scanned.sort()
        print(
            f"  revoke call to a rejecting scan at one of the {gates} gates (scanning in a loop,"
            f" {len(scanned)} codes): p50 {statistics.median(scanned) * 1000:.1f} ms,"
            f" p99 {scanned[int(len(scanned) * 0.99) - 1] * 1000:.1f} ms,"
            f" max {scanned[-1] * 1000:.1f} ms"
        )
    finally:
        for gate in fleet:
            gate.kill(signal.SIGTERM)
        central.close()


def bootstrap(directory: Path, credentials: int, revocations: int) -> None:
    """A gate's first start against a central system holding this much state."""
    central, (gate,) = _venue(directory, 1)
    started = time.perf_counter()
    batch = 100_000
    for first in range(1, credentials + 1, batch):
        central.db.log.publish(
            [
                CredentialChange(cid, 0, 7, 10, 0, 1, 0, None, None, 0, paid=True)
                for cid in range(first, min(first + batch, credentials + 1))
            ]
        )
    for first in range(0, revocations, batch):
        central.db.log.publish(
            [
                RevokeCode(os.urandom(16), Revocation.REVOKED)
                for _ in range(min(batch, revocations - first))
            ]
        )
    print(
        f"  (central prepared {credentials:,} credentials and {revocations:,} revocations"
        f" in {time.perf_counter() - started:.1f} s)"
    )
    url = central.start()
    try:
        head = central.db.log.head()
        key_id, key, _ = central.db.keys.signer()
        code = mint(Claims(key_id, 10**9, Kind.TICKET), key)
        started = time.perf_counter()
        gate.start(url, pull_interval=600.0)
        scans: list[float] = []  # scanning goes on while the snapshot is written
        while (gate.revision() or 0) < head:
            scan_started = time.perf_counter()
            gate.scan(code)
            scans.append(time.perf_counter() - scan_started)
            if time.perf_counter() - started > 600:
                raise SystemExit("bootstrap did not finish in 600 s")
        took = time.perf_counter() - started
        idle = []
        for _ in range(200):  # the same round trip with the store at rest, for comparison
            scan_started = time.perf_counter()
            gate.scan(code)
            idle.append(time.perf_counter() - scan_started)
        print(
            f"bootstrap of {credentials:,} credentials + {revocations:,} revocations:"
            f" {took:.1f} s from gate start to revision {head:,}"
            f" ({(credentials + revocations) / took:,.0f} items/s; target <= 30 s for 1M + 1M)"
        )
        if scans:
            ordered = sorted(scans)
            print(
                f"  {len(scans)} scans during the bootstrap, scan to journaled decision"
                f" (FIFO in, stdout out): p50 {statistics.median(ordered) * 1000:.1f} ms,"
                f" p99 {ordered[int(len(ordered) * 0.99) - 1] * 1000:.1f} ms,"
                f" max {ordered[-1] * 1000:.1f} ms; at rest p50"
                f" {statistics.median(idle) * 1000:.1f} ms, max {max(idle) * 1000:.1f} ms"
            )
    finally:
        gate.kill(signal.SIGTERM)
        central.close()


def upload(directory: Path, entries: int) -> None:
    """A gate reconnects with `entries` journal rows queued; time until all are acknowledged."""
    central, (gate,) = _venue(directory, 1)
    key = SigningKey(1, central.db.keys.signer()[1])
    # The store gets its queue before the daemon starts: one bulk transaction, as if the
    # gate had been scanning offline for a long day.
    gate.start("http://127.0.0.1:9", pull_interval=600.0)  # creates and migrates the store
    gate.kill(signal.SIGTERM)
    conn = sqlite3.connect(gate.store_path)
    now = int(time.time() * 1000)
    code = mint(Claims(key.key_id, 1, Kind.TICKET), key.private)
    code_hash = parse(code.encode()).hash
    with conn:
        # Half admitted (each becomes a passage change the central system publishes), half
        # rejected, as at a busy gate.
        conn.executemany(
            "INSERT INTO journal (at, lane, direction, reason, admitted, code_hash, code_hint,"
            " credential_id) VALUES (?, 'lane', 'entry', ?, ?, ?, '…ABCD', ?)",
            [
                (now + i, "admitted" if i % 2 else "already-used", i % 2, code_hash, i // 2 + 1)
                for i in range(entries)
            ],
        )
    conn.close()
    url = central.start()
    try:
        started = time.perf_counter()
        gate.start(url, pull_interval=600.0)
        took = wait_for(lambda: gate.unsent() == 0, 600, "upload")
        took = time.perf_counter() - started
        held = central.db.journals.count(gate.name)
        print(
            f"upload of {entries:,} queued journal entries: {took:.1f} s from gate start"
            f" ({entries / took:,.0f}/s; {held:,} held by the central system; target <= 10 s)"
        )
    finally:
        gate.kill(signal.SIGTERM)
        central.close()


def faults(directory: Path, rounds: int) -> None:
    """Fault rounds through proxies with SIGKILLs; lost and duplicated rows afterwards."""
    seed = int(time.time())
    started = time.perf_counter()
    report = fault_rounds.run(directory, rounds, seed=seed)
    took = time.perf_counter() - started
    injected = sum(n for fault, n in report.faults.items() if fault != "pass")
    print(
        f"fault rounds: {report.rounds} rounds (seed {seed}), {report.scans} scans,"
        f" {report.changes} changes, {injected} injected faults"
        f" ({', '.join(f'{k} {v}' for k, v in sorted(report.faults.items()))}),"
        f" {report.gate_kills} gate and {report.central_kills} central SIGKILLs in {took:.0f} s"
    )
    print(
        f"  lost {report.lost}, duplicated {report.duplicated}, entry-count mismatches"
        f" {report.entry_mismatches} of {report.journal_rows} journal rows; converged"
        f" {report.converge_seconds:.1f} s after the faults stopped"
        + (f"; NOT converged: {report.behind}" if report.behind else "")
    )


def main() -> None:
    """Run the chosen figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the issue's sizes")
    parser.add_argument("--only", choices=["latency", "bootstrap", "upload", "faults"])
    parser.add_argument("--gates", type=int, default=10)
    parser.add_argument("--revocations", type=int, help="latency: revocations (default 1000)")
    parser.add_argument("--credentials", type=int, help="bootstrap size (each of two tables)")
    parser.add_argument("--entries", type=int, default=100_000, help="upload: queued entries")
    parser.add_argument("--rounds", type=int, default=200, help="fault rounds")
    parser.add_argument(
        "--postgres",
        nargs="?",
        const="",
        help="run the central on PostgreSQL: this DSN, or a throwaway cluster if none is given",
    )
    args = parser.parse_args()
    cluster = None
    if args.postgres is not None:
        if args.postgres:
            _DATABASES.append(lambda: str(args.postgres))
        else:
            from pgcluster import Cluster  # noqa: PLC0415 - only with --postgres

            cluster = Cluster()
            _DATABASES.append(cluster.database)
    try:
        _figures(args)
    finally:
        if cluster is not None:
            cluster.stop()


def _figures(args: argparse.Namespace) -> None:
    size = args.credentials or (1_000_000 if args.full else 200_000)
    figures: dict[str, Callable[[Path], None]] = {
        "latency": lambda d: latency(d, args.gates, args.revocations or 1000),
        "bootstrap": lambda d: bootstrap(d, size, size),
        "upload": lambda d: upload(d, args.entries),
        "faults": lambda d: faults(d, args.rounds),
    }
    for name, figure in figures.items():
        if args.only in (None, name):
            with tempfile.TemporaryDirectory(prefix=f"edge-bench-{name}-") as directory:
                figure(Path(directory))


if __name__ == "__main__":
    main()
