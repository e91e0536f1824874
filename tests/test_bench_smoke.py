"""The benchmarks still run (on tiny sizes); their figures are printed, never asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.slow
def test_decide_benchmark_runs_on_a_small_store() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "decide.py"),
            "--revocations",
            "2000",
            "--credentials",
            "500",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for figure in (
        "bulk load of revocations",
        "decision latency, signed",
        "start to first decision",
    ):
        assert figure in result.stdout


@pytest.mark.slow
def test_sync_benchmark_runs_at_small_sizes() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "sync.py"),
            "--gates",
            "2",
            "--revocations",
            "20",
            "--credentials",
            "3000",
            "--entries",
            "2000",
            "--rounds",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for figure in ("push-to-enforced latency", "bootstrap of", "upload of", "fault rounds"):
        assert figure in result.stdout
