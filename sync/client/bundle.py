"""Offline bundles (`edge import`): applied with the checks of a push, for this gate's venue."""

from __future__ import annotations

from edge.core.errors import SyncError
from edge.store.sync import SyncStore
from sync import protocol
from sync.client.changes import to_batch
from sync.client.state import REVISION_CURSOR, VENUE_CURSOR
from sync.protocol import EnvelopeKind


def _whose(venue: str | None) -> str:
    return "every venue's" if not venue else f"venue {venue!r}'s"


async def import_bundle(store: SyncStore, data: bytes, *, device: str) -> tuple[str, int, int]:
    """Apply an offline bundle with the checks of a push: (outcome, from, to).

    'applied' moves the store from revision `from` to `to`; 'stale' leaves it at `from`, and
    `to` is where the bundle ends (below `from`: an older bundle). A bundle must hold the
    share of the venue the store bootstrapped for (docs/protocol.md, "Offline bundles").
    """
    envelope = protocol.open_envelope(
        data, store.known_keys().get, kinds=(EnvelopeKind.BUNDLE, EnvelopeKind.CHANGES)
    )
    saved = store.cursor(REVISION_CURSOR)
    revision = int(saved) if saved else 0
    held = store.cursor(VENUE_CURSOR)  # "": every venue's
    if held is None:
        # A new store takes the bundle's venue as its own; one synced before venues were
        # recorded holds every venue's.
        held = (envelope.venue or "") if saved is None else ""
    if (envelope.venue or "") != held:
        # Another venue's share would leave this venue's changes out while moving the
        # revision past them, and every venue's would add facts of other venues.
        raise SyncError(
            f"the bundle holds {_whose(envelope.venue)} changes but this gate ({device}) holds"
            f" {_whose(held)}: write one with `edge-central bundle --device {device}`;"
            " nothing applied"
        )
    if envelope.last <= revision:
        # Nothing newer (an empty bundle written with --since HEAD included), or older than
        # what the store holds: applying it would rewind the revision and re-apply stale
        # facts (a paid ticket unpaid again). The caller reports (stale, ours, its last).
        return "stale", revision, envelope.last
    if envelope.first > revision:
        raise SyncError(
            f"the bundle holds revisions {envelope.first + 1}..{envelope.last} but this gate is"
            f" at {revision}; write a bundle with --since {revision} or less"
        )
    batch = to_batch(envelope.since(revision), device, list(envelope.chain))
    await store.apply(batch, {REVISION_CURSOR: str(envelope.last), VENUE_CURSOR: held})
    return "applied", revision, envelope.last
