"""The central system's workflows on sold credentials: revoke, cancel, extend, replace, pay,
renew a season. Each writes its rows and appends its changes in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from edge.core.codes import parse as parse_code
from edge.core.errors import CodeError
from sync.central.catalogue import Catalogue, Sales, epoch
from sync.central.changelog import ChangeLog
from sync.central.connection import SQL, Connection
from sync.central.errors import CentralError
from sync.protocol import CancelEvent, Revocation, RevokeCode, RevokeCredential


@dataclass(frozen=True, slots=True)
class Renewal:
    """What a season renewal did, or would do in a dry run."""

    renewed: list[tuple[int, int]]  # (old credential, new credential; 0 in a dry run)
    skipped: list[tuple[int, str]]  # (credential, why)
    batches: int
    dry_run: bool


class Workflows:
    """Changes to credentials after their sale, and to events."""

    def __init__(
        self, connection: Connection, log: ChangeLog, catalogue: Catalogue, sales: Sales
    ) -> None:
        self._connection = connection
        self._log = log
        self._catalogue = catalogue
        self._sales = sales

    def revoke_code(self, code: str) -> int:
        """Revoke one code (by its text); returns the credential it belonged to, 0 if unknown."""
        try:
            parsed = parse_code(code.encode("ascii", "replace"))
        except CodeError as err:
            raise CentralError(f"not a code: {err}") from err
        with self._connection.transaction() as conn:
            row = conn.execute(
                "SELECT credential_id FROM credentials WHERE code = ?", (code.upper(),)
            ).fetchone()
            codes = {parsed.hash: int(row[0])} if row else {}
            self._log.append(conn, [RevokeCode(parsed.hash, Revocation.REVOKED)], codes)
        return int(row[0]) if row else 0

    def cancel_active(self, conn: SQL, sale_id: int) -> list[int]:
        """Cancel the active credentials of a sale in the caller's transaction; their ids
        (none: nothing was changed)."""
        rows = conn.execute(
            "SELECT credential_id FROM credentials WHERE sale_id = ? AND state = 'active'",
            (sale_id,),
        ).fetchall()
        cids = [int(r[0]) for r in rows]
        if cids:
            conn.executemany(
                "UPDATE credentials SET state = 'cancelled' WHERE credential_id = ?",
                [(c,) for c in cids],
            )
            self._log.append(conn, [RevokeCredential(c, Revocation.CANCELLED) for c in cids])
        return cids

    def cancel_sale(self, sale_id: int) -> list[int]:
        """Cancel a sale: every credential of it is rejected as cancelled."""
        with self._connection.transaction() as conn:
            cids = self.cancel_active(conn, sale_id)
            if not cids:
                raise CentralError(f"no active credentials in sale {sale_id}")
        return cids

    def cancel_event(self, event_id: int) -> None:
        """Cancel an event: every ticket for it is rejected at every gate."""
        with self._connection.transaction() as conn:
            row = conn.execute("SELECT cancelled FROM events WHERE event_id = ?", (event_id,))
            found = row.fetchone()
            if found is None:
                raise CentralError(f"no event {event_id}")
            if found[0]:
                raise CentralError(f"event {event_id} is cancelled already")
            conn.execute("UPDATE events SET cancelled = 1 WHERE event_id = ?", (event_id,))
            self._log.append(conn, [CancelEvent(event_id)])

    def extend_validity(self, conn: SQL, cid: int, noun: str) -> int:
        """Extend a credential by its original duration in the caller's transaction; its new
        end in unix seconds. `noun` names it in the error (credential, pass)."""
        state, _, _, end, duration, _ = self._sales.credential(conn, cid)
        if state != "active" or duration is None:
            raise CentralError(f"{noun} {cid} is {state} or has no validity to extend")
        end += duration
        conn.execute("UPDATE credentials SET valid_until = ? WHERE credential_id = ?", (end, cid))
        _, facts = self._sales.mint(conn, cid)
        self._log.append(conn, [facts])
        return int(end)

    def extend(self, cid: int) -> datetime:
        """Extend a pass by its original duration; the code stays. Returns the new end."""
        with self._connection.transaction() as conn:
            end = self.extend_validity(conn, cid, "credential")
        return datetime.fromtimestamp(end, UTC)

    def replace(self, cid: int) -> str:
        """Invalidate and replace a lost card: a new code, the old one rejected as replaced."""
        with self._connection.transaction() as conn:
            state, old, *_ = self._sales.credential(conn, cid)
            if state != "active":
                raise CentralError(f"credential {cid} is {state}")
            conn.execute(
                "UPDATE credentials SET reissue = reissue + 1 WHERE credential_id = ?", (cid,)
            )
            code, facts = self._sales.mint(conn, cid)
            conn.execute("UPDATE credentials SET code = ? WHERE credential_id = ?", (code, cid))
            old_hash = parse_code(str(old).encode("ascii")).hash
            self._log.append(
                conn, [RevokeCode(old_hash, Revocation.REPLACED), facts], {old_hash: cid}
            )
        return code

    def mark_paid(self, cid: int) -> None:
        """Record the payment of a credential: it opens gates from now on."""
        with self._connection.transaction() as conn:
            *_, paid = self._sales.credential(conn, cid)
            if paid:
                raise CentralError(f"credential {cid} is paid already")
            conn.execute("UPDATE credentials SET paid = 1 WHERE credential_id = ?", (cid,))
            _, facts = self._sales.mint(conn, cid)
            self._log.append(conn, [facts])

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
        rows = self._connection.rows(
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
            with self._connection.transaction() as conn:
                for cid, product, _ in batch:
                    _, _, _, _, days, _ = self._catalogue.product(conn, product)
                    start = epoch(valid_from)
                    duration = days * 86400 if days else None
                    end = start + duration - 1 if duration else None
                    cursor = conn.execute(
                        "INSERT INTO credentials (product_id, event_id, sale_id, holder, season,"
                        " paid, valid_from, valid_until, duration, code)"
                        " SELECT product_id, event_id, sale_id, holder, ?, 0, ?, ?, ?, ''"
                        " FROM credentials WHERE credential_id = ? RETURNING credential_id",
                        (new_season, start, end, duration, cid),
                    )
                    new = int(cursor.fetchone()[0])
                    code, facts = self._sales.mint(conn, new)
                    conn.execute(
                        "UPDATE credentials SET code = ? WHERE credential_id = ?", (code, new)
                    )
                    conn.execute(
                        "UPDATE credentials SET renewed_to = ? WHERE credential_id = ?", (new, cid)
                    )
                    self._log.append(conn, [facts])
                    renewed.append((cid, new))
        return Renewal(renewed, skipped, len(batches), dry_run=False)
