"""The scan path's read: everything the store knows about one code, in one statement."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from edge.core.codes import Code, EntryPolicy, Kind, PolicyKind, SignedCode, Validity
from edge.core.facts import Credential, Direction, EntryState, Facts, TrustedKey
from edge.store.base import REVOCATIONS, StoreBase, from_ms
from edge.store.writer import Writer

# Every fact about one code in one statement: a plain code's credential is found by hash.
_FACTS_SQL = """
WITH q (cid, h) AS (
    SELECT coalesce(:cid, (SELECT credential_id FROM plain_codes WHERE code_hash = :h)), :h
)
SELECT q.cid,
       c.kind, c.event_id, c.product_id, c.policy, c.uses, c.passback_minutes,
       c.valid_from, c.valid_until, c.zones, c.paid,
       rc.reason, rv.reason,
       EXISTS (SELECT 1 FROM cancelled_events WHERE event_id = coalesce(c.event_id, :ev)),
       (SELECT reason FROM revoked_products WHERE product_id = coalesce(c.product_id, :pr)),
       e.count, e.first_at, e.first_gate, e.last_at, e.last_direction, e.last_gate,
       k.public_key, k.retired
FROM q
LEFT JOIN credentials c ON c.credential_id = q.cid
LEFT JOIN revoked_codes rc ON rc.code_hash = q.h
LEFT JOIN revoked_credentials rv ON rv.credential_id = q.cid
LEFT JOIN entries e ON e.credential_id = q.cid
LEFT JOIN keys k ON k.key_id = :kid
"""


class FactsStore(StoreBase):
    """Reads of synced facts on the scan path: synchronous, no thread hop (gate, desk, pretix)."""

    def __init__(
        self, path: str, reader: sqlite3.Connection, writer: Writer, journal: Writer
    ) -> None:
        super().__init__(path, reader, writer, journal)
        self._keys: dict[tuple[int, bytes, bool], TrustedKey] = {}

    def facts(self, code: Code) -> Facts:
        """Everything the store knows about a parsed code (a SignedCode or PlainCode)."""
        if isinstance(code, SignedCode):
            claims = code.claims
            params = {
                "cid": claims.credential_id,
                "h": code.hash,
                "ev": claims.event_id,
                "pr": claims.product_id,
                "kid": claims.key_id,
            }
        else:
            params = {"cid": None, "h": code.hash, "ev": None, "pr": None, "kid": None}
        row = self._reader.execute(_FACTS_SQL, params).fetchone()
        cid = row[0]
        credential = None
        if row[1] is not None:
            validity = None
            if row[7] is not None:
                validity = Validity(
                    datetime.fromtimestamp(row[7], UTC), datetime.fromtimestamp(row[8], UTC)
                )
            credential = Credential(
                credential_id=cid,
                kind=Kind(row[1]),
                event_id=row[2],
                product_id=row[3],
                policy=EntryPolicy(PolicyKind(row[4]), row[5], row[6]),
                validity=validity,
                zones=row[9],
                paid=bool(row[10]),
            )
        entries = None
        if row[15] is not None:
            entries = EntryState(
                count=row[15],
                first_at=from_ms(row[16]) if row[16] is not None else None,
                first_gate=row[17],
                last_at=from_ms(row[18]),
                last_direction=Direction(row[19]),
                last_gate=row[20],
            )
        return Facts(
            key=self._key(code.claims.key_id, row[21], row[22])
            if isinstance(code, SignedCode)
            else None,
            credential=credential,
            code_revoked=REVOCATIONS.get(row[11]),
            credential_revoked=REVOCATIONS.get(row[12]),
            event_cancelled=bool(row[13]),
            product_revoked=REVOCATIONS.get(row[14]),
            entries=entries,
        )

    def _key(self, key_id: int, public: bytes | None, retired: int | None) -> TrustedKey | None:
        if public is None:
            return None
        cache_key = (key_id, public, bool(retired))
        key = self._keys.get(cache_key)
        if key is None:
            # One TrustedKey per key and state: keys change rarely.
            key = TrustedKey(key_id, bytes(public), bool(retired))
            self._keys[cache_key] = key
        return key

    def code_blocked(self, code_hash: bytes) -> bool:
        """True if the code with this hash is blocked (scan path: one point query)."""
        row = self._reader.execute(
            "SELECT 1 FROM blocked_codes WHERE code_hash = ?", (code_hash,)
        ).fetchone()
        return row is not None
