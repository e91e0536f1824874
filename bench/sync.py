"""Sync figures: push-to-enforced latency, bootstrap, journal upload, fault rounds.

    ./dev bench sync                      # about two minutes: smaller bootstrap, fewer rounds
    ./dev bench sync --full               # the issue's sizes (1M + 1M bootstrap, 200 rounds)
    ./dev bench sync --only latency       # one figure
    ./dev bench sync --only bootstrap --full --postgres   # the central on PostgreSQL
    ./dev bench sync --only bootstrap --full --postgres DSN --reuse --trace DIR
        # prepare the central in DSN's database once and reuse it; a per-chunk timeline of
        # both sides (central read and seal, gate fetch, open and write), logs kept in DIR
    ./dev bench sync --only bootstrap --full --postgres --scan-interval 0.05
        # scans paced at 20 a second instead of back to back: the loop otherwise takes the
        # CPU it frees (the faster scans are answered, the more of them)

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
from edge.store.base import journal_path  # noqa: E402
from sync.protocol import CredentialChange, Revocation, RevokeCode  # noqa: E402

# With --postgres: what makes each figure's central database (a PostgreSQL DSN); without, a
# SQLite file per figure.
_DATABASES: list[Callable[[], str]] = []


def _venue(
    directory: Path, gates: int, *, reuse: bool = False
) -> tuple[CentralProcess, list[GateProcess]]:
    """A central and its gates; with `reuse`, the central's database may hold a previous
    run's state: its signing key stays and the gates are registered afresh."""
    central = CentralProcess(directory / "central", _DATABASES[0]() if _DATABASES else None)
    if not (reuse and central.db.keys.public_keys()):
        central.db.keys.add()
    key_id = central.db.keys.signer()[0]
    public = {k: p for k, p, _ in central.db.keys.public_keys()}[key_id]
    public_b64 = base64.b64encode(public).decode()
    fleet = [
        GateProcess(directory / f"gate{i}", f"gate-{i}", key_id, public_b64) for i in range(gates)
    ]
    for gate in fleet:
        if reuse and central.db.devices.public_key(gate.name) is not None:
            central.db.devices.remove(gate.name)
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


def _prepare(central: CentralProcess, credentials: int, revocations: int) -> None:
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


def _prepared(central: CentralProcess, credentials: int, revocations: int) -> bool:
    """Whether the central's database holds exactly what `_prepare` makes of these sizes."""
    rows = central.db.connection.row(
        "SELECT (SELECT count(*) FROM view_credentials), (SELECT count(*) FROM"
        " view_revoked_codes), (SELECT count(*) FROM changes)"
    )
    return tuple(rows[:2]) == (credentials, revocations) and int(rows[2]) > 0


def bootstrap(
    directory: Path,
    credentials: int,
    revocations: int,
    *,
    reuse: bool,
    trace: Path | None,
    scan_interval: float = 0.0,
) -> None:
    """A gate's first start against a central system holding this much state."""
    central, (gate,) = _venue(directory, 1, reuse=reuse)
    if reuse and _prepared(central, credentials, revocations):
        print(f"  (central reused: {central.db.log.head():,} changes prepared before)")
    else:
        _prepare(central, credentials, revocations)
    if trace is not None:
        central.verbose = gate.verbose = 2
    url = central.start()
    sampler = _ActivitySampler(central) if trace is not None else None
    try:
        head = central.db.log.head()
        key_id, key, _ = central.db.keys.signer()
        code = mint(Claims(key_id, 10**9, Kind.TICKET), key)
        load = os.getloadavg()[0]
        started = time.perf_counter()
        gate.start(url, pull_interval=600.0)
        sides = _sides(central, gate)
        cpu_before = _cpu_seconds(sides)
        scans: list[float] = []  # scanning goes on while the snapshot is written
        while (gate.revision() or 0) < head:
            scan_started = time.perf_counter()
            gate.scan(code)
            scans.append(time.perf_counter() - scan_started)
            if time.perf_counter() - started > 600:
                raise SystemExit("bootstrap did not finish in 600 s")
            if scan_interval:
                time.sleep(max(0.0, scan_started + scan_interval - time.perf_counter()))
        took = time.perf_counter() - started
        cpu = {k: v - cpu_before.get(k, 0.0) for k, v in _cpu_seconds(sides).items()}
        idle = []
        for _ in range(200):  # the same round trip with the store at rest, for comparison
            scan_started = time.perf_counter()
            gate.scan(code)
            idle.append(time.perf_counter() - scan_started)
        print(
            f"bootstrap of {credentials:,} credentials + {revocations:,} revocations:"
            f" {took:.1f} s from gate start to revision {head:,}"
            f" ({(credentials + revocations) / took:,.0f} items/s; target <= 30 s for 1M + 1M)"
            f"; load average {load:.1f} before, {os.getloadavg()[0]:.1f} after"
        )
        print(
            f"  CPU seconds in that time ({os.cpu_count()} cores here): "
            + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
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
        if trace is not None and sampler is not None:
            sampler.stop()
            _print_trace(trace, central, gate, sampler)
    finally:
        if sampler is not None:
            sampler.stop()
        gate.kill(signal.SIGTERM)
        central.close()


def _descendants(roots: list[int]) -> set[int]:
    """These processes and all their children, grandchildren..."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def _cpu_seconds(sides: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds of each side's process tree, children that exited and were
    waited for included (a negative pid: that process alone, without any children); of live
    processes, so read the figures before stopping any."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[str, float] = {}
    for side, root in sides.items():
        for pid in {-root} if root < 0 else _descendants([root]):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            used = int(fields[11]) + int(fields[12])
            if root > 0:
                used += int(fields[13]) + int(fields[14])
            found[side] = found.get(side, 0.0) + used / tick
    return found


def _sides(central: CentralProcess, gate: GateProcess) -> dict[str, int]:
    """The process tree of each side: the gate (its daemon alone, and with its bulk workers),
    the central, and its database server if it runs here (PostgreSQL: the postmaster of a
    backend)."""
    assert central.process is not None
    assert gate.process is not None
    sides = {
        "gate": gate.process.pid,
        "of which its daemon": -gate.process.pid,
        "edge-central": central.process.pid,
    }
    if _DATABASES:
        backend = int(central.db.connection.row("SELECT pg_backend_pid()")[0])
        stat = Path(f"/proc/{backend}/stat")
        if stat.exists():
            sides["PostgreSQL"] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    return sides


class _ActivitySampler:
    """What PostgreSQL's backends are doing, sampled every 20 ms (`--trace`)."""

    def __init__(self, central: CentralProcess) -> None:
        import threading  # noqa: PLC0415 - only with --trace

        self.samples: dict[str, int] = {}
        self._central = central
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(0.02):
            rows = self._central.db.connection.rows(
                "SELECT backend_type, state, coalesce(wait_event_type || ':' || wait_event, 'CPU')"
                " FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
                " AND (state IS NULL OR state <> 'idle')"
            )
            for backend, state, wait in rows:
                name = f"{backend} {state or ''} {wait}".replace("  ", " ")
                self.samples[name] = self.samples.get(name, 0) + 1

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()


def _print_trace(
    trace: Path, central: CentralProcess, gate: GateProcess, sampler: _ActivitySampler
) -> None:
    """Per chunk: the central's query and seal, the gate's receive, open and write (ms)."""
    import re  # noqa: PLC0415 - only with --trace
    import shutil  # noqa: PLC0415

    trace.mkdir(parents=True, exist_ok=True)
    shutil.copy(central.log, trace / "central.log")
    shutil.copy(gate.log, trace / "gate.log")
    served = re.findall(
        r"snapshot chunk from (.+?): (\d+) items, (\d+) bytes, query (\d+) ms, seal (\d+) ms",
        central.log.read_text(),
    )
    text = gate.log.read_text()
    fetched = re.findall(r"snapshot chunk from .+?: \d+ bytes in (\d+) ms, opened in (\d+)", text)
    written = re.findall(r"snapshot chunk of \d+ items written \(waited (\d+) ms\)", text)
    print(f"  trace in {trace}: chunk, section, items, bytes, central query/seal ms,")
    print("  gate request-to-answer ms (central work included), open ms, ms waited for the write")
    for i, (section, items, size, query, seal) in enumerate(served):
        got = fetched[i] if i < len(fetched) else ("-", "-")
        wrote = written[i] if i < len(written) else "-"
        print(
            f"  {i:3} {section:13} {int(items):6} {int(size):9} {query:>5} {seal:>4}"
            f"  {got[0]:>5} {got[1]:>5} {wrote:>5}"
        )
    summary = re.search(r"bootstrapped .*", text)
    if summary:
        print(f"  gate: {summary.group(0)}")
    total = sum(sampler.samples.values()) or 1
    print("  PostgreSQL activity (20 ms samples of non-idle backends):")
    for name, count in sorted(sampler.samples.items(), key=lambda i: -i[1])[:12]:
        print(f"    {count:6} ({count / total:4.0%}) {name}")


def upload(directory: Path, entries: int) -> None:
    """A gate reconnects with `entries` journal rows queued; time until all are acknowledged."""
    central, (gate,) = _venue(directory, 1)
    key = SigningKey(1, central.db.keys.signer()[1])
    # The store gets its queue before the daemon starts: one bulk transaction, as if the
    # gate had been scanning offline for a long day.
    gate.start("http://127.0.0.1:9", pull_interval=600.0)  # creates and migrates the store
    gate.kill(signal.SIGTERM)
    conn = sqlite3.connect(journal_path(str(gate.store_path)))
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
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="bootstrap: with --postgres DSN, keep the central prepared there and reuse it on"
        " the next run of the same size (PostgreSQL has vacuumed it by then: a fresh one costs"
        " more, see docs/operations.md)",
    )
    parser.add_argument(
        "--scan-interval",
        type=float,
        default=0.0,
        help="bootstrap: seconds from one scan's start to the next (default 0: back to back)",
    )
    parser.add_argument(
        "--trace",
        type=Path,
        help="bootstrap: keep both logs in this folder and print a per-chunk timeline",
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
        "bootstrap": lambda d: bootstrap(
            d, size, size, reuse=args.reuse, trace=args.trace, scan_interval=args.scan_interval
        ),
        "upload": lambda d: upload(d, args.entries),
        "faults": lambda d: faults(d, args.rounds),
    }
    for name, figure in figures.items():
        if args.only in (None, name):
            with tempfile.TemporaryDirectory(prefix=f"edge-bench-{name}-") as directory:
                figure(Path(directory))


if __name__ == "__main__":
    main()
