"""Gates and the central system converge through a faulty network and SIGKILLs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from integration import fault_rounds

ROUNDS = int(os.environ.get("EDGE_FAULT_ROUNDS", "15"))


@pytest.mark.slow
def test_every_gate_converges_and_every_row_arrives_once(tmp_path: Path) -> None:
    seed = int(os.environ.get("EDGE_FAULT_SEED", str(os.getpid())))
    report = fault_rounds.run(tmp_path, ROUNDS, seed=seed)
    print(report)
    assert report.behind == [], f"seed {seed}: {report.behind}"
    assert report.lost == 0, f"seed {seed}"
    assert report.duplicated == 0, f"seed {seed}"
    assert report.entry_mismatches == 0, f"seed {seed}"
    assert report.scans > 0
    assert sum(n for fault, n in report.faults.items() if fault != "pass") > 0
