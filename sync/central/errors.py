"""The reference central system's error."""

from __future__ import annotations

from edge.core.errors import SyncError


class CentralError(SyncError, ValueError):
    """An admin operation cannot be done as asked (unknown id, wrong state)."""
