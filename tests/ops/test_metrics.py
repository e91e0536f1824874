"""The Prometheus text format as written by the registry."""

from __future__ import annotations

import pytest

from edge.ops.metrics import Registry


def test_counters_gauges_and_callbacks_render_in_the_text_format() -> None:
    registry = Registry()
    decisions = registry.counter("edge_decisions_total", "Decisions.", ("lane", "reason"))
    decisions.inc("North 1", "admitted")
    decisions.inc("North 1", "admitted")
    decisions.inc('Say "hi"\\\n', "revoked")
    registry.gauge("edge_queue", "Queued.", ("lane",), collect=lambda: {("a",): 3})
    registry.gauge("edge_sync_revision", "Last revision.").set(1234)
    assert registry.render() == (
        "# HELP edge_decisions_total Decisions.\n"
        "# TYPE edge_decisions_total counter\n"
        'edge_decisions_total{lane="North 1",reason="admitted"} 2\n'
        'edge_decisions_total{lane="Say \\"hi\\"\\\\\\n",reason="revoked"} 1\n'
        "# HELP edge_queue Queued.\n"
        "# TYPE edge_queue gauge\n"
        'edge_queue{lane="a"} 3\n'
        "# HELP edge_sync_revision Last revision.\n"
        "# TYPE edge_sync_revision gauge\n"
        "edge_sync_revision 1234\n"
    )


def test_histogram_buckets_are_cumulative_with_sum_and_count() -> None:
    registry = Registry()
    latency = registry.histogram("edge_seconds", "Latency.", ("lane",), buckets=(0.001, 0.01))
    for value in (0.0005, 0.001, 0.002, 5.0):
        latency.observe(value, "x")
    assert registry.render().splitlines()[2:] == [
        'edge_seconds_bucket{lane="x",le="0.001"} 2',
        'edge_seconds_bucket{lane="x",le="0.01"} 3',
        'edge_seconds_bucket{lane="x",le="+Inf"} 4',
        'edge_seconds_sum{lane="x"} 5.0035',
        'edge_seconds_count{lane="x"} 4',
    ]


def test_misuse_is_refused() -> None:
    registry = Registry()
    counter = registry.counter("edge_a_total", "A.", ("lane",))
    with pytest.raises(ValueError, match="registered already"):
        registry.gauge("edge_a_total", "again")
    with pytest.raises(ValueError, match="takes labels"):
        counter.inc()
    with pytest.raises(ValueError, match="invalid metric name"):
        registry.counter("edge-a", "bad")
    with pytest.raises(ValueError, match="reserved"):
        registry.histogram("edge_h", "bad", ("le",))
