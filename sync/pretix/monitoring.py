"""The pretix connector's state on /health, the counter's status page and `edge status`."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from edge.store.sync import SyncStore
from sync.pretix.connector import (
    PULLS_CURSOR,
    REPLY_OK,
    REPLY_SKIPPED,
    SHOWN_REFUSALS,
    PretixSyncState,
)


def _iso(moment: float | None) -> str | None:
    return None if moment is None else datetime.fromtimestamp(moment, UTC).isoformat()


def health(state: PretixSyncState, store: SyncStore) -> dict[str, object]:
    """pretix sync state for /health: refused uploads are named, not only counted."""
    return {
        "status": state.status,
        "last_pull": _iso(state.last_pull),
        "last_upload": _iso(state.last_upload),
        "last_error": state.last_error or None,
        "queue": store.seen_backlog(),
        "uploaded": state.uploaded,
        "refused": state.refused,
        "refusals": list(state.refusals),
    }


def page_status(state: PretixSyncState, store: SyncStore) -> dict[str, object]:
    """pretix sync state for the counter's status page (the same fields as /health)."""
    return {**health(state, store), "last_contact": _iso(state.last_pull)}


def status_lines(store: SyncStore) -> list[str]:
    """What `edge status` prints about pretix: last pull, answers to uploads, refusals."""
    pulls = store.cursor(PULLS_CURSOR)
    last = None
    if pulls:
        try:
            last = datetime.fromtimestamp(json.loads(pulls)[-1] / 1000, UTC)
        except (ValueError, TypeError, IndexError, OverflowError):
            last = None
    when = last.astimezone().strftime("%Y-%m-%d %H:%M:%S") if last else "never"
    counts = store.reply_counts()
    refused = {k: v for k, v in counts.items() if k not in (REPLY_OK, REPLY_SKIPPED)}
    lines = [
        f"  {'pretix last pull':22} {when:>12}",
        f"  {'pretix uploaded':22} {counts.get(REPLY_OK, 0):>12,}",
        f"  {'pretix refused':22} {sum(refused.values()):>12,}"
        + (f"  ({', '.join(f'{k} {v}' for k, v in sorted(refused.items()))})" if refused else ""),
    ]
    refusals = store.refusals(SHOWN_REFUSALS, accepted=(REPLY_OK, REPLY_SKIPPED))
    if refusals:
        lines.append(f"last {len(refusals)} uploads pretix refused or no position matched:")
        for r in refusals:
            at = r.at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
            lines.append(
                f"  #{r.seq:<6} {at}  {r.lane:12} {r.direction.value:5} {r.status:9}"
                f" {r.detail:24} {r.code_hint}"
            )
    return lines
