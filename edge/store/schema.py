"""The store's schema as numbered migrations; `PRAGMA user_version` records how far a file is."""

from __future__ import annotations

# Append only: a migration that shipped never changes. Each runs in one transaction.
MIGRATIONS: tuple[str, ...] = (
    # 1: the gate core.
    """
    CREATE TABLE keys (
        key_id INTEGER PRIMARY KEY CHECK (key_id BETWEEN 0 AND 65535),
        public_key BLOB NOT NULL CHECK (length(public_key) = 32),
        retired INTEGER NOT NULL DEFAULT 0 CHECK (retired IN (0, 1))
    );
    -- Synced facts; they override what a signed code states about the same credential.
    CREATE TABLE credentials (
        credential_id INTEGER PRIMARY KEY,
        kind INTEGER NOT NULL,
        event_id INTEGER NOT NULL,
        product_id INTEGER NOT NULL,
        policy INTEGER NOT NULL,
        uses INTEGER NOT NULL,
        passback_minutes INTEGER NOT NULL,
        valid_from INTEGER,  -- unix seconds
        valid_until INTEGER,
        zones INTEGER NOT NULL,
        paid INTEGER NOT NULL CHECK (paid IN (0, 1))
    );
    -- Plain codes (legacy barcodes, NFC UIDs) by hash: the raw code is never stored.
    CREATE TABLE plain_codes (
        code_hash BLOB PRIMARY KEY,
        credential_id INTEGER NOT NULL
    ) WITHOUT ROWID;
    -- Revocation reasons: 1 revoked, 2 replaced, 3 cancelled.
    CREATE TABLE revoked_codes (code_hash BLOB PRIMARY KEY, reason INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE revoked_credentials (credential_id INTEGER PRIMARY KEY, reason INTEGER NOT NULL);
    CREATE TABLE revoked_products (product_id INTEGER PRIMARY KEY, reason INTEGER NOT NULL);
    CREATE TABLE cancelled_events (event_id INTEGER PRIMARY KEY);
    -- Passages per credential, at any gate; times in unix milliseconds.
    CREATE TABLE entries (
        credential_id INTEGER PRIMARY KEY,
        count INTEGER NOT NULL,
        first_at INTEGER,
        first_gate TEXT,
        last_at INTEGER NOT NULL,
        last_direction TEXT NOT NULL,
        last_gate TEXT NOT NULL
    );
    -- Every decision, admitted or not. code_hint is a masked code for operators.
    CREATE TABLE journal (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        lane TEXT NOT NULL,
        direction TEXT NOT NULL,
        reason TEXT NOT NULL,
        admitted INTEGER NOT NULL,
        code_hash BLOB,
        code_hint TEXT NOT NULL,
        credential_id INTEGER
    );
    CREATE TABLE sync_cursors (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 2: track which journal rows reached the central system, so upload resumes after a restart.
    """
    ALTER TABLE journal ADD COLUMN uploaded INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX journal_unsent ON journal (seq) WHERE uploaded = 0;
    """,
    # 3: codes blocked for now (a block can be lifted, unlike a revocation), and what the
    # central system answered to each uploaded journal row.
    """
    CREATE TABLE blocked_codes (code_hash BLOB PRIMARY KEY) WITHOUT ROWID;
    CREATE TABLE journal_replies (
        seq INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,  -- unix milliseconds of the answer
        status TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    """,
    # 4: the durable print queue. A job is printed once or marked failed; its id makes a
    # second submission a no-op. The document (FGL or a card image) is rendered at submission.
    """
    CREATE TABLE print_jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL UNIQUE,
        printer TEXT NOT NULL,
        template TEXT NOT NULL,
        document BLOB NOT NULL,
        digest BLOB NOT NULL,  -- sha256 of the document: a resubmission must match it
        state TEXT NOT NULL CHECK (state IN ('queued', 'printing', 'done', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        submitted_at INTEGER NOT NULL,  -- unix milliseconds
        finished_at INTEGER
    );
    CREATE INDEX print_jobs_open ON print_jobs (printer, seq) WHERE state IN ('queued', 'printing');
    """,
    # 5: passages admitted at other gates, applied once each by (device, seq).
    """
    CREATE TABLE remote_passages (
        device TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (device, seq)
    ) WITHOUT ROWID;
    """,
    # 6: the pass desk's operations for the central system, sent once each by their key
    # (docs/protocol.md, "Counter operations"), and kept after sending for the status page.
    """
    CREATE TABLE desk_operations (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL UNIQUE,
        operation TEXT NOT NULL,
        body BLOB NOT NULL,  -- the msgpack request body, key included
        voucher_hash BLOB,  -- issue: the voucher's code hash ("redeemed here" while offline)
        state TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'rejected')),
        detail TEXT,  -- the central system's answer or refusal
        created_at INTEGER NOT NULL,  -- unix milliseconds
        sent_at INTEGER
    );
    CREATE INDEX desk_operations_queued ON desk_operations (seq) WHERE state = 'queued';
    """,
    # 7: the central revision the store holds never goes backwards, whatever writes it (a push,
    # a pull, a bundle, a bootstrap): an old bundle or a replay must not rewind it and then have
    # stale facts re-applied. Only deleting it (SyncStore.forget_revision) starts over.
    """
    CREATE TRIGGER sync_revision_insert BEFORE INSERT ON sync_cursors
    WHEN NEW.name = 'sync.revision' AND CAST(NEW.value AS INTEGER) < (
        SELECT CAST(value AS INTEGER) FROM sync_cursors WHERE name = 'sync.revision')
    BEGIN
        SELECT RAISE(ABORT, 'the sync revision never goes backwards');
    END;
    CREATE TRIGGER sync_revision_update BEFORE UPDATE OF value ON sync_cursors
    WHEN NEW.name = 'sync.revision' AND CAST(NEW.value AS INTEGER) < CAST(OLD.value AS INTEGER)
    BEGIN
        SELECT RAISE(ABORT, 'the sync revision never goes backwards');
    END;
    """,
    # 8: steps of the wall clock the gate noticed (NTP correcting a wrong clock): journal
    # times before `after_seq` were stamped by the clock as it was before the step.
    """
    CREATE TABLE clock_jumps (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,  -- unix milliseconds by the new clock
        jump_ms INTEGER NOT NULL,  -- how far it moved against monotonic time (< 0: backwards)
        after_seq INTEGER  -- the last journal row before the step (NULL: none yet)
    );
    """,
    # 9: pretix's positions as pretix's check-in decides with them (sync/pretix/checkin.py):
    # every position a scan of the list can reach, by its secret's hash, with its passages on
    # the list; a pull replaces them (generation). The journal by credential gives the
    # passages a pull has not brought back yet.
    """
    CREATE TABLE pretix_positions (
        position_id INTEGER PRIMARY KEY,
        code_hash BLOB NOT NULL UNIQUE,
        item INTEGER NOT NULL,
        variation INTEGER,
        subevent INTEGER,
        valid_from INTEGER,  -- unix milliseconds
        valid_until INTEGER,
        order_status TEXT NOT NULL,  -- pretix's: n pending, p paid, e expired, c cancelled
        flags INTEGER NOT NULL,  -- 1 blocked, 2 valid_if_pending, 4 require_approval
        addon_to INTEGER,
        generation INTEGER NOT NULL
    );
    CREATE INDEX pretix_positions_addons ON pretix_positions (addon_to) WHERE addon_to IS NOT NULL;
    CREATE TABLE pretix_passages (
        position_id INTEGER NOT NULL,
        at INTEGER NOT NULL,  -- unix milliseconds
        direction TEXT NOT NULL,
        PRIMARY KEY (position_id, at, direction)
    ) WITHOUT ROWID;
    CREATE INDEX journal_credential ON journal (credential_id) WHERE admitted = 1;
    """,
    # 10: a bootstrap that starts over (the device was moved to another venue, the central
    # system lost revisions) replaces the synced facts instead of adding to them: it marks the
    # facts held as stale first, every fact the snapshot brings again is written unmarked
    # (INSERT OR REPLACE), and those still marked at its end are removed
    # (SyncStore.mark_replaced, sweep_replaced). Decisions never read the mark.
    """
    ALTER TABLE credentials ADD COLUMN stale INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE plain_codes ADD COLUMN stale INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE revoked_codes ADD COLUMN stale INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE revoked_credentials ADD COLUMN stale INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE revoked_products ADD COLUMN stale INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE cancelled_events ADD COLUMN stale INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX credentials_stale ON credentials (credential_id) WHERE stale = 1;
    CREATE INDEX plain_codes_stale ON plain_codes (code_hash) WHERE stale = 1;
    CREATE INDEX revoked_codes_stale ON revoked_codes (code_hash) WHERE stale = 1;
    CREATE INDEX revoked_credentials_stale ON revoked_credentials (credential_id)
        WHERE stale = 1;
    CREATE INDEX revoked_products_stale ON revoked_products (product_id) WHERE stale = 1;
    CREATE INDEX cancelled_events_stale ON cancelled_events (event_id) WHERE stale = 1;
    """,
    # 11: the journal, the passages and what the central system answered moved to the journal
    # file (JOURNAL_MIGRATIONS), which has its own write lock and WAL: a lane's record never
    # waits for a bulk write's transaction, nor does its fsync carry a bulk write's pages. The
    # rows are copied there first (edge.store.base._move_journal), then dropped here.
    """
    DROP TABLE journal;
    DROP TABLE entries;
    DROP TABLE journal_replies;
    DROP TABLE clock_jumps;
    DROP TABLE remote_passages;
    """,
)

VERSION = len(MIGRATIONS)
JOURNAL_MOVED = 11  # the main file's version from which the journal file holds the journal

# The journal file's schema (the main file's path with .journal before its suffix): what the
# gate recorded and every passage it knows of. Version 1 is these tables as the main file
# held them at its version 10, so rows copy over unchanged.
JOURNAL_MIGRATIONS: tuple[str, ...] = (
    # 1: the tables that were in the main file.
    """
    -- Passages per credential, at any gate; times in unix milliseconds.
    CREATE TABLE entries (
        credential_id INTEGER PRIMARY KEY,
        count INTEGER NOT NULL,
        first_at INTEGER,
        first_gate TEXT,
        last_at INTEGER NOT NULL,
        last_direction TEXT NOT NULL,
        last_gate TEXT NOT NULL
    );
    -- Every decision, admitted or not. code_hint is a masked code for operators.
    CREATE TABLE journal (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        lane TEXT NOT NULL,
        direction TEXT NOT NULL,
        reason TEXT NOT NULL,
        admitted INTEGER NOT NULL,
        code_hash BLOB,
        code_hint TEXT NOT NULL,
        credential_id INTEGER,
        uploaded INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX journal_unsent ON journal (seq) WHERE uploaded = 0;
    CREATE INDEX journal_credential ON journal (credential_id) WHERE admitted = 1;
    -- What the central system answered to each uploaded journal row.
    CREATE TABLE journal_replies (
        seq INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,  -- unix milliseconds of the answer
        status TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    -- Steps of the wall clock the gate noticed: journal times before `after_seq` were
    -- stamped by the clock as it was before the step.
    CREATE TABLE clock_jumps (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,  -- unix milliseconds by the new clock
        jump_ms INTEGER NOT NULL,  -- how far it moved against monotonic time (< 0: backwards)
        after_seq INTEGER  -- the last journal row before the step (NULL: none yet)
    );
    -- Passages admitted at other gates, applied once each by (device, seq).
    CREATE TABLE remote_passages (
        device TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (device, seq)
    ) WITHOUT ROWID;
    """,
)

JOURNAL_VERSION = len(JOURNAL_MIGRATIONS)
# The tables the journal file holds, in the order they are copied from an older main file.
JOURNAL_TABLES = ("journal", "entries", "journal_replies", "clock_jumps", "remote_passages")
