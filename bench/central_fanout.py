"""Fan-out: two `edge-central serve` processes on one PostgreSQL, many gate channels.

    ./dev bench central_fanout                      # 1,000 channels, 100 revocations
    ./dev bench central_fanout --gates 200 --revocations 20
    ./dev bench central_fanout --baseline main      # the same figure for main's central first
    EDGE_TEST_POSTGRES=postgresql://user@/postgres?host=/run/postgresql ./dev bench central_fanout

The gates are simulated in a few client processes: each registers with its own Ed25519 key
and opens its outbound push channel (a real WebSocket, the request signed as a gate signs
it) to one of the two servers, alternately. Each envelope is opened as a gate opens it
(signature, key chain, every change parsed) once per distinct envelope in a client process
(`--verify-each`: for every channel), and answered with the revision reached. Each revocation
is committed on the shared database by a third connection, as `edge-central revoke` does:
both servers learn of it by LISTEN/NOTIFY and send it to their half. Arrival and commit
times are both CLOCK_MONOTONIC, which every process of the machine shares.

With `--baseline REF`, the servers of a first run are REF's code (`git archive`), those of a
second run this tree's, under the same load: before and after in one run. Prints figures
beside the issue's targets; asserts nothing (the machines are shared and noisy).
"""

from __future__ import annotations

import argparse
import multiprocessing
import multiprocessing.process
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from pgcluster import Cluster  # noqa: E402

from bench.simulated_gates import OPEN_SECONDS, Gate, simulator  # noqa: E402
from bench.trees import tree_of  # noqa: E402
from sync import protocol  # noqa: E402
from sync.central.db import CentralDB  # noqa: E402

TARGET_P99_MS = 500.0
GRACE_SECONDS = 5.0  # after the last revocation: what has not arrived by then is missed


class _Server:
    """`edge-central serve` from a source tree, on 127.0.0.1 port 0."""

    def __init__(self, tree: Path, dsn: str, log: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "sync.central.cli", "--db", dsn, "serve", "--port", "0"],
                stdout=subprocess.PIPE, stderr=out, cwd=tree, env=env,
            )  # fmt: skip
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()
        match = re.search(r"listening on (\S+)", line)
        if not match:
            self.process.kill()
            raise SystemExit(f"edge-central did not start: {line!r}; see {log}")
        self.url = match.group(1)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def fanout(
    label: str, tree: Path, dsn: str, args: argparse.Namespace, directory: Path
) -> None:  # fmt: skip
    """Revocations committed on the shared database reach every channel on both servers."""
    count, rounds, processes = args.gates, args.revocations, args.processes
    db = CentralDB(dsn)
    db.keys.add()
    trusted = {k: (public, retired) for k, public, retired in db.keys.public_keys()}
    product = db.catalogue.add_product("Ticket")
    _, sold = db.sales.sell(product, count=rounds)
    identities = [Ed25519PrivateKey.generate() for _ in range(count)]
    for i, identity in enumerate(identities):
        db.devices.add(f"sim-{i:05d}", protocol.public_bytes(identity))
    directory.mkdir(parents=True, exist_ok=True)
    servers = [_Server(tree, dsn, directory / f"central-{n}.log") for n in "ab"]
    gates = [
        Gate(
            f"sim-{i:05d}",
            identity.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()),
            servers[i % 2].url,
        )
        for i, identity in enumerate(identities)
    ]
    context = multiprocessing.get_context("spawn")
    workers: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
    try:
        started = time.monotonic()
        head = db.log.head()
        for share in range(processes):
            ours, theirs = context.Pipe()
            worker = context.Process(
                target=simulator,
                args=(gates[share::processes], trusted, not args.verify_each, head, theirs),
            )
            worker.start()
            workers.append((worker, ours))
        for _, pipe in workers:
            if not pipe.poll(OPEN_SECONDS + 60):
                raise SystemExit(f"the simulated gates did not connect in {OPEN_SECONDS:.0f} s")
            pipe.recv()
        print(
            f"  [{label}] {count:,} channels from {processes} processes on 2 servers, open and"
            f" current in {time.monotonic() - started:.1f} s"
        )
        committed: dict[int, float] = {}
        for item in sold:
            at = time.monotonic()
            db.workflows.revoke_code(item.code)
            committed[db.log.head()] = at
            time.sleep(args.interval)
        time.sleep(GRACE_SECONDS)
        results: list[tuple[dict[int, float], int]] = []
        opened = 0
        for _, pipe in workers:
            pipe.send("stop")
        for _, pipe in workers:
            arrivals, n = pipe.recv()
            results.extend(arrivals)
            opened += n
    finally:
        for process, _ in workers:
            process.join(10)
            if process.is_alive():
                process.kill()
        for server in servers:
            server.stop()
        db.close()
    samples: list[float] = []
    missed = 0
    for revision, at in committed.items():
        for arrived, _ in results:
            if revision in arrived:
                samples.append(arrived[revision] - at)
            else:
                missed += 1
    reconnects = sum(failures for _, failures in results)
    ordered = sorted(samples) or [float("nan")]
    p99 = ordered[max(0, int(len(ordered) * 0.99) - 1)]
    print(
        f"[{label}] fan-out, 2 edge-central on PostgreSQL, {count:,} channels,"
        f" {rounds} revocations {args.interval:g} s apart:"
        f" p50 {statistics.median(ordered) * 1000:.0f} ms,"
        f" p99 {p99 * 1000:.0f} ms (target <= {TARGET_P99_MS:.0f} ms),"
        f" max {ordered[-1] * 1000:.0f} ms; missed {missed} of {len(committed) * count}"
        f" (target 0); {reconnects} failed connections retried; {opened:,} envelopes opened;"
        f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )


def main() -> None:
    """Run the figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gates", type=int, default=1000)
    parser.add_argument("--revocations", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.5, help="s between revocations")
    parser.add_argument("--processes", type=int, default=4, help="client processes")
    parser.add_argument("--verify-each", action="store_true", help="open every envelope")
    parser.add_argument("--baseline", metavar="REF", help="first run REF's central (git ref)")
    args = parser.parse_args()
    cluster = Cluster()  # a throwaway one, or the server EDGE_TEST_POSTGRES names
    try:
        with tempfile.TemporaryDirectory(prefix="edge-bench-fanout-") as scratch:
            directory = Path(scratch)
            if args.baseline:
                tree = tree_of(args.baseline, directory / "baseline")
                fanout(args.baseline, tree, cluster.database(), args, directory / "before")
            fanout("this tree", ROOT, cluster.database(), args, directory / "after")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
