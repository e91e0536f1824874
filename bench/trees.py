"""The project's code at another git ref, for benchmarks that run it beside this tree's."""

from __future__ import annotations

import subprocess
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def tree_of(ref: str, directory: Path) -> Path:
    """The project's packages (edge, sync, drivers) at `ref`, unpacked into `directory`."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref, "edge", "sync", "drivers"],
        check=True,
        capture_output=True,
    ).stdout
    directory.mkdir(parents=True)
    with tempfile.TemporaryFile() as file:
        file.write(archive)
        file.seek(0)
        with tarfile.open(fileobj=file) as tar:
            tar.extractall(directory, filter="data")
    return directory
