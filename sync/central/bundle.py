"""Offline bundles: the changes since a revision, signed, in a file for `edge import`."""

from __future__ import annotations

import os
from pathlib import Path

from sync import protocol
from sync.central.changelog import now_ms
from sync.central.db import CentralDB
from sync.central.errors import CentralError
from sync.protocol import EnvelopeKind

MAX_BUNDLE_CHANGES = 2_000_000  # a bundle must fit protocol.MAX_ENVELOPE_BYTES


def write(db: CentralDB, path: Path, since: int = 0) -> tuple[int, int]:
    """Write a BUNDLE envelope of the changes after `since`; returns (first, last) revisions."""
    first, changes, head = db.log.changes_since(since, MAX_BUNDLE_CHANGES)
    if first + len(changes) != head:
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
