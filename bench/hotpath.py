"""The scan never waits: scan-to-relay latency at 20 scans/s under each background load.

    ./dev bench hotpath                  # the issue's sizes (1M + 1M bootstrap, 800,000 import)
    ./dev bench hotpath --scale 0.1      # a tenth of every load, for a quick look
    ./dev bench hotpath --only import    # one load

The gate runs on one core (this process pins itself and its children to CPU 0, as
`taskset -c 0` does); `edge-central`, the central system's server, runs on another core when
there is one (`--central-cpu 0` puts it on the gate's core too): on a venue's one-core gate
it is not there, and on the gate's core its work for a bootstrap raised the p99 of the scans'
decision (parse, facts, verify) from 0.6 to 2.4-3.3 ms. A real `edge run` reads a serial
scanner on one pseudo-terminal and drives an LCUS-type relay on another; this process plays
both devices, sends a new ticket every 50 ms and stops the clock when the relay's "on" frame
arrives. Each load runs in its
own daemon (with `edge-central` where the load needs it) while the scans go on; of those
with `edge-central`, the bootstrap runs first and the others start at the central's head,
so none pulls what a load before it left there. A load over
before it had as many scans as the idle run (`--seconds` x 20) runs again in a new daemon, up
to MAX_ROUNDS times, and its figures pool the rounds (the bootstrap runs once: it is long). A scan
without a relay frame within a second is counted as refused. Then, in this process: decide
+ journal through the gate beside one bare fsync'd WAL commit and one Ed25519 verification;
the daemon's start to first decision and its RSS; `edge --version`.
Prints every figure beside its limit; asserts nothing (the machines are shared and noisy).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import compileall
import contextlib
import os
import resource
import select
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import tty
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey  # noqa: E402
from integration.sync_harness import CentralProcess, free_port  # noqa: E402

from drivers.gates.lcus import RelayCommand  # noqa: E402
from edge.core.codes import Claims, Kind, SignedCode, mint, parse  # noqa: E402
from edge.core.decide import GateRules  # noqa: E402
from edge.core.facts import Direction, TrustedKey  # noqa: E402
from edge.gate.gate import Gate  # noqa: E402
from edge.ops import identity  # noqa: E402
from edge.store.base import journal_path  # noqa: E402
from edge.store.database import Store  # noqa: E402
from sync import protocol  # noqa: E402
from sync.protocol import (  # noqa: E402
    CredentialChange,
    EnvelopeKind,
    JournalRecord,
    Revocation,
    RevokeCode,
)

RELAY_ON = RelayCommand(1, on=True).to_bytes()
RATE = 20.0  # scans per second, steady
REFUSED_SECONDS = 1.0  # a relay frame later than this counts the scan as refused
START_TIMEOUT = 30.0
P99_LIMIT_MS, MAX_LIMIT_MS, IDLE_P99_LIMIT_MS = 10.0, 50.0, 3.0
START_LIMIT_MS, RSS_LIMIT_MB, VERSION_LIMIT_MS = 400.0, 45.0, 150.0
DEAD_URL = "http://127.0.0.1:9"  # pushes only: pulls fail and back off
FULL = {
    "bootstrap": 1_000_000,
    "push": 28_500,
    "upload": 100_000,
    "passages": 200_000,  # other gates' passages a gate back online catches up on
    "import": 800_000,
    "monitoring": 1_000_000,  # journal rows not uploaded while /metrics and /health are read
}
MAX_ROUNDS = 6  # runs of one load at most, until it has as many scans as the idle run
SCRAPE_SECONDS, SCRAPES = 0.1, 50  # monitoring: a scrape of /metrics and /health this often


class Pty:
    """One device end of a pseudo-terminal pair."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.buffer = bytearray()

    def wait_frame(self, frame: bytes, timeout: float) -> bool:
        """Read until `frame` arrived (frames are 4-byte aligned); False on timeout."""
        deadline = time.monotonic() + timeout
        buffer = self.buffer
        while True:
            for i in range(0, len(buffer) - 3, 4):
                if buffer[i : i + 4] == frame:
                    del buffer[: i + 4]
                    return True
            del buffer[: len(buffer) - len(buffer) % 4]
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.master], [], [], left)[0]:
                return False
            buffer += os.read(self.master, 4096)

    def drain(self) -> None:
        """Drop whatever the daemon wrote so far."""
        while select.select([self.master], [], [], 0)[0]:
            os.read(self.master, 65536)
        self.buffer.clear()

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)


class Tickets:
    """New signed tickets, one per scan, minted ahead so minting costs nothing while timing."""

    def __init__(self, key_id: int, key: object, count: int) -> None:
        self._codes = iter(
            [
                mint(Claims(key_id, 10**9 + n, Kind.TICKET, event_id=1), key).encode()  # type: ignore[arg-type]
                for n in range(count)
            ]
        )

    def __next__(self) -> bytes:
        return next(self._codes)


class Daemon:
    """`edge run` for one gate lane on two ptys, optionally syncing."""

    def __init__(self, directory: Path, key_id: int, public_b64: str, sync_url: str = "") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.syncing = bool(sync_url)
        self.store = directory / "edge.db"
        self.scanner, self.relay = Pty(), Pty()
        self.identity = identity.ensure(identity.path_for(self.store))
        self.push_port = free_port()
        self.metrics_port = free_port()  # not 9101: an edge of this machine may use it
        sync = ""
        if sync_url:
            sync = (
                f'[sync]\nurl = "{sync_url}"\npush_port = {self.push_port}\n'
                "pull_interval_seconds = 600\ntimeout_seconds = 30\n"
            )
        self.config = directory / "gate.toml"
        self.config.write_text(
            f"""
[device]
name = "{directory.name}"
store = "edge.db"
repeat_window_ms = 0

[[keys]]
id = {key_id}
public = "{public_b64}"

[[scanners]]
name = "scanner"
type = "serial"
url = "{self.scanner.path}"
baud = 115200

[[actuators]]
name = "turnstile"
type = "serial-relay"
url = "{self.relay.path}"
pulse_ms = 50

[[lanes]]
name = "lane-1"
actuator = "turnstile"
entry = ["scanner"]

[metrics]
port = {self.metrics_port}

{sync}""",
            encoding="utf-8",
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.start_cpu = 0.0

    def start(self) -> None:
        """Start the daemon (its log goes to the directory)."""
        with (self.directory / "daemon.log").open("ab") as log:
            self.started = time.perf_counter()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edge.cli", "run", "--config", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    def first_decision(self, tickets: Tickets) -> float:
        """Scan until the relay moves; seconds from start to the first relay frame.

        A code goes in every 20 ms until the lane answers; the lane then works through the
        ones it queued meanwhile, so this waits until the relay has been quiet for a second.
        """
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            os.write(self.scanner.master, next(tickets) + b"\r\n")
            if self.relay.wait_frame(RELAY_ON, 0.02):
                took = time.perf_counter() - self.started
                self.start_cpu = self.cpu_seconds()
                while self.relay.wait_frame(RELAY_ON, 1.0):
                    pass
                self.relay.drain()
                return took
            assert self.process is not None
            if self.process.poll() is not None:
                raise SystemExit(f"the daemon died: {self.log()}")
        raise SystemExit(f"no decision {START_TIMEOUT} s after start: {self.log()}")

    def cpu_seconds(self) -> float:
        """CPU time the daemon used so far (user + system): start-up cost on a shared core."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> tuple[float, float]:
        """The daemon's resident memory now and at its peak, MB."""
        assert self.process is not None
        values = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                values[line[:5]] = int(line.split()[1]) / 1024
        return values["VmRSS"], values["VmHWM"]

    def log(self) -> str:
        return (self.directory / "daemon.log").read_text(errors="replace")[-3000:]

    def revision(self) -> int:
        conn = sqlite3.connect(f"file:{self.store}?mode=ro", uri=True, timeout=10)
        try:
            row = conn.execute(
                "SELECT value FROM sync_cursors WHERE name = 'sync.revision'"
            ).fetchone()
        except sqlite3.OperationalError:
            return -1
        finally:
            conn.close()
        return int(row[0]) if row and row[0] else -1

    def uploading(self) -> bool:
        """Whether a journal row is still unsent: one look into the unsent index (0.1 ms),
        where a count of a 100,000-row backlog took 4.5 ms of the gate's core every 50 ms."""
        journal = journal_path(str(self.store))
        conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=10)
        try:
            query = "SELECT EXISTS (SELECT 1 FROM journal WHERE uploaded = 0)"
            return bool(conn.execute(query).fetchone()[0])
        finally:
            conn.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.scanner.close()
        self.relay.close()


class Figures:
    """Latencies of one load."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.refused = 0
        self.note = ""

    def line(self, name: str, p99_limit: float) -> str:
        if not self.samples:
            return f"{name:<34} no scans ({self.refused} refused)"
        ordered = sorted(self.samples)
        p50 = ordered[len(ordered) // 2] * 1000
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
        return (
            f"{name:<34} {len(ordered):5d} scans  p50 {p50:6.2f}  p99 {p99:7.2f} ms"
            f" (<= {p99_limit:g})  max {ordered[-1] * 1000:7.2f} ms (<= {MAX_LIMIT_MS:g})"
            f"  refused {self.refused} (0)"
        )


def scan_while(
    daemon: Daemon, tickets: Tickets, busy: Callable[[], bool], minimum: float
) -> Figures:
    """A scan every 1/RATE s while `busy()` (and at least `minimum` s)."""
    figures = Figures()
    started = time.perf_counter()
    n = 0
    while busy() or time.perf_counter() - started < minimum:
        due = started + n / RATE
        n += 1
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        code = next(tickets)
        t0 = time.perf_counter()
        os.write(daemon.scanner.master, code + b"\r\n")
        if daemon.relay.wait_frame(RELAY_ON, REFUSED_SECONDS):
            figures.samples.append(time.perf_counter() - t0)
        else:
            figures.refused += 1
    return figures


class Load(threading.Thread):
    """A background load in a thread (mostly waiting on another process); `done` when over."""

    def __init__(self, work: Callable[[], str]) -> None:
        super().__init__(daemon=True)
        self._work = work
        self.result = ""
        self.done = threading.Event()

    def run(self) -> None:
        try:
            self.result = self._work()
        except BaseException as err:
            self.result = f"FAILED: {err!r}"
        finally:
            self.done.set()


def _prepare_store(daemon: Daemon, revision: int | None, journal_rows: int = 0) -> None:
    """Create and migrate the daemon's store ahead of its start; seed a revision or a backlog."""

    async def prepare() -> None:
        store = await Store.open(daemon.store)
        await store.close()

    asyncio.run(prepare())
    if revision is not None:
        with contextlib.closing(sqlite3.connect(daemon.store)) as conn, conn:
            conn.execute("INSERT INTO sync_cursors VALUES ('sync.revision', ?)", (str(revision),))
    conn = sqlite3.connect(journal_path(str(daemon.store)))
    with conn:
        now = int(time.time() * 1000)
        conn.executemany(
            "INSERT INTO journal (at, lane, direction, reason, admitted, code_hash, code_hint,"
            " credential_id) VALUES (?, 'lane', 'entry', ?, ?, ?, '…ABCD', ?)",
            [
                (now + i, "admitted" if i % 2 else "already-used", i % 2, os.urandom(16), i + 1)
                for i in range(journal_rows)
            ],
        )
    conn.close()


def _revocations(n: int) -> list[RevokeCode]:
    return [RevokeCode(os.urandom(16), Revocation.REVOKED) for _ in range(n)]


class Venue:
    """A central database (its key signs every ticket) and the scratch directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.central = CentralProcess(directory / "central")
        self.key_id = self.central.db.keys.add()
        _, key, self.chain = self.central.db.keys.signer()
        self.key = key
        self.public_b64 = base64.b64encode(self.central.db.keys.public_keys()[0][1]).decode()

    def daemon(self, name: str, sync_url: str = "") -> Daemon:
        daemon = Daemon(self.directory / name, self.key_id, self.public_b64, sync_url)
        self.central.db.devices.add(name, base64_decode(daemon.identity.public_b64))
        return daemon


def base64_decode(text: str) -> bytes:
    return base64.b64decode(text)


def run_load(
    venue: Venue,
    name: str,
    tickets: Tickets,
    seconds: float,
    *,
    sync: str = "",
    revision: int | Callable[[], int] | None = None,
    journal_rows: int = 0,
    work: Callable[[Daemon], str] | None = None,
    report: list[str],
    started_figures: dict[str, float] | None = None,
    min_scans: int = 0,
) -> None:
    """Start a daemon, scan at RATE while `work` runs beside it, print the figures.

    A load over before `min_scans` scans runs again in a new daemon (at most MAX_ROUNDS
    times) and the figures pool the rounds: of 60-90 scans (an upload, five pushes) the p99 is
    the slowest scan, and one burst of the shared machine's noise decided it."""
    figures = Figures()
    rounds = 0
    while rounds < MAX_ROUNDS and (rounds == 0 or len(figures.samples) < min_scans):
        rounds += 1
        daemon = venue.daemon(name if rounds == 1 else f"{name} {rounds}", sync)
        if revision is not None or journal_rows:
            _prepare_store(daemon, revision() if callable(revision) else revision, journal_rows)
        got = _one_round(daemon, tickets, seconds, work, started_figures if rounds == 1 else None)
        figures.samples += got.samples
        figures.refused += got.refused
        print(f"    round {rounds}: {len(got.samples)} scans; {got.note}", flush=True)
    limit = IDLE_P99_LIMIT_MS if work is None else P99_LIMIT_MS
    line = figures.line(name, limit) + (f" in {rounds} rounds" if rounds > 1 else "")
    print(line, flush=True)
    report.append(line)


def _one_round(
    daemon: Daemon,
    tickets: Tickets,
    seconds: float,
    work: Callable[[Daemon], str] | None,
    started_figures: dict[str, float] | None,
) -> Figures:
    """One daemon: start it, scan while `work` runs, stop it; the note tells the load's
    result and the daemon's memory."""
    try:
        daemon.start()
        start_s = daemon.first_decision(tickets)
        if started_figures is not None:
            started_figures["start"] = start_s
            started_figures["start_cpu"] = daemon.start_cpu
        load = Load((lambda: work(daemon)) if work else (lambda: "no background load"))
        load.start()
        figures = scan_while(daemon, tickets, lambda: not load.done.is_set(), seconds)
        load.join()
        rss, hwm = daemon.rss_mb()
        if started_figures is not None:
            started_figures["rss"], started_figures["hwm"] = rss, hwm
        sync_note = "syncing with a central system" if daemon.syncing else "no sync configured"
        figures.note = (
            f"{load.result}\n    the daemon's RSS {rss:.1f} MB, peak {hwm:.1f} MB ({sync_note})"
        )
        return figures
    finally:
        daemon.stop()


def monitoring_load() -> Callable[[Daemon], str]:
    """Read /metrics and /health every SCRAPE_SECONDS (a Prometheus, a status page and a
    health check at once), while the journal holds a backlog (seeded: no sync configured)."""

    def work(daemon: Daemon) -> str:
        took, pages = [], {}
        for _ in range(SCRAPES):
            started = time.perf_counter()
            for path in ("/metrics", "/health"):
                url = f"http://127.0.0.1:{daemon.metrics_port}{path}"
                with urllib.request.urlopen(url, timeout=10) as response:
                    pages[path] = response.read().decode()
            took.append(time.perf_counter() - started)
            time.sleep(SCRAPE_SECONDS)
        took.sort()
        lines = pages["/metrics"].splitlines()
        gauge = [line for line in lines if line.startswith("edge_journal_unsent ")]
        unsent = gauge[0].split()[1] if gauge else "?"
        return (
            f"{SCRAPES} reads of /metrics and /health, every {SCRAPE_SECONDS * 1000:.0f} ms:"
            f" p50 {took[len(took) // 2] * 1000:.1f} ms; edge_journal_unsent {unsent}"
        )

    return work


def bootstrap_load(venue: Venue, size: int) -> Callable[[Daemon], str]:
    started = time.perf_counter()
    batch = 100_000
    for first in range(1, size + 1, batch):
        venue.central.db.log.publish(
            [
                CredentialChange(cid, 0, 7, 10, 0, 1, 0, None, None, 0, paid=True)
                for cid in range(first, min(first + batch, size + 1))
            ]
        )
    for first in range(0, size, batch):
        venue.central.db.log.publish(_revocations(min(batch, size - first)))
    print(f"  (central prepared {size:,} + {size:,} in {time.perf_counter() - started:.0f} s)")
    head = venue.central.db.log.head()

    def work(daemon: Daemon) -> str:
        while daemon.revision() < head:
            time.sleep(0.05)
        took = time.perf_counter() - daemon.started
        return (
            f"bootstrap of {size:,} credentials + {size:,} revocations: {took:.1f} s from"
            f" daemon start to revision {head:,} (no regression against today's)"
        )

    return work


def ingest_passages(target: str, count: int, first_seq: int) -> None:
    """In a process of its own on the central's CPU: the central database takes `count`
    admitted passages of Catchup.GATES other gates, 10,000 at a time, as their uploads would
    bring them; prints the head after them."""
    from sync.central.db import CentralDB  # noqa: PLC0415

    db = CentralDB(target)
    now = int(time.time() * 1000)
    per_gate = -(-count // Catchup.GATES)
    for gate in range(Catchup.GATES):
        for first in range(0, per_gate, 10_000):
            records = [
                JournalRecord(
                    seq=first_seq + i,
                    at_ms=now + i,
                    lane="lane",
                    direction="entry" if i % 3 else "exit",
                    reason="admitted",
                    admitted=True,
                    code_hash=os.urandom(16),
                    credential_id=1 + i % 500_000,
                )
                for i in range(first, min(first + 10_000, per_gate))
            ]
            db.journals.ingest(f"other-gate-{gate + 1}", records)
    print(db.log.head(), flush=True)


class Catchup:
    """Other gates' passages arriving while the lane scans: the daemon starts at the central's
    head (`seed`); then the central takes `count` new passages of GATES other gates (uploaded
    there, in a process on the central's CPU), pushes them to the daemon, which counts them
    in its journal file (`work`: until its revision reaches the central's head)."""

    GATES = 20

    def __init__(self, venue: Venue, count: int, central_cpu: int) -> None:
        self._venue = venue
        self._count = count
        self._cpu = central_cpu
        self._seq = 1  # each round's passages are new ones

    def seed(self) -> int:
        return self._venue.central.db.log.head()

    def work(self, daemon: Daemon) -> str:
        started = time.perf_counter()
        code = (
            f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import hotpath;"
            f" hotpath.ingest_passages({self._venue.central.target!r}, {self._count},"
            f" {self._seq})"
        )
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            check=True,
            preexec_fn=lambda: os.sched_setaffinity(0, {self._cpu}),
        )
        self._seq += self._count
        head = int(done.stdout.split()[-1])
        ingested = time.perf_counter() - started
        while daemon.revision() < head:
            time.sleep(0.05)
        counted = time.perf_counter() - started
        return (
            f"{self._count:,} passages of {self.GATES} other gates: taken by the central in"
            f" {ingested:.1f} s, all counted at the gate after {counted:.1f} s"
        )


def push_load(venue: Venue, per_push: int, pushes: int = 5) -> Callable[[Daemon], str]:
    def seal(first: int, count: int) -> bytes:
        return protocol.seal(
            EnvelopeKind.CHANGES,
            venue.key_id,
            venue.key,
            first=first,
            last=first + count,
            at_ms=int(time.time() * 1000),
            changes=_revocations(count),
            chain=venue.chain,
        )

    # As many revocations as fit one push (1 MiB), up to `per_push`.
    probe = seal(0, per_push)
    if len(probe) > protocol.MAX_PUSH_BYTES:
        per_push = int(per_push * protocol.MAX_PUSH_BYTES / len(probe) * 0.995)
    bodies = [seal(i * per_push, per_push) for i in range(pushes)]
    sizes = ", ".join(f"{len(b) / 1024:.0f} KiB" for b in bodies[:1])

    def work(daemon: Daemon) -> str:
        answers = []
        started = time.perf_counter()
        for body in bodies:
            request = urllib.request.Request(
                f"http://127.0.0.1:{daemon.push_port}/v1/push",
                data=body,
                headers={"Content-Type": protocol.CONTENT_TYPE},
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                answers.append(protocol.fields(response.read(), "push answer").text("status"))
            time.sleep(0.5)
        return (
            f"{pushes} pushes of {per_push:,} revocations ({sizes} each): {answers},"
            f" {time.perf_counter() - started:.1f} s including 0.5 s pauses"
        )

    return work


def upload_load(rows: int) -> Callable[[Daemon], str]:
    def work(daemon: Daemon) -> str:
        started = time.perf_counter()
        while daemon.uploading():
            time.sleep(0.05)
        return f"upload of {rows:,} journal rows: {time.perf_counter() - started:.1f} s"

    return work


def import_load(venue: Venue, size: int) -> Callable[[Daemon], str]:
    started = time.perf_counter()
    path = venue.directory / "bundle.edge"
    path.write_bytes(
        protocol.seal(
            EnvelopeKind.BUNDLE,
            venue.key_id,
            venue.key,
            first=0,
            last=size,
            at_ms=int(time.time() * 1000),
            changes=_revocations(size),
            chain=venue.chain,
        )
    )
    print(
        f"  (bundle of {size:,} revocations, {path.stat().st_size / 2**20:.1f} MiB,"
        f" written in {time.perf_counter() - started:.0f} s)"
    )

    def work(daemon: Daemon) -> str:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "edge.cli", "import", str(path), "--config", str(daemon.config)],
            capture_output=True,
            text=True,
            check=False,
        )
        took = time.perf_counter() - started
        out = (done.stdout + done.stderr).strip().replace("\n", " | ")[-200:]
        return f"edge import of {size:,} revocations: exit {done.returncode} in {took:.1f} s: {out}"

    return work


PACED_SECONDS = 0.002  # between two scans of the paced run: the CPU idles, as at a gate


def decide_journal(directory: Path, venue: Venue, count: int) -> str:
    """Gate.admit in this process beside a bare fsync'd WAL commit and one Ed25519 verify.

    Twice: back to back, and PACED_SECONDS apart (at a gate a scan finds the CPU idle, which
    is slower here: a bare commit's p50 doubles). The kinds take turns scan by scan, so a burst
    of the shared machine's noise falls on all of them: in blocks of 250 one kind each, the
    admit's p99 over its limit ranged from 0.74 to 1.95 in three runs, scan by scan from 0.78
    to 1.03. The admit through the writer thread (as before) runs after them: its two thread
    switches slowed the direct admit that followed (0.2 ms more at the p50)."""
    bare = sqlite3.connect(directory / "bare.db", isolation_level=None)
    bare.execute("PRAGMA journal_mode = WAL")
    bare.execute("PRAGMA synchronous = FULL")
    bare.execute("CREATE TABLE t (a INTEGER, b BLOB)")
    public = venue.central.db.keys.public_keys()[0][1]
    serials = iter(range(2 * 10**9, 3 * 10**9))
    codes = [
        mint(Claims(venue.key_id, next(serials), Kind.TICKET, event_id=1), venue.key).encode()
        for _ in range(4 * count)
    ]
    parsed = parse(codes[0])
    assert isinstance(parsed, SignedCode)
    signed, signature = parsed.signed, parsed.signature
    # The scan path's verification (TrustedKey: libsodium) beside cryptography's.
    trusted = TrustedKey(venue.key_id, public)
    openssl = Ed25519PublicKey.from_public_bytes(public)

    async def measure(gap: float) -> dict[str, list[float]]:
        store = await Store.open(directory / f"decide-{gap}.db")
        await store.put_keys([(venue.key_id, public, False)])
        gate = Gate(store)
        rules = GateRules(gate="bench")
        writer = store._journal
        here = writer._here
        out: dict[str, list[float]] = {k: [] for k in ("bare", "verify", "openssl", "admit", "hop")}

        def commit() -> None:
            bare.execute("BEGIN IMMEDIATE")
            bare.execute("INSERT INTO t VALUES (?, ?)", (len(out["bare"]), b"x" * 16))
            bare.execute("COMMIT")

        async def admit(*, hop: bool) -> None:
            # As before the writer committed on the caller's thread: through the writer
            # thread, two hand-offs.
            writer._here = (lambda job: None) if hop else here  # type: ignore[method-assign]
            await gate.admit(codes.pop(), rules, Direction.ENTRY)

        kinds: list[tuple[str, Callable[[], object]]] = [
            ("bare", commit),
            ("verify", lambda: trusted.verify(signed, signature)),
            ("openssl", lambda: openssl.verify(signature, signed)),
            ("admit", lambda: admit(hop=False)),
        ]

        async def run(kind: str, step: Callable[[], object]) -> None:
            t0 = time.perf_counter()
            done = step()
            if asyncio.iscoroutine(done):
                await done
            out[kind].append(time.perf_counter() - t0)
            if gap:
                await asyncio.sleep(gap)

        try:
            for _ in range(count):
                for kind, step in kinds:
                    await run(kind, step)
            for _ in range(count):
                await run("hop", lambda: admit(hop=True))
        finally:
            writer._here = here  # type: ignore[method-assign]
            await store.close()
        return out

    def p99(values: list[float]) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000

    def p50(values: list[float]) -> float:
        return sorted(values)[len(values) // 2] * 1000

    lines = []
    for gap, how in ((0.0, "back to back"), (PACED_SECONDS, f"{PACED_SECONDS * 1000:g} ms apart")):
        got = asyncio.run(measure(gap))
        limit = 2 * (p99(got["bare"]) + p99(got["verify"]))
        lines.append(
            f"decide+journal (Gate.admit), {count:,} scans {how}: p50 {p50(got['admit']):.3f}"
            f"  p99 {p99(got['admit']):.3f} ms (<= 2 x (bare commit p99 {p99(got['bare']):.3f}"
            f" + verify p99 {p99(got['verify']):.3f}) = {limit:.3f} ms; bare commit p50"
            f" {p50(got['bare']):.3f}, verify p50 {p50(got['verify']):.3f})"
        )
        lines.append(
            f"  through the writer thread as before: p50 {p50(got['hop']):.3f}"
            f"  p99 {p99(got['hop']):.3f} ms"
        )
        if not gap:
            verifies, others = got["verify"], got["openssl"]
    bare.close()
    lines.append(
        f"Ed25519 verify of a code: libsodium (PyNaCl, the scan path) p50"
        f" {p50(verifies) * 1000:.0f} us, p99 {p99(verifies) * 1000:.0f} us; cryptography p50"
        f" {p50(others) * 1000:.0f} us, p99 {p99(others) * 1000:.0f} us"
    )
    return "\n".join(lines)


def version_time() -> str:
    """Wall and CPU time of `edge --version` (median of 5)."""
    runs, cpu = [], []
    for _ in range(5):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "edge.cli", "--version"], check=True,
                       capture_output=True)  # fmt: skip
        runs.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    runs.sort()
    cpu.sort()
    return (
        f"edge --version: median {runs[2] * 1000:.0f} ms, best {runs[0] * 1000:.0f} ms"
        f" (<= {VERSION_LIMIT_MS:g} ms); CPU time median {cpu[2] * 1000:.0f} ms"
    )


def main() -> None:
    """Run the loads and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the issue's loads")
    parser.add_argument("--seconds", type=float, default=20.0, help="scanning with no load")
    parser.add_argument(
        "--only",
        choices=[
            "idle",
            "bootstrap",
            "push",
            "upload",
            "passages",
            "import",
            "monitoring",
            "micro",
        ],
    )
    parser.add_argument(
        "--central-cpu",
        type=int,
        help="the CPU of edge-central (default: another than the gate's, if there is one; 0"
        " shares the gate's core, as before this option)",
    )
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    central_cpu = args.central_cpu if args.central_cpu is not None else (cpus[1:] or [0])[0]
    os.sched_setaffinity(0, {0})  # taskset -c 0, inherited by every process started below
    # Start-up as on an installed gate, whose packages are byte-compiled: without this, a
    # checkout run with PYTHONDONTWRITEBYTECODE compiles every module at each daemon start.
    for package in ("edge", "drivers", "sync"):
        compileall.compile_dir(ROOT / package, quiet=1)
    sizes = {name: max(1, int(n * args.scale)) for name, n in FULL.items()}
    where = "the gate's core" if central_cpu == 0 else f"CPU {central_cpu}"
    print(
        f"one core (CPU 0), {RATE:g} scans/s, loads at scale {args.scale:g}; edge-central (the"
        f" central system's server, serving the bootstrap and taking the upload) on {where}",
        flush=True,
    )
    report: list[str] = []
    with tempfile.TemporaryDirectory(prefix="edge-bench-hotpath-") as tmp:
        directory = Path(tmp)
        venue = Venue(directory)
        tickets = Tickets(venue.key_id, venue.key, 20_000)
        start: dict[str, float] = {}
        scans = int(args.seconds * RATE)  # a short load runs until it has as many (not bootstrap)

        def want(name: str) -> bool:
            return args.only in (None, name)

        try:
            if want("idle"):
                run_load(venue, "no load", tickets, args.seconds, report=report,
                         started_figures=start)  # fmt: skip
            if want("push"):
                work = push_load(venue, sizes["push"])
                run_load(venue, "5 pushes", tickets, 2, sync=DEAD_URL, revision=0, work=work,
                         report=report, min_scans=scans)  # fmt: skip
            if want("import"):
                work = import_load(venue, sizes["import"])
                run_load(venue, "edge import", tickets, 2, work=work, report=report,
                         min_scans=scans)  # fmt: skip
            if want("monitoring"):
                run_load(venue, "monitoring", tickets, 2, journal_rows=sizes["monitoring"],
                         work=monitoring_load(), report=report, min_scans=scans)  # fmt: skip
            if want("upload") or want("bootstrap") or want("passages"):
                venue.central.start()
                assert venue.central.process is not None
                os.sched_setaffinity(venue.central.process.pid, {central_cpu})
            # The bootstrap first, from a central holding its facts only; the loads after it
            # start at the central's head, so each measures its own work and nothing of the
            # loads before it (an upload's rows are passages a later bootstrap would pull).
            if want("bootstrap"):
                work = bootstrap_load(venue, sizes["bootstrap"])
                run_load(
                    venue, "bootstrap", tickets, 2, sync=venue.central.url, work=work, report=report
                )
            if want("passages"):
                catchup = Catchup(venue, sizes["passages"], central_cpu)
                run_load(venue, "passages of other gates", tickets, 2, sync=venue.central.url,
                         revision=catchup.seed, work=catchup.work, report=report,
                         min_scans=scans)  # fmt: skip
            if want("upload"):
                work = upload_load(sizes["upload"])
                run_load(venue, "upload", tickets, 2, sync=venue.central.url,
                         revision=venue.central.db.log.head, journal_rows=sizes["upload"],
                         work=work, report=report, min_scans=scans)  # fmt: skip
            if want("micro"):
                print(decide_journal(directory, venue, 2000), flush=True)
        finally:
            venue.central.close()
        if start:
            print(
                f"start to first decision {start['start'] * 1000:.0f} ms"
                f" (<= {START_LIMIT_MS:g} ms; the daemon's CPU time until then"
                f" {start['start_cpu'] * 1000:.0f} ms); RSS {start['rss']:.1f} MB, peak"
                f" {start['hwm']:.1f} MB (<= {RSS_LIMIT_MB:g} MB), gate without printers"
            )
        if want("micro"):
            print(version_time())


if __name__ == "__main__":
    main()
