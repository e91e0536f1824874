"""Faults: kill one of two `edge-central serve` processes on one PostgreSQL while changes flow.

    ./dev bench failover                            # 100 rounds, 4 gates
    ./dev bench failover --rounds 10 --gates 2
    ./dev bench failover --dsn postgresql://user@/db?host=/run/postgresql

Real processes on 127.0.0.1 (tests/integration/failover_rounds.py): two central processes
on one PostgreSQL (a throwaway cluster unless --dsn names one), gates running `edge run` that
name both in `[sync] urls` and take no inbound pushes. Each round SIGKILLs one process (the
two in turn) while every gate scans and uploads, sells and revokes while it is down, waits until
every gate holds the head with its journal uploaded, checks the round's revocations at every
gate, and restarts the killed process. Prints rounds, lost and duplicated journal rows and the
time to converge beside the issue's targets; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from integration.failover_rounds import FailoverVenue, Round  # noqa: E402
from pgcluster import Cluster  # noqa: E402

TARGET_LOST = 0
TARGET_DUPLICATED = 0
TARGET_ROUNDS = 100


def _report(results: list[Round], started: float, bootstrap: float, gates: int, cut: int) -> None:
    took = sorted(r.converge_seconds for r in results)
    # Each round counts every row so far in PostgreSQL: the worst count is the figure.
    lost = max((r.lost for r in results), default=0)
    duplicated = max((r.duplicated for r in results), default=0)
    unenforced = sum(r.unenforced for r in results)
    moved = sum(r.moved for r in results)
    rows = results[-1].journal_rows if results else 0
    print(f"faults, {gates} gates, 2 edge-central on one PostgreSQL (kill -9 in turn):")
    print(f"  rounds                        {len(results):>8}      target {TARGET_ROUNDS}")
    print(f"  journal rows in PostgreSQL    {rows:>8}")
    print(f"  lost journal rows             {lost:>8}      target {TARGET_LOST}")
    print(f"  duplicated journal rows       {duplicated:>8}      target {TARGET_DUPLICATED}")
    print(f"  uploads whose connection died {cut:>8}      (sent again to the other process)")
    print(f"  revocations not enforced      {unenforced:>8}      target 0")
    print(f"  gates moved to the survivor   {moved:>8}      (each one that was on the killed)")
    if took:
        p50 = statistics.median(took)
        p99 = took[max(0, int(len(took) * 0.99) - 1)]
        print(
            f"  converge after the kill       p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms,"
            f" worst {took[-1] * 1000:.0f} ms  (no target; keep-alive 1 s, backoff from 0.25 s)"
        )
    total = time.monotonic() - started
    print(f"  bootstrap {bootstrap:.1f} s, {len(results)} rounds in {total:.0f} s")


def main() -> None:
    """Run the rounds and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=TARGET_ROUNDS)
    parser.add_argument("--gates", type=int, default=4)
    parser.add_argument("--dsn", help="a PostgreSQL to use (default: a throwaway cluster)")
    args = parser.parse_args()
    cluster = None if args.dsn else Cluster()
    try:
        dsn = args.dsn or (cluster.database() if cluster else "")
        with tempfile.TemporaryDirectory(prefix="edge-failover-") as directory:
            venue = FailoverVenue(Path(directory), dsn, args.gates)
            results: list[Round] = []
            started, bootstrap = time.monotonic(), 0.0
            try:
                bootstrap = venue.start()
                for number in range(args.rounds):
                    results.append(venue.round(number))
            finally:
                venue.close()
                _report(results, started, bootstrap, args.gates, venue.uploads_cut())
    finally:
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    main()
