"""The local store: SQLite in WAL mode, one `Store` with every owner's part."""

from __future__ import annotations

from dataclasses import dataclass

from edge.store.desk import DeskStore
from edge.store.gate import GateStore
from edge.store.pretix import PretixStore
from edge.store.printjobs import PrintJobStore
from edge.store.sync import SyncStore


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Row counts for status output."""

    schema_version: int
    keys: int
    credentials: int
    plain_codes: int
    revoked_codes: int
    revoked_credentials: int
    revoked_products: int
    cancelled_events: int
    journal: int
    journal_unsent: int


class Store(GateStore, SyncStore, PrintJobStore, DeskStore, PretixStore):
    """The device's SQLite store: every owner's part over one pair of connections.

    Open with `await Store.open(path)`, close with `close()`; hand each owner the store typed
    as its own part (`GateStore`, `SyncStore`, `PrintJobStore`, `DeskStore`, `PretixStore`).
    """

    def stats(self) -> StoreStats:
        """Row counts of every table (a full scan of the large ones: for status, not the lanes)."""

        def count(sql: str) -> int:
            return int(self._reader.execute(sql).fetchone()[0])

        return StoreStats(
            schema_version=count("PRAGMA user_version"),
            keys=count("SELECT count(*) FROM keys"),
            credentials=count("SELECT count(*) FROM credentials"),
            plain_codes=count("SELECT count(*) FROM plain_codes"),
            revoked_codes=count("SELECT count(*) FROM revoked_codes"),
            revoked_credentials=count("SELECT count(*) FROM revoked_credentials"),
            revoked_products=count("SELECT count(*) FROM revoked_products"),
            cancelled_events=count("SELECT count(*) FROM cancelled_events"),
            journal=count("SELECT count(*) FROM journal"),
            journal_unsent=count("SELECT count(*) FROM journal WHERE uploaded = 0"),
        )
