"""Metrics in the Prometheus text exposition format (version 0.0.4), written by hand.

A Registry holds metric families; any part of the daemon (lanes now, sync and printers later)
registers its own through `counter`, `gauge` and `histogram`. Updating a value is a dict
lookup and an addition, cheap enough for the scan path. Values that already live elsewhere
(queue lengths, store counts) are read at scrape time through a `collect` callback instead.
Label values must never carry codes or personal data: lanes, reasons and device names only.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Decision latency buckets, seconds: the target is p99 <= 1 ms (README, "Performance").
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0)

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")

Labels = tuple[str, ...]
Collect = Callable[[], Mapping[Labels, float]]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def _series(name: str, names: Sequence[str], values: Labels, value: float) -> str:
    if not names:
        return f"{name} {_number(value)}"
    pairs = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True))
    return f"{name}{{{pairs}}} {_number(value)}"


class _Family:
    """A named metric with fixed label names."""

    kind = ""

    def __init__(self, name: str, help_text: str, labels: Sequence[str], collect: Collect | None):
        if not _NAME.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        for label in labels:
            if not _LABEL.match(label) or label.startswith("__"):
                raise ValueError(f"invalid label name {label!r}")
        self.name = name
        self.help = help_text
        self.labels = tuple(labels)
        self._collect = collect
        self._values: dict[Labels, float] = {}

    def _key(self, values: Labels) -> Labels:
        if len(values) != len(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, got {values}")
        return values

    def samples(self) -> list[str]:
        """The family's sample lines."""
        values = dict(self._collect()) if self._collect is not None else self._values
        return [_series(self.name, self.labels, k, v) for k, v in sorted(values.items())]

    def render(self) -> str:
        """HELP, TYPE and samples."""
        head = [f"# HELP {self.name} {_escape(self.help)}", f"# TYPE {self.name} {self.kind}"]
        return "\n".join(head + self.samples())


class Counter(_Family):
    """A value that only goes up (events since start)."""

    kind = "counter"

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        """Add `amount` (>= 0) to the series with these label values."""
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, *labels: str) -> float:
        """The current value of one series (tests, status)."""
        return self._values.get(self._key(labels), 0.0)


class Gauge(_Family):
    """A value that goes up and down (lengths, revisions, states)."""

    kind = "gauge"

    def set(self, value: float, *labels: str) -> None:
        """Set the series with these label values."""
        self._values[self._key(labels)] = value

    def value(self, *labels: str) -> float:
        """The current value of one series (tests, status)."""
        return self._values.get(self._key(labels), 0.0)


class Histogram(_Family):
    """Observations counted into cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str],
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        super().__init__(name, help_text, labels, None)
        if "le" in labels:
            raise ValueError("'le' is reserved for histogram buckets")
        self.buckets = tuple(sorted(buckets))
        # Per series: a count per bucket (not cumulative; +Inf last), then sum.
        self._series: dict[Labels, tuple[list[int], list[float]]] = {}

    def observe(self, value: float, *labels: str) -> None:
        """Count one observation."""
        key = self._key(labels)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = ([0] * (len(self.buckets) + 1), [0.0])
        series[0][bisect.bisect_left(self.buckets, value)] += 1
        series[1][0] += value

    def samples(self) -> list[str]:
        """Buckets (cumulative), sum and count of every series."""
        names = (*self.labels, "le")
        lines = []
        for key, (counts, total) in sorted(self._series.items()):
            running = 0
            for bound, count in zip((*self.buckets, math.inf), counts, strict=True):
                running += count
                le = "+Inf" if math.isinf(bound) else repr(bound)
                lines.append(_series(f"{self.name}_bucket", names, (*key, le), running))
            lines.append(_series(f"{self.name}_sum", self.labels, key, total[0]))
            lines.append(_series(f"{self.name}_count", self.labels, key, running))
        return lines


class Registry:
    """The metric families of one daemon, rendered together for /metrics."""

    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}

    def _add(self, family: _Family) -> None:
        if family.name in self._families:
            raise ValueError(f"metric {family.name!r} is registered already")
        self._families[family.name] = family

    def counter(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        *,
        collect: Collect | None = None,
    ) -> Counter:
        """A new counter; with `collect`, its values are read from the callback at scrape time."""
        family = Counter(name, help_text, labels, collect)
        self._add(family)
        return family

    def gauge(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        *,
        collect: Collect | None = None,
    ) -> Gauge:
        """A new gauge; with `collect`, its values are read from the callback at scrape time."""
        family = Gauge(name, help_text, labels, collect)
        self._add(family)
        return family

    def histogram(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        *,
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> Histogram:
        """A new histogram."""
        family = Histogram(name, help_text, labels, buckets)
        self._add(family)
        return family

    def families(self) -> Iterable[_Family]:
        """Every registered family, in registration order."""
        return self._families.values()

    def render(self) -> str:
        """The whole registry in the text exposition format."""
        return "".join(family.render() + "\n" for family in self._families.values())
