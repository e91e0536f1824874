"""Offline bundles: the changes since a revision, signed, in a file for `edge import`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sync import protocol
from sync.central.changelog import now_ms
from sync.central.db import CentralDB
from sync.central.devices import venue_name
from sync.central.errors import CentralError
from sync.protocol import EnvelopeKind

MAX_BUNDLE_CHANGES = 2_000_000  # a bundle must fit protocol.MAX_ENVELOPE_BYTES


def write(db: CentralDB, path: Path, since: int = 0, venue: str | None = None) -> tuple[int, int]:
    """Write a BUNDLE envelope of the changes after `since` (with a `venue`: only those that
    concern it or the whole group, as its gates pull them); returns (first, last) revisions.

    The envelope names its venue (signed), and a gate takes a venue's bundle only if its
    last bootstrap was of that venue, and the whole group's only if it was of no venue."""
    revisions: list[int] | None = None
    changes: list[list[Any]]
    if venue is None:
        first, changes, head = db.log.changes_since(since, MAX_BUNDLE_CHANGES)
        complete = first + len(changes) == head
    else:
        venue_name(venue)
        first, last, revisions, changes, head = db.log.venue_changes_since(
            since, MAX_BUNDLE_CHANGES, venue
        )
        complete = last == head
    if not complete:
        raise CentralError(f"more than {MAX_BUNDLE_CHANGES} changes; write bundles in steps")
    key_id, key, chain = db.keys.signer()
    data = protocol.seal(
        EnvelopeKind.BUNDLE,
        key_id,
        key,
        first=first,
        last=head,
        at_ms=now_ms(),
        changes=changes,
        chain=chain,
        head=head,
        revisions=revisions,
        venue=venue,
    )
    if len(data) > protocol.MAX_ENVELOPE_BYTES:
        raise CentralError(f"bundle of {len(data)} bytes is too large; use a later --since")
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    temporary.replace(path)
    return first, head
