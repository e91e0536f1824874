"""Per-venue bootstrap: a venue's gate loads only its share of the group's credentials.

    ./dev bench venues                         # 1,000,000 credentials over 20 venues (~1 min)
    ./dev bench venues --credentials 10000000  # the issue's size (hours here, GBs of disk)
    ./dev bench venues --postgres              # the central on a throwaway PostgreSQL

Real processes on 127.0.0.1: one `edge-central serve` and `edge run` gates, bootstrapped one
after the other: a gate without a venue (the whole group, as before venues) and a gate of one
venue. Prints figures; asserts nothing (the machines are shared and noisy).
"""

from __future__ import annotations

import argparse
import base64
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from integration.sync_harness import CentralProcess, GateProcess  # noqa: E402

from sync.protocol import CredentialChange  # noqa: E402

TARGET = 10_000_000  # the group: 20 venues, 10M credentials in total
BATCH = 100_000
PULL_SHARE = 10  # the pull figure: a gate offline while 1/10 of the group's credentials change
PAGE = 5_000  # changes per pull (sync.client.replicator.CHANGES_LIMIT)
SNAPSHOT_PAGE = 50_000  # items per bootstrap chunk (the central's limit)


def _bootstrap(gate: GateProcess, url: str, head: int) -> float:
    started = time.perf_counter()
    gate.start(url, pull_interval=600.0)
    while (gate.revision() or 0) < head:
        if time.perf_counter() - started > 1800:
            raise SystemExit(f"{gate.name}: bootstrap did not finish in 30 min")
        time.sleep(0.05)
    return time.perf_counter() - started


def _central_reads(central: CentralProcess, venue: str, since: int) -> tuple[float, float, float]:
    """Seconds the central spends reading a venue's whole snapshot, its changes after
    `since`, and its changes in the whole log, page by page as a gate's bootstrap and pulls
    ask for them (no signing, no HTTP)."""
    log = central.db.log
    started = time.perf_counter()
    cursor = None
    while True:
        _, cursor = log.snapshot_chunk(cursor, SNAPSHOT_PAGE, venue)
        if cursor is None:
            break
    figures = [time.perf_counter() - started]
    for first in (since, 0):
        started = time.perf_counter()
        revision, head = first, log.head()
        while revision < head:
            _, revision, _, _, _ = log.venue_changes_since(revision, PAGE, venue)
        figures.append(time.perf_counter() - started)
    return figures[0], figures[1], figures[2]


def run(directory: Path, credentials: int, venues: int, target: str | None) -> None:
    central = CentralProcess(directory / "central", target)
    key_id = central.db.keys.add()
    public_b64 = base64.b64encode(central.db.keys.public_keys()[0][1]).decode()
    events = [
        central.db.catalogue.add_event(f"Event {v}", venue=f"venue-{v}") for v in range(venues)
    ]
    started = time.perf_counter()
    for first in range(1, credentials + 1, BATCH):
        central.db.log.publish(
            [
                CredentialChange(
                    cid, 0, events[cid % venues], 10, 0, 1, 0, None, None, 0, paid=True
                )
                for cid in range(first, min(first + BATCH, credentials + 1))
            ]
        )
    print(
        f"  (central prepared {credentials:,} credentials over {venues} venues in"
        f" {time.perf_counter() - started:.1f} s; scale {credentials / TARGET:.2%} of the"
        f" issue's {TARGET:,})"
    )
    gates = {
        None: GateProcess(directory / "all", "gate-all", key_id, public_b64),
        "venue-0": GateProcess(directory / "venue0", "gate-venue-0", key_id, public_b64),
    }
    for venue, gate in gates.items():
        central.db.devices.add(gate.name, gate.public_key, venue)
    url = central.start()
    head = central.db.log.head()
    try:
        figures = {}
        for venue, gate in gates.items():
            took = _bootstrap(gate, url, head)
            held = gate.count("credentials")
            gate.kill(signal.SIGTERM)
            files = [gate.store_path, gate.store_path.with_name(gate.store_path.name + "-wal")]
            size = sum(f.stat().st_size for f in files if f.exists())
            figures[venue] = (took, held, size)
        for venue, (took, held, size) in figures.items():
            who = "whole group (no venue)" if venue is None else f"one venue ({venue})"
            print(
                f"bootstrap, {who}: {held:,} credentials, store {size / 1e6:.1f} MB,"
                f" {took:.1f} s from gate start to revision {head:,}"
            )
        share = figures["venue-0"]
        whole = figures[None]
        print(
            f"  a venue's gate holds {share[1] / max(whole[1], 1):.1%} of the credentials"
            f" (target: its share, 1/{venues} = {1 / venues:.1%}), in"
            f" {share[0] / whole[0]:.0%} of the time"
        )
        # The venue's gate was stopped at `head`; the group sells on; it starts and pulls.
        changed = max(credentials // PULL_SHARE, 1)
        for first in range(1, changed + 1, BATCH):
            central.db.log.publish(
                [
                    CredentialChange(
                        cid, 0, events[cid % venues], 10, 0, 1, 0, None, None, 0, paid=False
                    )
                    for cid in range(first, min(first + BATCH, changed + 1))
                ]
            )
        gate = gates["venue-0"]
        new_head = central.db.log.head()
        took = _bootstrap(gate, url, new_head)
        gate.kill(signal.SIGTERM)
        print(
            f"pull, one venue: {changed // venues:,} of the group's {changed:,} changes,"
            f" {took:.1f} s from gate start to revision {new_head:,}"
        )
        # Moved to another venue: from start to holding exactly venue-1's share (its own
        # credentials and the group's; the sweep removed venue-0's).
        central.db.devices.move(gate.name, "venue-1")
        moved_to = len(range(1, credentials + 1, venues))  # ids 1, 1 + venues, ...: venue-1
        started = time.perf_counter()
        gate.start(url, pull_interval=600.0)
        while not (
            gate.cursor("sync.replace") == ""
            and (gate.revision() or 0) >= new_head
            and gate.count("credentials") == moved_to
        ):
            if time.perf_counter() - started > 1800:
                raise SystemExit(f"{gate.name}: not moved in 30 min")
            time.sleep(0.05)
        took = time.perf_counter() - started
        gate.kill(signal.SIGTERM)
        print(
            f"move, venue-0 to venue-1: {took:.1f} s from gate start to holding exactly"
            f" venue-1's {moved_to:,} credentials (venue-0's removed)"
        )
        snapshot, pulled, whole_log = _central_reads(central, "venue-0", head)
        print(
            f"  the central's reads for venue-0: its snapshot {snapshot:.2f} s, its changes"
            f" after {head:,} {pulled:.2f} s, its changes in the whole log of {new_head:,}"
            f" {whole_log:.2f} s (pages of {PAGE:,})"
        )
        # A venue with nothing sold yet: what the central reads to tell its gates so.
        snapshot, pulled, whole_log = _central_reads(central, "venue-quiet", head)
        print(
            f"  the central's reads for a venue with nothing sold: its snapshot {snapshot:.3f} s,"
            f" its changes after {head:,} {pulled:.3f} s, in the whole log {whole_log:.3f} s"
        )
    finally:
        for gate in gates.values():
            gate.kill(signal.SIGTERM)
        central.close()


def main() -> None:
    """Run the figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--credentials", type=int, default=1_000_000, help="in total")
    parser.add_argument("--venues", type=int, default=20)
    parser.add_argument(
        "--postgres",
        nargs="?",
        const="",
        help="run the central on PostgreSQL: this DSN, or a throwaway cluster if none is given",
    )
    args = parser.parse_args()
    cluster = None
    target = args.postgres or None
    if args.postgres == "":
        from pgcluster import Cluster  # noqa: PLC0415 - only with --postgres

        cluster = Cluster()
        target = cluster.database()
    try:
        with tempfile.TemporaryDirectory(prefix="edge-bench-venues-") as directory:
            run(Path(directory), args.credentials, args.venues, target)
    finally:
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    main()
