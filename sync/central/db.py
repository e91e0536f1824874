"""The reference central system's data: SQLite, one change log with a revision per change.

Every workflow operation writes its business rows and appends its changes to the log in one
transaction, and keeps `view_*` tables equal to what an edge holds after applying the whole
log: the bootstrap snapshot pages through them. Codes are minted with `edge.core.codes` (the code
format is public API, docs/codes.md); nothing else of the edge is used.
"""

from __future__ import annotations

import enum
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.core.codes import Claims, EntryPolicy, Kind, PolicyKind, Validity, mint, plain_hash
from edge.core.codes import parse as parse_code
from edge.core.errors import CodeError, SyncError
from sync import protocol
from sync.protocol import (
    CancelEvent,
    Change,
    CredentialChange,
    Endorsement,
    JournalRecord,
    KeyChange,
    Passage,
    PlainCodeChange,
    Revocation,
    RevokeCode,
    RevokeCredential,
    RevokeProduct,
    change_to_wire,
)

BUSY_TIMEOUT_MS = 10_000

SCHEMA = """
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
CREATE TABLE IF NOT EXISTS desk_operations (
    device TEXT NOT NULL,
    key TEXT NOT NULL,                  -- the desk's idempotency key
    operation TEXT NOT NULL,
    answer BLOB NOT NULL,               -- msgpack, answered again to a repeat
    PRIMARY KEY (device, key)
) WITHOUT ROWID;
"""

# Snapshot sections in order, with the table and key columns each pages through.
_SECTIONS: dict[str, tuple[str, str]] = {
    "keys": ("view_keys", "key_id"),
    "credentials": ("view_credentials", "credential_id"),
    "plain_codes": ("view_plain_codes", "key"),
    "revoked_codes": ("view_revoked_codes", "key"),
    "revoked_credentials": ("view_revoked_credentials", "key"),
    "revoked_products": ("view_revoked_products", "key"),
    "cancelled_events": ("view_cancelled_events", "key"),
    "passages": ("view_passages", "device, seq"),
}
assert tuple(_SECTIONS) == protocol.SNAPSHOT_SECTIONS


class CentralError(SyncError, ValueError):
    """An admin operation cannot be done as asked (unknown id, wrong state)."""


class State(enum.Enum):
    """Where a credential stands."""

    ACTIVE = "active"
    REVOKED = "revoked"  # its codes no longer admit (revoked, or a sale cancelled)
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Sold:
    """A credential and its code."""

    credential_id: int
    code: str


@dataclass(frozen=True, slots=True)
class Renewal:
    """What a season renewal did, or would do in a dry run."""

    renewed: list[tuple[int, int]]  # (old credential, new credential; 0 in a dry run)
    skipped: list[tuple[int, str]]  # (credential, why)
    batches: int
    dry_run: bool


@dataclass(frozen=True, slots=True)
class DoubleEntry:
    """A credential admitted more often than its policy allows, at gates cut off from each other."""

    credential_id: int
    device: str
    seq: int
    at_ms: int
    lane: str
    entries: int
    allowed: int


def now_ms() -> int:
    """Wall clock in unix milliseconds."""
    return time.time_ns() // 1_000_000


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


class CentralDB:
    """The central system's SQLite file; safe to share between threads (one lock)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = FULL")
        self._conn.executescript(SCHEMA)
        self._lock = threading.RLock()

    def close(self) -> None:
        """Close the file."""
        self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _one(self, sql: str, *args: Any) -> Any:
        with self._lock:
            return self._conn.execute(sql, args).fetchone()

    def _all(self, sql: str, *args: Any) -> list[Any]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    # -- the change log ----------------------------------------------------------------------

    def head(self) -> int:
        """The newest revision (0: nothing yet)."""
        return int(self._one("SELECT coalesce(max(revision), 0) FROM changes")[0])

    def data_version(self) -> int:
        """Changes when another connection commits (the admin CLI): the server then pushes."""
        return int(self._one("PRAGMA data_version")[0])

    def _emit(self, conn: sqlite3.Connection, changes: Sequence[Change]) -> None:
        at = now_ms()
        rows = []
        for change in changes:
            wire = protocol.pack(change_to_wire(change))
            rows.append((at, wire))
            self._view(conn, change, wire)
        conn.executemany("INSERT INTO changes (at_ms, change) VALUES (?, ?)", rows)

    @staticmethod
    def _view(conn: sqlite3.Connection, change: Change, wire: bytes) -> None:
        match change:
            case KeyChange():
                conn.execute(
                    "INSERT OR REPLACE INTO view_keys VALUES (?, ?)", (change.key_id, wire)
                )
            case CredentialChange():
                conn.execute(
                    "INSERT OR REPLACE INTO view_credentials VALUES (?, ?)",
                    (change.credential_id, wire),
                )
            case PlainCodeChange():
                conn.execute(
                    "INSERT OR REPLACE INTO view_plain_codes VALUES (?, ?)",
                    (change.code_hash, wire),
                )
            case RevokeCode():
                conn.execute(
                    "INSERT OR REPLACE INTO view_revoked_codes VALUES (?, ?)",
                    (change.code_hash, wire),
                )
            case RevokeCredential():
                conn.execute(
                    "INSERT OR REPLACE INTO view_revoked_credentials VALUES (?, ?)",
                    (change.credential_id, wire),
                )
            case RevokeProduct():
                conn.execute(
                    "INSERT OR REPLACE INTO view_revoked_products VALUES (?, ?)",
                    (change.product_id, wire),
                )
            case CancelEvent():
                conn.execute(
                    "INSERT OR REPLACE INTO view_cancelled_events VALUES (?, ?)",
                    (change.event_id, wire),
                )
            case Passage():
                conn.execute(
                    "INSERT OR REPLACE INTO view_passages VALUES (?, ?, ?)",
                    (change.device, change.seq, wire),
                )

    def publish(self, changes: Sequence[Change]) -> int:
        """Publish changes as they are, one revision each (imports from another system,
        benchmarks); returns the new head."""
        with self._tx() as conn:
            self._emit(conn, changes)
        return self.head()

    def changes_since(self, revision: int, limit: int) -> tuple[int, list[list[Any]], int]:
        """(first, wire changes first+1.., head): at most `limit` changes after `revision`."""
        with self._lock:
            head = self.head()
            if revision > head:
                raise protocol.RequestRejectedError(
                    protocol.ErrorCode.REVISION_AHEAD,
                    f"revision {revision} is ahead of the central system's {head}; "
                    "the edge must bootstrap again",
                )
            rows = self._conn.execute(
                "SELECT change FROM changes WHERE revision > ? ORDER BY revision LIMIT ?",
                (revision, limit),
            ).fetchall()
        return revision, [protocol.unpack(r[0], "change", 1 << 20) for r in rows], head

    def snapshot_chunk(
        self, cursor: tuple[str, Any] | None, limit: int
    ) -> tuple[list[list[Any]], tuple[str, Any] | None]:
        """Up to `limit` state changes from `cursor` on, and the cursor after them."""
        section, after = cursor if cursor is not None else (protocol.SNAPSHOT_SECTIONS[0], None)
        names = list(protocol.SNAPSHOT_SECTIONS)
        out: list[list[Any]] = []
        with self._lock:
            while len(out) < limit:
                table, key = _SECTIONS[section]
                where, args = "", tuple[Any, ...]()
                if section == "passages" and after:
                    where, args = "WHERE (device, seq) > (?, ?)", tuple(after)
                elif section != "passages" and after is not None:
                    where, args = f"WHERE {key} > ?", (after,)
                rows = self._conn.execute(
                    f"SELECT {key}, change FROM {table} {where} ORDER BY {key} LIMIT ?",
                    (*args, limit - len(out)),
                ).fetchall()
                out.extend(protocol.unpack(r[-1], "change", 1 << 20) for r in rows)
                if len(out) >= limit and rows:
                    last = rows[-1]
                    position = [last[0], last[1]] if section == "passages" else last[0]
                    return out, (section, position)
                index = names.index(section)
                if index + 1 == len(names):
                    return out, None
                section, after = names[index + 1], None
        return out, (section, after)

    # -- keys --------------------------------------------------------------------------------

    def add_key(self) -> int:
        """A new signing key; the newest active key vouches for it. Returns its id."""
        private = Ed25519PrivateKey.generate()
        public = protocol.public_bytes(private)
        with self._tx() as conn:
            (newest,) = conn.execute("SELECT coalesce(max(key_id), 0) FROM signing_keys").fetchone()
            key_id = newest + 1
            if key_id > 0xFFFF:
                raise CentralError("all 65536 key ids are used")
            endorsement = None
            signer = self._active(conn)
            if signer is not None:
                endorsement = protocol.endorse(signer[1], signer[0], key_id, public).signature
            conn.execute(
                "INSERT INTO signing_keys VALUES (?, ?, ?, 0, ?, ?)",
                (
                    key_id,
                    private.private_bytes_raw(),
                    public,
                    signer[0] if signer else None,
                    endorsement,
                ),
            )
            self._emit(conn, [KeyChange(key_id, public, retired=False)])
        return int(key_id)

    def retire_key(self, key_id: int) -> None:
        """Retire a key: codes and envelopes it signed no longer count. Final."""
        with self._tx() as conn:
            row = conn.execute(
                "SELECT public, retired FROM signing_keys WHERE key_id = ?", (key_id,)
            ).fetchone()
            if row is None:
                raise CentralError(f"no key {key_id}")
            if row[1]:
                raise CentralError(f"key {key_id} is retired already")
            active = conn.execute(
                "SELECT count(*) FROM signing_keys WHERE retired = 0 AND key_id != ?", (key_id,)
            ).fetchone()[0]
            if not active:
                raise CentralError(f"key {key_id} is the last active key; add a new key first")
            conn.execute("UPDATE signing_keys SET retired = 1 WHERE key_id = ?", (key_id,))
            self._emit(conn, [KeyChange(key_id, bytes(row[0]), retired=True)])

    def signing_keys(self) -> list[tuple[int, bytes, bool]]:
        """(id, public key, retired) of every key."""
        rows = self._all("SELECT key_id, public, retired FROM signing_keys ORDER BY key_id")
        return [(k, bytes(p), bool(r)) for k, p, r in rows]

    @staticmethod
    def _active(conn: sqlite3.Connection) -> tuple[int, Ed25519PrivateKey] | None:
        row = conn.execute(
            "SELECT key_id, private FROM signing_keys WHERE retired = 0 ORDER BY key_id DESC"
        ).fetchone()
        if row is None:
            return None
        return int(row[0]), Ed25519PrivateKey.from_private_bytes(bytes(row[1]))

    def signer(self) -> tuple[int, Ed25519PrivateKey, tuple[Endorsement, ...]]:
        """The key envelopes are signed with, and the endorsements that lead to it."""
        with self._lock:
            active = self._active(self._conn)
            if active is None:
                raise CentralError("no signing key; run `edge-central key add`")
            rows = self._conn.execute(
                "SELECT key_id, public, endorsed_by, endorsement FROM signing_keys"
                " WHERE endorsed_by IS NOT NULL AND key_id <= ? ORDER BY key_id",
                (active[0],),
            ).fetchall()
        chain = tuple(Endorsement(k, bytes(p), b, bytes(s)) for k, p, b, s in rows)
        return active[0], active[1], chain[-protocol.MAX_CHAIN :]

    # -- catalogue ---------------------------------------------------------------------------

    def add_event(self, name: str, event_id: int | None = None) -> int:
        """A new event; returns its id."""
        with self._tx() as conn:
            cursor = conn.execute(
                "INSERT INTO events (event_id, name) VALUES (?, ?)", (event_id, name)
            )
            return int(cursor.lastrowid or 0)

    def add_product(
        self,
        name: str,
        *,
        kind: Kind = Kind.TICKET,
        policy: EntryPolicy | None = None,
        days: int | None = None,
        zones: int = 0,
        product_id: int | None = None,
    ) -> int:
        """A new product; passes need `days` (their validity length)."""
        policy = policy or EntryPolicy.single()
        if kind is Kind.PASS and not days:
            raise CentralError("a pass product needs its validity in days")
        with self._tx() as conn:
            cursor = conn.execute(
                "INSERT INTO products VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    product_id,
                    name,
                    int(kind),
                    int(policy.kind),
                    policy.uses,
                    policy.passback_minutes,
                    days,
                    zones,
                ),
            )
            return int(cursor.lastrowid or 0)

    # -- credentials -------------------------------------------------------------------------

    def _product(self, conn: sqlite3.Connection, product_id: int) -> tuple[Any, ...]:
        row = conn.execute(
            "SELECT kind, policy, uses, passback_minutes, days, zones FROM products"
            " WHERE product_id = ?",
            (product_id,),
        ).fetchone()
        if row is None:
            raise CentralError(f"no product {product_id}")
        return tuple(row)

    def _code(self, conn: sqlite3.Connection, cid: int) -> tuple[str, CredentialChange]:
        """Mint the code of a credential as it stands, and its facts for the edges."""
        row = conn.execute(
            "SELECT c.product_id, c.event_id, c.paid, c.valid_from, c.valid_until, c.reissue,"
            " p.kind, p.policy, p.uses, p.passback_minutes, p.zones"
            " FROM credentials c JOIN products p USING (product_id) WHERE credential_id = ?",
            (cid,),
        ).fetchone()
        product, event, paid, start, end, reissue, kind, policy, uses, passback, zones = row
        active = self._active(conn)
        if active is None:
            raise CentralError("no signing key; run `edge-central key add`")
        validity = None
        if start is not None:
            validity = Validity(
                datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)
            )
        claims = Claims(
            key_id=active[0],
            credential_id=cid,
            kind=Kind(kind),
            event_id=event,
            product_id=product,
            policy=EntryPolicy(PolicyKind(policy), uses, passback),
            validity=validity,
            zones=zones,
            reissue=reissue,
        )
        facts = CredentialChange(
            cid, kind, event, product, policy, uses, passback, start, end, zones, bool(paid)
        )
        return mint(claims, active[1]), facts

    def sell(
        self,
        product_id: int,
        *,
        event_id: int = 0,
        count: int = 1,
        holder: str | None = None,
        paid: bool = True,
        valid_from: datetime | None = None,
        season: int | None = None,
        plain_codes: Sequence[str] = (),
    ) -> tuple[int, list[Sold]]:
        """Sell `count` credentials in one sale; returns the sale id and the codes."""
        if count < 1:
            raise CentralError("count must be at least 1")
        if plain_codes and len(plain_codes) != count:
            raise CentralError("give one plain code per credential, or none")
        with self._tx() as conn:
            _, _, _, _, days, _ = self._product(conn, product_id)
            if (
                event_id
                and conn.execute("SELECT 1 FROM events WHERE event_id = ?", (event_id,)).fetchone()
                is None
            ):
                raise CentralError(f"no event {event_id}")
            (sale,) = conn.execute(
                "SELECT coalesce(max(sale_id), 0) + 1 FROM credentials"
            ).fetchone()
            start = end = duration = None
            if days:
                start = _epoch(valid_from or datetime.now(UTC).replace(microsecond=0))
                duration = days * 86400
                end = start + duration - 1
            sold: list[Sold] = []
            changes: list[Change] = []
            for i in range(count):
                cursor = conn.execute(
                    "INSERT INTO credentials (product_id, event_id, sale_id, holder, season,"
                    " paid, valid_from, valid_until, duration, code)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '')",
                    (product_id, event_id, sale, holder, season, int(paid), start, end, duration),
                )
                cid = int(cursor.lastrowid or 0)
                code, facts = self._code(conn, cid)
                conn.execute("UPDATE credentials SET code = ? WHERE credential_id = ?", (code, cid))
                sold.append(Sold(cid, code))
                changes.append(facts)
                if plain_codes:
                    changes.append(PlainCodeChange(plain_hash(plain_codes[i]), cid))
            self._emit(conn, changes)
        return int(sale), sold

    def _credential(self, conn: sqlite3.Connection, cid: int) -> tuple[Any, ...]:
        row = conn.execute(
            "SELECT state, code, valid_from, valid_until, duration, paid FROM credentials"
            " WHERE credential_id = ?",
            (cid,),
        ).fetchone()
        if row is None:
            raise CentralError(f"no credential {cid}")
        return tuple(row)

    def credential_code(self, cid: int) -> str:
        """The current code of a credential."""
        with self._lock:
            return str(self._credential(self._conn, cid)[1])

    def revoke_code(self, code: str) -> int:
        """Revoke one code (by its text); returns the credential it belonged to, 0 if unknown."""
        try:
            parsed = parse_code(code.encode("ascii", "replace"))
        except CodeError as err:
            raise CentralError(f"not a code: {err}") from err
        with self._tx() as conn:
            row = conn.execute(
                "SELECT credential_id FROM credentials WHERE code = ?", (code.upper(),)
            ).fetchone()
            self._emit(conn, [RevokeCode(parsed.hash, Revocation.REVOKED)])
        return int(row[0]) if row else 0

    def cancel_sale(self, sale_id: int) -> list[int]:
        """Cancel a sale: every credential of it is rejected as cancelled."""
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT credential_id FROM credentials WHERE sale_id = ? AND state = 'active'",
                (sale_id,),
            ).fetchall()
            if not rows:
                raise CentralError(f"no active credentials in sale {sale_id}")
            cids = [int(r[0]) for r in rows]
            conn.executemany(
                "UPDATE credentials SET state = 'cancelled' WHERE credential_id = ?",
                [(c,) for c in cids],
            )
            self._emit(conn, [RevokeCredential(c, Revocation.CANCELLED) for c in cids])
        return cids

    def cancel_event(self, event_id: int) -> None:
        """Cancel an event: every ticket for it is rejected at every gate."""
        with self._tx() as conn:
            row = conn.execute("SELECT cancelled FROM events WHERE event_id = ?", (event_id,))
            found = row.fetchone()
            if found is None:
                raise CentralError(f"no event {event_id}")
            if found[0]:
                raise CentralError(f"event {event_id} is cancelled already")
            conn.execute("UPDATE events SET cancelled = 1 WHERE event_id = ?", (event_id,))
            self._emit(conn, [CancelEvent(event_id)])

    def extend(self, cid: int) -> datetime:
        """Extend a pass by its original duration; the code stays. Returns the new end."""
        with self._tx() as conn:
            state, _, _, end, duration, _ = self._credential(conn, cid)
            if state != "active" or duration is None:
                raise CentralError(f"credential {cid} is {state} or has no validity to extend")
            end += duration
            conn.execute(
                "UPDATE credentials SET valid_until = ? WHERE credential_id = ?", (end, cid)
            )
            _, facts = self._code(conn, cid)
            self._emit(conn, [facts])
        return datetime.fromtimestamp(end, UTC)

    def replace(self, cid: int) -> str:
        """Invalidate and replace a lost card: a new code, the old one rejected as replaced."""
        with self._tx() as conn:
            state, old, *_ = self._credential(conn, cid)
            if state != "active":
                raise CentralError(f"credential {cid} is {state}")
            conn.execute(
                "UPDATE credentials SET reissue = reissue + 1 WHERE credential_id = ?", (cid,)
            )
            code, facts = self._code(conn, cid)
            conn.execute("UPDATE credentials SET code = ? WHERE credential_id = ?", (code, cid))
            old_hash = parse_code(str(old).encode("ascii")).hash
            self._emit(conn, [RevokeCode(old_hash, Revocation.REPLACED), facts])
        return code

    def mark_paid(self, cid: int) -> None:
        """Record the payment of a credential: it opens gates from now on."""
        with self._tx() as conn:
            *_, paid = self._credential(conn, cid)
            if paid:
                raise CentralError(f"credential {cid} is paid already")
            conn.execute("UPDATE credentials SET paid = 1 WHERE credential_id = ?", (cid,))
            _, facts = self._code(conn, cid)
            self._emit(conn, [facts])

    def renew_season(
        self,
        season: int,
        new_season: int,
        *,
        batch_size: int,
        valid_from: datetime,
        dry_run: bool,
    ) -> Renewal:
        """Renew the active credentials of `season` for `new_season`, unpaid, in batches."""
        if batch_size < 1:
            raise CentralError("batch size must be at least 1")
        rows = self._all(
            "SELECT credential_id, state, renewed_to, product_id, holder FROM credentials"
            " WHERE season = ? ORDER BY credential_id",
            season,
        )
        if not rows:
            raise CentralError(f"no credentials in season {season}")
        todo, skipped = [], []
        for cid, state, renewed_to, product, holder in rows:
            if state != "active":
                skipped.append((cid, f"{state}, not renewed"))
            elif renewed_to is not None:
                skipped.append((cid, f"renewed already as {renewed_to}"))
            else:
                todo.append((cid, product, holder))
        batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
        if dry_run:
            return Renewal([(cid, 0) for cid, _, _ in todo], skipped, len(batches), dry_run=True)
        renewed = []
        for batch in batches:
            with self._tx() as conn:
                for cid, product, _ in batch:
                    _, _, _, _, days, _ = self._product(conn, product)
                    start = _epoch(valid_from)
                    duration = days * 86400 if days else None
                    end = start + duration - 1 if duration else None
                    cursor = conn.execute(
                        "INSERT INTO credentials (product_id, event_id, sale_id, holder, season,"
                        " paid, valid_from, valid_until, duration, code)"
                        " SELECT product_id, event_id, sale_id, holder, ?, 0, ?, ?, ?, ''"
                        " FROM credentials WHERE credential_id = ?",
                        (new_season, start, end, duration, cid),
                    )
                    new = int(cursor.lastrowid or 0)
                    code, facts = self._code(conn, new)
                    conn.execute(
                        "UPDATE credentials SET code = ? WHERE credential_id = ?", (code, new)
                    )
                    conn.execute(
                        "UPDATE credentials SET renewed_to = ? WHERE credential_id = ?", (new, cid)
                    )
                    self._emit(conn, [facts])
                    renewed.append((cid, new))
        return Renewal(renewed, skipped, len(batches), dry_run=False)

    # -- devices and journals ----------------------------------------------------------------

    def add_device(self, name: str, public_key: bytes) -> None:
        """Register a device by its identity key (from its start log)."""
        if len(public_key) != 32:
            raise CentralError("a device key is a 32-byte Ed25519 public key")
        protocol._str(name, "device name")
        with self._tx() as conn:
            try:
                conn.execute(
                    "INSERT INTO devices (name, public_key) VALUES (?, ?)", (name, public_key)
                )
            except sqlite3.IntegrityError:
                raise CentralError(f"device {name!r} is registered already") from None

    def remove_device(self, name: str) -> None:
        """Forget a device (stolen, retired): its requests are refused, it gets no pushes."""
        with self._tx() as conn:
            if not conn.execute("DELETE FROM devices WHERE name = ?", (name,)).rowcount:
                raise CentralError(f"no device {name!r}")

    def device_key(self, name: str) -> bytes | None:
        """The public key a registered device signs its requests with."""
        row = self._one("SELECT public_key FROM devices WHERE name = ?", name)
        return None if row is None else bytes(row[0])

    def seen(self, name: str, *, revision: int | None = None, push_url: str | None = None) -> None:
        """Note contact with a device, its revision and (hello) where it takes pushes."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE devices SET last_seen_ms = ?, revision = coalesce(?, revision),"
                " push_url = coalesce(?, push_url) WHERE name = ?",
                (now_ms(), revision, push_url, name),
            )

    def devices(self) -> list[tuple[str, str | None, int, int | None]]:
        """(name, push url, revision, last seen ms) of every device."""
        rows = self._all("SELECT name, push_url, revision, last_seen_ms FROM devices ORDER BY name")
        return [(str(n), u, int(r), s) for n, u, r, s in rows]

    def ingest(self, device: str, records: Sequence[JournalRecord]) -> tuple[int, int]:
        """Store journal rows once each; publish admitted passages. (new, duplicates)."""
        new = 0
        received = now_ms()
        with self._tx() as conn:
            changes: list[Change] = []
            for r in records:
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO journal VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        device,
                        r.seq,
                        r.at_ms,
                        r.lane,
                        r.direction,
                        r.reason,
                        int(r.admitted),
                        r.code_hash,
                        r.credential_id,
                        received,
                    ),
                )
                if not cursor.rowcount:
                    continue
                new += 1
                if r.admitted and r.credential_id is not None:
                    entry = r.direction == "entry"
                    changes.append(Passage(device, r.seq, r.credential_id, r.at_ms, r.lane, entry))
                    if entry:
                        self._check_double(conn, device, r)
            self._emit(conn, changes)
        return new, len(records) - new

    @staticmethod
    def _check_double(conn: sqlite3.Connection, device: str, r: JournalRecord) -> None:
        row = conn.execute(
            "SELECT p.policy, p.uses FROM credentials c JOIN products p USING (product_id)"
            " WHERE c.credential_id = ?",
            (r.credential_id,),
        ).fetchone()
        if row is None or row[0] == int(PolicyKind.UNLIMITED):
            return
        (count,) = conn.execute(
            "SELECT count(*) FROM journal WHERE credential_id = ? AND admitted = 1"
            " AND direction = 'entry'",
            (r.credential_id,),
        ).fetchone()
        if count > row[1]:
            conn.execute(
                "INSERT OR IGNORE INTO double_entries VALUES (?, ?, ?, ?, ?, ?, ?)",
                (r.credential_id, device, r.seq, r.at_ms, r.lane, count, row[1]),
            )

    def double_entries(self) -> list[DoubleEntry]:
        """Admissions beyond a credential's allowed entries, oldest first."""
        rows = self._all(
            "SELECT credential_id, device, seq, at_ms, lane, entries, allowed FROM double_entries"
            " ORDER BY at_ms"
        )
        return [DoubleEntry(*r) for r in rows]

    def journal_count(self, device: str | None = None) -> int:
        """Journal rows held (of one device, or all)."""
        if device is None:
            return int(self._one("SELECT count(*) FROM journal")[0])
        return int(self._one("SELECT count(*) FROM journal WHERE device = ?", device)[0])

    def admitted_entries(self) -> dict[int, int]:
        """Admitted entries per credential, at every gate."""
        rows = self._all(
            "SELECT credential_id, count(*) FROM journal WHERE admitted = 1"
            " AND direction = 'entry' AND credential_id IS NOT NULL GROUP BY credential_id"
        )
        return {int(c): int(n) for c, n in rows}

    def journal_seqs(self, device: str) -> list[int]:
        """Sequence numbers held for a device (tests: exactly once, none missing)."""
        return [
            int(r[0])
            for r in self._all("SELECT seq FROM journal WHERE device = ? ORDER BY seq", device)
        ]

    # -- the annual-pass desk ----------------------------------------------------------------

    def add_voucher_product(self, name: str, pass_product: int) -> int:
        """A voucher product, redeemed at a pass desk for a pass of `pass_product`."""
        with self._tx() as conn:
            kind, *_ = self._product(conn, pass_product)
            if kind != int(Kind.PASS):
                raise CentralError(f"product {pass_product} is not a pass")
            cursor = conn.execute(
                "INSERT INTO products (name, kind, policy, uses, passback_minutes)"
                " VALUES (?, ?, ?, 1, 0)",
                (name, int(Kind.VOUCHER), int(PolicyKind.SINGLE)),
            )
            product = int(cursor.lastrowid or 0)
            conn.execute("INSERT INTO voucher_products VALUES (?, ?)", (product, pass_product))
        return product

    def sell_voucher(self, product_id: int, buyer: Person) -> Sold:
        """Sell one pass voucher to `buyer` (the till); returns the voucher and its code."""
        if self._one("SELECT 1 FROM voucher_products WHERE product_id = ?", product_id) is None:
            raise CentralError(f"product {product_id} is not a pass voucher")
        sale, (sold,) = self.sell(product_id, holder=buyer.name)
        with self._tx() as conn:
            customer = self._customer(conn, buyer)
            conn.execute("INSERT INTO sale_buyers VALUES (?, ?)", (sale, customer))
        return sold

    @staticmethod
    def _customer(conn: sqlite3.Connection, person: Person) -> int:
        row = conn.execute(
            "SELECT customer_id FROM customers WHERE surname = ? AND first_name = ?"
            " AND address = ?",
            (person.surname, person.first_name, person.address),
        ).fetchone()
        if row is not None:
            return int(row[0])
        cursor = conn.execute(
            "INSERT INTO customers (surname, first_name, address) VALUES (?, ?, ?)",
            (person.surname, person.first_name, person.address),
        )
        return int(cursor.lastrowid or 0)

    def _find(self, conn: sqlite3.Connection, code: str | None, number: int | None) -> int:
        """The credential a desk names by a scanned code or by a pass number."""
        if number is not None:
            if (
                conn.execute(
                    "SELECT 1 FROM credentials WHERE credential_id = ?", (number,)
                ).fetchone()
                is None
            ):
                raise CentralError(f"no pass or voucher number {number}")
            return number
        if not code:
            raise CentralError("give a code or a number")
        try:
            parse_code(code.encode("ascii", "replace"))
        except CodeError as err:
            raise CentralError(f"not a code: {err}") from err
        text = code.upper() if code.upper().startswith("EDGE:") else code
        row = conn.execute(
            "SELECT credential_id FROM credentials WHERE code = ?", (text,)
        ).fetchone()
        if row is None:
            old = conn.execute(
                "SELECT 1 FROM view_revoked_codes WHERE key = ?",
                (parse_code(code.encode("ascii", "replace")).hash,),
            ).fetchone()
            if old is not None:
                raise CentralError("this card was replaced or revoked; scan the current card")
            raise CentralError("not a code of this venue (no sale has it)")
        return int(row[0])

    def desk_lookup(self, code: str | None = None, number: int | None = None) -> dict[str, Any]:
        """What a desk shows for a scanned voucher or pass (or a pass number)."""
        with self._lock:
            conn = self._conn
            cid = self._find(conn, code, number)
            row = conn.execute(
                "SELECT c.sale_id, c.product_id, c.state, c.valid_from, c.valid_until, c.holder,"
                " p.kind, p.name, p.days FROM credentials c JOIN products p USING (product_id)"
                " WHERE c.credential_id = ?",
                (cid,),
            ).fetchone()
            sale, product, state, start, end, holder, kind, name, days = row
            answer: dict[str, Any] = {
                "credential": cid,
                "sale": sale,
                "kind": Kind(kind).name.lower(),
                "product": name,
                "state": state,
                "holder": holder,
                "valid_from": start,
                "valid_until": end,
            }
            buyer = conn.execute(
                "SELECT surname, first_name, address FROM sale_buyers JOIN customers"
                " USING (customer_id) WHERE sale_id = ?",
                (sale,),
            ).fetchone()
            answer["buyer"] = list(buyer) if buyer else None
            if kind == int(Kind.VOUCHER):
                target = conn.execute(
                    "SELECT v.pass_product, p.name, p.days FROM voucher_products v"
                    " JOIN products p ON p.product_id = v.pass_product WHERE v.product_id = ?",
                    (product,),
                ).fetchone()
                if target is None:
                    raise CentralError("this voucher is not for an annual pass")
                answer["pass_product"], answer["pass_name"], answer["days"] = target
                issued = conn.execute(
                    "SELECT credential_id FROM passes WHERE voucher_id = ?", (cid,)
                ).fetchone()
                answer["pass"] = None if issued is None else int(issued[0])
                if issued is not None:
                    answer["state"] = "redeemed"
            else:
                answer["days"] = days
                holder_row = conn.execute(
                    "SELECT surname, first_name, address, shipping FROM passes"
                    " JOIN customers USING (customer_id) WHERE credential_id = ?",
                    (cid,),
                ).fetchone()
                answer["holder_details"] = list(holder_row) if holder_row else None
        return answer

    @contextmanager
    def _desk(
        self, device: str, key: str, operation: str
    ) -> Iterator[tuple[sqlite3.Connection, dict[str, Any]]]:
        """One desk operation: done once per (device, key); a repeat gets the first answer."""
        if not 1 <= len(key) <= 100 or not key.isprintable():
            raise CentralError("key: 1..100 printable characters")
        with self._tx() as conn:
            row = conn.execute(
                "SELECT operation, answer FROM desk_operations WHERE device = ? AND key = ?",
                (device, key),
            ).fetchone()
            if row is not None:
                if row[0] != operation:
                    raise CentralError(f"key {key!r} was used for a {row[0]} already")
                answer = protocol.unpack(bytes(row[1]), "desk answer", 1 << 16)
                answer["duplicate"] = True
                yield conn, answer
                return
            answer = {}
            yield conn, answer
            answer["duplicate"] = False
            conn.execute(
                "INSERT INTO desk_operations VALUES (?, ?, ?, ?)",
                (device, key, operation, protocol.pack(answer)),
            )

    def desk_issue(self, device: str, key: str, request: IssueRequest) -> dict[str, Any]:
        """Personalise and issue the pass a voucher was sold for; its card shows `card_code`."""
        with self._desk(device, key, "issue") as (conn, answer):
            if "credential" in answer:
                return answer
            voucher = self._find(conn, request.voucher, None)
            row = conn.execute(
                "SELECT c.sale_id, c.state, c.event_id, v.pass_product, p.days"
                " FROM credentials c JOIN voucher_products v USING (product_id)"
                " JOIN products p ON p.product_id = v.pass_product WHERE c.credential_id = ?",
                (voucher,),
            ).fetchone()
            if row is None:
                raise CentralError("this code is not a pass voucher")
            sale, state, event, pass_product, days = row
            if conn.execute("SELECT 1 FROM passes WHERE voucher_id = ?", (voucher,)).fetchone():
                raise CentralError("this voucher was redeemed already")
            if state != "active":
                raise CentralError(f"this voucher is {state}")
            card = _card_code(request.card_code)
            customer = self._customer(conn, request.holder)
            duration = days * 86400
            cursor = conn.execute(
                "INSERT INTO credentials (product_id, event_id, sale_id, holder, paid,"
                " valid_from, valid_until, duration, code) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?)",
                (
                    pass_product,
                    event,
                    sale,
                    request.holder.name,
                    request.valid_from,
                    request.valid_from + duration - 1,
                    duration,
                    card,
                ),
            )
            cid = int(cursor.lastrowid or 0)
            conn.execute(
                "INSERT INTO passes VALUES (?, ?, ?, ?, ?, ?)",
                (cid, voucher, customer, request.shipping, device, now_ms()),
            )
            conn.execute(
                "UPDATE credentials SET state = 'revoked' WHERE credential_id = ?", (voucher,)
            )
            _, facts = self._code(conn, cid)
            self._emit(
                conn,
                [
                    facts,
                    PlainCodeChange(plain_hash(card), cid),
                    RevokeCredential(voucher, Revocation.REVOKED),
                ],
            )
            answer.update(
                credential=cid,
                sale=sale,
                valid_from=request.valid_from,
                valid_until=request.valid_from + duration - 1,
            )
        return answer

    def desk_extend(self, device: str, key: str, cid: int) -> dict[str, Any]:
        """Extend a pass by its original duration, once per key; the code stays."""
        with self._desk(device, key, "extend") as (conn, answer):
            if "valid_until" in answer:
                return answer
            state, _, _, end, duration, _ = self._credential(conn, cid)
            if state != "active" or duration is None:
                raise CentralError(f"pass {cid} is {state} or has no validity to extend")
            end += duration
            conn.execute(
                "UPDATE credentials SET valid_until = ? WHERE credential_id = ?", (end, cid)
            )
            _, facts = self._code(conn, cid)
            self._emit(conn, [facts])
            answer.update(credential=cid, valid_until=end)
        return answer

    def desk_replace(self, device: str, key: str, cid: int, card_code: str) -> dict[str, Any]:
        """A lost card: revoke the pass's current code, its new card shows `card_code`."""
        with self._desk(device, key, "replace") as (conn, answer):
            if "credential" in answer:
                return answer
            state, old, *_ = self._credential(conn, cid)
            if state != "active":
                raise CentralError(f"pass {cid} is {state}")
            card = _card_code(card_code)
            conn.execute("UPDATE credentials SET code = ? WHERE credential_id = ?", (card, cid))
            old_hash = parse_code(str(old).encode("ascii")).hash
            self._emit(
                conn,
                [RevokeCode(old_hash, Revocation.REPLACED), PlainCodeChange(plain_hash(card), cid)],
            )
            answer.update(credential=cid)
        return answer

    def desk_cancel(self, device: str, key: str, cid: int) -> dict[str, Any]:
        """Cancel the sale of a pass (or voucher): every code of it is revoked."""
        with self._desk(device, key, "cancel") as (conn, answer):
            if "cancelled" in answer:
                return answer
            row = conn.execute(
                "SELECT sale_id FROM credentials WHERE credential_id = ?", (cid,)
            ).fetchone()
            if row is None:
                raise CentralError(f"no pass or voucher number {cid}")
            rows = conn.execute(
                "SELECT credential_id FROM credentials WHERE sale_id = ? AND state = 'active'",
                (row[0],),
            ).fetchall()
            if not rows:
                raise CentralError(f"sale {row[0]} has nothing active to cancel")
            cids = [int(r[0]) for r in rows]
            conn.executemany(
                "UPDATE credentials SET state = 'cancelled' WHERE credential_id = ?",
                [(c,) for c in cids],
            )
            self._emit(conn, [RevokeCredential(c, Revocation.CANCELLED) for c in cids])
            answer.update(cancelled=cids)
        return answer


@dataclass(frozen=True, slots=True)
class Person:
    """A customer as a desk records them."""

    surname: str
    first_name: str
    address: str  # "n.a." where none is recorded

    def __post_init__(self) -> None:
        for field, value in (
            ("surname", self.surname),
            ("first_name", self.first_name),
            ("address", self.address),
        ):
            if not value.strip():
                raise CentralError(f'{field} is required (address: "n.a." if none)')
            if len(value) > MAX_PERSON_FIELD or not value.replace("\n", " ").isprintable():
                raise CentralError(f"{field}: at most {MAX_PERSON_FIELD} printable characters")

    @property
    def name(self) -> str:
        """First name and surname, as a card shows them."""
        return f"{self.first_name} {self.surname}"


@dataclass(frozen=True, slots=True)
class IssueRequest:
    """A desk's personalisation of the pass a voucher was sold for."""

    voucher: str  # the scanned voucher code
    holder: Person
    valid_from: int  # unix seconds
    shipping: str  # post or pickup
    card_code: str  # the plain code printed on the card

    def __post_init__(self) -> None:
        if self.shipping not in SHIPPING:
            raise CentralError(f"shipping must be one of {', '.join(SHIPPING)}")
        if not 0 < self.valid_from < 1 << 32:
            raise CentralError("valid_from must be unix seconds")


SHIPPING = ("post", "pickup")
MAX_PERSON_FIELD = 200
CARD_CODE_LENGTH = (12, 64)


def _card_code(text: str) -> str:
    """A desk-chosen card code: plain (never the signed prefix), URL-safe characters."""
    low, high = CARD_CODE_LENGTH
    if not low <= len(text) <= high or not text.isascii() or not text.isalnum():
        raise CentralError(f"card_code must be {low}..{high} ASCII letters and digits")
    return text
