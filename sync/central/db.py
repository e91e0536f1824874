"""The reference central system's data: its database, schema migrations, and parts by concern.

The database is a SQLite file (embedded default) or PostgreSQL (`postgresql://` DSN, the
production backend for several server processes); `sync.central.connection` is the seam.

Every workflow operation writes its business rows and appends its changes to the change log in
one transaction (`sync.central.changelog`). Codes are minted with `edge.core.codes` (the code
format is public API, docs/codes.md); nothing else of the edge is used.
"""

from __future__ import annotations

from pathlib import Path

from sync.central.catalogue import Catalogue, Sales
from sync.central.changelog import ChangeLog
from sync.central.connection import Connection, SqliteConnection
from sync.central.desk import PassDesk
from sync.central.devices import Devices
from sync.central.journals import Journals
from sync.central.keys import SigningKeys
from sync.central.postgres import PostgresConnection, is_dsn
from sync.central.workflows import Workflows

# Append only: a migration that shipped never changes; `PRAGMA user_version` (SQLite) or the
# schema_version table (PostgreSQL, types translated by `sync.central.postgres.schema`) counts
# those applied, each in one transaction (Connection.migrate). The first one's IF NOT EXISTS
# adopts a file written before the schema had versions.
MIGRATIONS: tuple[str, ...] = (
    # 1: sales, the change log and its views, devices, journals, the pass desk.
    """
CREATE TABLE IF NOT EXISTS signing_keys (
    key_id INTEGER PRIMARY KEY,
    private BLOB NOT NULL,
    public BLOB NOT NULL,
    retired INTEGER NOT NULL DEFAULT 0,
    endorsed_by INTEGER,
    endorsement BLOB
);
CREATE TABLE IF NOT EXISTS events (
    event_id INTEGER PRIMARY KEY, name TEXT NOT NULL, cancelled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS products (
    product_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    kind INTEGER NOT NULL,
    policy INTEGER NOT NULL,
    uses INTEGER NOT NULL,
    passback_minutes INTEGER NOT NULL,
    days INTEGER,               -- validity length of passes, from the day of sale or renewal
    zones INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS credentials (
    credential_id INTEGER PRIMARY KEY,
    product_id INTEGER NOT NULL,
    event_id INTEGER NOT NULL,
    sale_id INTEGER NOT NULL,
    holder TEXT,
    season INTEGER,
    paid INTEGER NOT NULL,
    valid_from INTEGER,         -- unix seconds
    valid_until INTEGER,
    duration INTEGER,           -- seconds of the original validity: what an extension adds
    reissue INTEGER NOT NULL DEFAULT 0,
    code TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'active',  -- active, revoked, cancelled
    renewed_to INTEGER
);
CREATE INDEX IF NOT EXISTS credentials_sale ON credentials (sale_id);
CREATE INDEX IF NOT EXISTS credentials_season ON credentials (season);
CREATE TABLE IF NOT EXISTS changes (
    revision INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, change BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS view_keys (key_id INTEGER PRIMARY KEY, change BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS view_credentials (credential_id INTEGER PRIMARY KEY, change BLOB);
CREATE TABLE IF NOT EXISTS view_plain_codes (key BLOB PRIMARY KEY, change BLOB) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS view_revoked_codes (key BLOB PRIMARY KEY, change BLOB) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS view_revoked_credentials (key INTEGER PRIMARY KEY, change BLOB);
CREATE TABLE IF NOT EXISTS view_revoked_products (key INTEGER PRIMARY KEY, change BLOB);
CREATE TABLE IF NOT EXISTS view_cancelled_events (key INTEGER PRIMARY KEY, change BLOB);
CREATE TABLE IF NOT EXISTS view_passages (
    device TEXT NOT NULL, seq INTEGER NOT NULL, change BLOB, PRIMARY KEY (device, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS devices (
    name TEXT PRIMARY KEY,
    public_key BLOB NOT NULL,
    push_url TEXT,
    revision INTEGER NOT NULL DEFAULT 0,  -- last revision the device reported
    last_seen_ms INTEGER
);
CREATE TABLE IF NOT EXISTS journal (
    device TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    lane TEXT NOT NULL,
    direction TEXT NOT NULL,
    reason TEXT NOT NULL,
    admitted INTEGER NOT NULL,
    code_hash BLOB,
    credential_id INTEGER,
    received_ms INTEGER NOT NULL,
    PRIMARY KEY (device, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS journal_credential ON journal (credential_id) WHERE admitted = 1;
CREATE TABLE IF NOT EXISTS double_entries (
    credential_id INTEGER NOT NULL,
    device TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    lane TEXT NOT NULL,
    entries INTEGER NOT NULL,   -- admitted entries of the credential once this one arrived
    allowed INTEGER NOT NULL,
    PRIMARY KEY (device, seq)
) WITHOUT ROWID;
-- The annual-pass desk (docs/protocol.md, "Counter operations").
CREATE TABLE IF NOT EXISTS voucher_products (
    product_id INTEGER PRIMARY KEY,     -- a product of kind voucher
    pass_product INTEGER NOT NULL       -- the pass it is redeemed for
);
CREATE TABLE IF NOT EXISTS customers (
    customer_id INTEGER PRIMARY KEY,
    surname TEXT NOT NULL,
    first_name TEXT NOT NULL,
    address TEXT NOT NULL               -- "n.a." where none is recorded
);
CREATE TABLE IF NOT EXISTS sale_buyers (sale_id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS passes (
    credential_id INTEGER PRIMARY KEY,  -- the pass
    voucher_id INTEGER NOT NULL UNIQUE, -- the voucher it was issued for
    customer_id INTEGER NOT NULL,       -- the holder
    shipping TEXT NOT NULL,             -- post or pickup
    device TEXT NOT NULL,               -- the desk that issued it
    issued_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS nfc_chips (
    uid TEXT PRIMARY KEY,               -- the chip's UID, upper-case hex (a plain code)
    credential_id INTEGER NOT NULL,     -- the pass whose card carries it
    revoked INTEGER NOT NULL DEFAULT 0  -- 1 once its card was replaced
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS desk_operations (
    device TEXT NOT NULL,
    key TEXT NOT NULL,                  -- the desk's idempotency key
    operation TEXT NOT NULL,
    answer BLOB NOT NULL,               -- msgpack, answered again to a repeat
    PRIMARY KEY (device, key)
) WITHOUT ROWID;
""",
    # 2: venues (docs/protocol.md, "Venues"). An event, and so what is sold for it, may belong
    # to a venue; so may a device. The log and its views note the venue a change concerns
    # (NULL: every venue) and a device with a venue is sent only its own and the group's.
    """
ALTER TABLE events ADD COLUMN venue TEXT;
ALTER TABLE devices ADD COLUMN venue TEXT;
ALTER TABLE devices ADD COLUMN rebootstrap INTEGER NOT NULL DEFAULT 0;  -- moved: snapshot first
ALTER TABLE changes ADD COLUMN venue TEXT;
ALTER TABLE view_credentials ADD COLUMN venue TEXT;
ALTER TABLE view_plain_codes ADD COLUMN venue TEXT;
ALTER TABLE view_revoked_codes ADD COLUMN venue TEXT;
ALTER TABLE view_revoked_credentials ADD COLUMN venue TEXT;
ALTER TABLE view_cancelled_events ADD COLUMN venue TEXT;
ALTER TABLE view_passages ADD COLUMN venue TEXT;
""",
    # 3: a device of a venue reads its venue's rows and the group's (venue NULL) by index:
    # its pulls two ranges of the log, its snapshot two ranges of each view, never the rows of
    # the other venues (ChangeLog.venue_changes_since, snapshot_chunk).
    """
CREATE INDEX IF NOT EXISTS changes_venue ON changes (venue, revision);
CREATE INDEX IF NOT EXISTS view_credentials_venue ON view_credentials (venue, credential_id);
CREATE INDEX IF NOT EXISTS view_plain_codes_venue ON view_plain_codes (venue, key);
CREATE INDEX IF NOT EXISTS view_revoked_codes_venue ON view_revoked_codes (venue, key);
CREATE INDEX IF NOT EXISTS view_revoked_credentials_venue ON view_revoked_credentials (venue, key);
CREATE INDEX IF NOT EXISTS view_cancelled_events_venue ON view_cancelled_events (venue, key);
CREATE INDEX IF NOT EXISTS view_passages_venue ON view_passages (venue, device, seq);
""",
)
SCHEMA_VERSION = len(MIGRATIONS)


def connect(target: str | Path) -> Connection:
    """The connection a --db value names: a PostgreSQL DSN or a SQLite file path."""
    text = str(target)
    if is_dsn(text):
        return PostgresConnection(text)
    return SqliteConnection(text)


class CentralDB:
    """The central system's database and its parts; safe to share between threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._connection = connect(path)
        try:
            self._connection.migrate(MIGRATIONS)
        except BaseException:
            self._connection.close()
            raise
        self.log = ChangeLog(self._connection)
        self.keys = SigningKeys(self._connection, self.log)
        self.catalogue = Catalogue(self._connection)
        self.sales = Sales(self._connection, self.log, self.keys, self.catalogue)
        self.workflows = Workflows(self._connection, self.log, self.catalogue, self.sales)
        self.devices = Devices(self._connection)
        self.journals = Journals(self._connection, self.log)
        self.desk = PassDesk(self._connection, self.log, self.catalogue, self.sales, self.workflows)

    @property
    def connection(self) -> Connection:
        """The database connection (its notifier wakes the server on commits elsewhere)."""
        return self._connection

    def close(self) -> None:
        """Close the database."""
        self._connection.close()
