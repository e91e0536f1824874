"""Where the sync client stands: its status and the store cursors it keeps."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from edge.store.sync import BOOTSTRAP_CURSOR, REPLACE_CURSOR, REVISION_CURSOR, VENUE_CURSOR

__all__ = [
    "BOOTSTRAP_CURSOR",
    "REPLACE_CURSOR",
    "REVISION_CURSOR",
    "VENUE_CURSOR",
    "Status",
    "SyncState",
]


class Status(enum.Enum):
    """Where the sync client stands."""

    STARTING = "starting"  # no contact yet since start
    BOOTSTRAPPING = "bootstrapping"  # loading the snapshot
    CURRENT = "current"  # last pull reached the central system's head
    BEHIND = "behind"  # a pull is due (a gap was seen) or running
    OFFLINE = "offline"  # the last request failed; retrying with backoff


@dataclass(slots=True)
class SyncState:
    """What the metrics and /health show about sync."""

    status: Status = Status.STARTING
    revision: int | None = None  # None: never bootstrapped
    head: int = 0  # the central system's newest revision, as last heard
    last_contact: float | None = None  # unix time of the last successful exchange
    clock_offset: float = 0.0  # central clock minus ours, seconds (from hello)
    uploaded: int = 0
    pushes: dict[str, int] = field(default_factory=dict)  # by outcome (inbound and channel)
    channel: bool = False  # the outbound push channel is open
    channels: int = 0  # channels opened since start (reconnects show as growth)
    last_error: str = ""

    @property
    def lag(self) -> int:
        """Revisions the store is behind the central system."""
        return max(0, self.head - (self.revision or 0))
