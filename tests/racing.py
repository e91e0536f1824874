"""Many real processes doing one thing at the same instant (opening a database, migrating it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_at_once(script: str, argument: str, count: int = 30) -> list[str]:
    """Start `count` interpreters running `script` with `argument` together; the last lines
    of the standard error of each that failed (empty when all succeeded)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, argument],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(count)
    ]
    failures = []
    for process in processes:
        _, err = process.communicate(timeout=120)
        if process.returncode:
            failures.append("\n".join(err.decode(errors="replace").strip().splitlines()[-12:]))
    return failures
