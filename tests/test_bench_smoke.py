"""The benchmarks still run (on tiny sizes); their figures are printed, never asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent

# Each benchmark with arguments for a tiny run, and the figures its output must name.
BENCHMARKS = [
    (
        "decide",
        "--revocations 2000 --credentials 500",
        ["bulk load of revocations", "decision latency, signed", "start to first decision"],
    ),
    (
        "printing",
        "--samples 10 --jobs 20",
        ["ticket FGL from a template", "card raster for Evolis", "queue throughput"],
    ),
    ("desk", "--samples 2", ["voucher scan to card in the printer's queue"]),
    (
        "hardware",
        "--scans 100 --max-rate 250",
        ["scan-to-relay latency over", "sustained scans per lane without a drop"],
    ),
    (
        "pretix_sync",
        "--positions 500 --baseline HEAD",
        ["no pull (baseline)", "first pull", "unchanged re-pull", "1 % re-issued + 1 % gone"],
    ),
    (
        "sync",
        "--gates 2 --revocations 20 --credentials 3000 --entries 2000 --rounds 5",
        ["push-to-enforced latency", "bootstrap of", "upload of", "fault rounds"],
    ),
    (
        "channel",
        "--gates 2 --revocations 10 --clients 20 --rounds 5",
        ["push-to-enforced through the channel", "fan-out, 1 edge-central"],
    ),
    (
        "failover",
        "--rounds 2 --gates 2",
        ["lost journal rows", "duplicated journal rows", "converge after the kill"],
    ),
    (
        "central_fanout",
        "--gates 20 --revocations 5 --interval 0.1 --processes 2 --baseline HEAD",
        ["[HEAD] fan-out, 2 edge-central on PostgreSQL", "[this tree] fan-out, 2 edge-central"],
    ),
    (
        "venues",
        "--credentials 2000 --venues 4",
        [
            "bootstrap, whole group",
            "bootstrap, one venue",
            "of the credentials",
            "pull, one venue",
            "move, venue-0 to venue-1",
            "the central's reads for venue-0",
        ],
    ),
    (
        "hotpath",
        "--scale 0.005 --seconds 2",
        [
            "no load",
            "5 pushes",
            "edge import",
            "upload",
            "reads of /metrics and /health",
            "bootstrap of",
            "decide+journal",
            "through the writer thread as before",
            "Ed25519 verify of a code",
            "start to first decision",
            "edge --version",
        ],
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "args", "figures"), BENCHMARKS, ids=[b[0] for b in BENCHMARKS])
def test_benchmark_runs_at_small_sizes(name: str, args: str, figures: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / f"{name}.py"), *args.split()],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for figure in figures:
        assert figure in result.stdout, f"{name}: no {figure!r} in its output"
