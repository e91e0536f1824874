"""Per-thread facts of a process, read from Linux /proc (for the CPU-priority tests)."""

from __future__ import annotations

import os
from pathlib import Path


def nice(tid: int, pid: int | None = None) -> int:
    """The nice value of thread `tid` of process `pid` (default: this process)."""
    stat = Path(f"/proc/{pid or os.getpid()}/task/{tid}/stat").read_text()
    # The 19th field, counted after the parenthesised name (which may hold spaces).
    return int(stat.rsplit(")", 1)[1].split()[16])


def nice_values(pid: int) -> dict[int, int]:
    """Each thread of process `pid` and its nice value."""
    return {
        int(task.name): nice(int(task.name), pid) for task in Path(f"/proc/{pid}/task").iterdir()
    }
