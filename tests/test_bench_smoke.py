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
def test_printing_benchmark_runs_on_small_sizes() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "printing.py"), "--samples", "10", "--jobs", "20"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for figure in ("ticket FGL from a template", "card raster for Evolis", "queue throughput"):
        assert figure in result.stdout


@pytest.mark.slow
def test_hardware_benchmark_runs_on_few_scans() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "hardware.py"),
            "--scans",
            "100",
            "--max-rate",
            "250",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "scan-to-relay latency over" in result.stdout
    assert "sustained scans per lane without a drop" in result.stdout


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
