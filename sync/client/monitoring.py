"""The sync client's state on /metrics, /health and the counter's status page."""

from __future__ import annotations

from datetime import UTC, datetime

from edge.ops.metrics import Registry
from sync.client.replicator import Replicator
from sync.client.state import Status


def register_metrics(registry: Registry, replicator: Replicator) -> None:
    """Sync state on /metrics: revision, lag, last contact, pushes, uploads."""
    state = replicator.state
    registry.gauge(
        "edge_sync_revision",
        "Revision of the central system's changes the store holds (-1: not bootstrapped).",
        collect=lambda: {(): -1 if state.revision is None else state.revision},
    )
    registry.gauge(
        "edge_sync_lag_revisions",
        "Revisions the store is behind the central system's head as last heard.",
        collect=lambda: {(): state.lag},
    )
    registry.gauge(
        "edge_sync_last_contact_seconds",
        "Unix time of the last successful exchange with the central system (0: none).",
        collect=lambda: {(): state.last_contact or 0.0},
    )
    registry.gauge(
        "edge_sync_clock_offset_seconds",
        "The central system's clock minus this device's, from the last hello.",
        collect=lambda: {(): state.clock_offset},
    )
    registry.gauge(
        "edge_sync_up",
        "1 when the last exchange with the central system succeeded.",
        collect=lambda: {(): 0 if state.status in (Status.OFFLINE, Status.STARTING) else 1},
    )
    registry.counter(
        "edge_sync_pushes_total",
        "Pushes received, by outcome (applied, stale, gap, rejected).",
        ("outcome",),
        collect=lambda: {(outcome,): n for outcome, n in state.pushes.items()},
    )
    registry.gauge(
        "edge_sync_channel_up",
        "1 while the outbound push channel to the central system is open.",
        collect=lambda: {(): 1 if state.channel else 0},
    )
    registry.counter(
        "edge_sync_channel_opened_total",
        "Push channels opened since start (growth beyond 1 counts reconnects).",
        collect=lambda: {(): state.channels},
    )
    registry.gauge(
        "edge_sync_central_info",
        "1 for the central process in use (by its URL; [sync] urls may name several).",
        ("url",),
        collect=lambda: {(replicator.centrals.current,): 1},
    )
    registry.counter(
        "edge_sync_central_switches_total",
        "Moves to another central process because the one in use was down, since start.",
        collect=lambda: {(): replicator.centrals.switches},
    )
    registry.counter(
        "edge_sync_uploaded_total",
        "Journal entries acknowledged by the central system since start.",
        collect=lambda: {(): state.uploaded},
    )


def health(replicator: Replicator) -> dict[str, object]:
    """Sync state for /health."""
    state = replicator.state
    return {
        "status": state.status.value,
        "revision": state.revision,
        "lag": state.lag,
        "last_contact": state.last_contact,
        "queue": replicator.queue_length(),
        "channel": state.channel,
        # The central process in use; another one of [sync] urls after a failover.
        "central": replicator.centrals.current,
        "central_switches": replicator.centrals.switches,
        "last_error": state.last_error or None,
        # The central clock minus this device's: requests are signed with it corrected,
        # decisions use this device's own clock (docs/operations.md, "Clocks").
        "clock_offset_seconds": round(state.clock_offset, 3),
    }


def page_status(replicator: Replicator) -> dict[str, object]:
    """Sync state for the counter's status page (times as ISO text)."""
    state = replicator.state
    return {
        "status": state.status.value,
        "revision": state.revision,
        "head": state.head,
        "lag": state.lag,
        "central": replicator.centrals.current,
        "last_contact": None
        if state.last_contact is None
        else datetime.fromtimestamp(state.last_contact, UTC).isoformat(),
        "last_error": state.last_error,
        "clock_offset_seconds": round(state.clock_offset, 3),
    }
