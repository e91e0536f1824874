"""The central system's catalogue and sales: events, products, and the credentials sold.

Codes are minted with `edge.core.codes` (the code format is public API, docs/codes.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edge.core.codes import Claims, EntryPolicy, Kind, PolicyKind, Validity, mint, plain_hash
from sync.central.changelog import ChangeLog
from sync.central.connection import SQL, Connection
from sync.central.devices import venue_name
from sync.central.errors import CentralError
from sync.central.keys import SigningKeys
from sync.protocol import Change, CredentialChange, PlainCodeChange

PROGRESS_STEP = 1000  # a large sale reports progress this often (about every 0.2 s)


@dataclass(frozen=True, slots=True)
class Sold:
    """A credential and its code."""

    credential_id: int
    code: str


def epoch(moment: datetime) -> int:
    """Unix seconds of a moment."""
    return int(moment.timestamp())


class Catalogue:
    """Events and the products sold for them."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add_event(self, name: str, event_id: int | None = None, venue: str | None = None) -> int:
        """A new event (of one venue, or of none: its tickets open every venue's gates);
        returns its id."""
        if venue is not None:
            venue_name(venue)
        with self._connection.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO events (event_id, name, venue) VALUES (?, ?, ?) RETURNING event_id",
                (event_id, name, venue),
            )
            return int(cursor.fetchone()[0])

    def events(self, venue: str | None = None) -> list[tuple[int, str, str | None, bool]]:
        """(id, name, venue, cancelled) of every event, or of one venue's."""
        sql = "SELECT event_id, name, venue, cancelled FROM events"
        rows = (
            self._connection.rows(sql + " ORDER BY event_id")
            if venue is None
            else self._connection.rows(sql + " WHERE venue = ? ORDER BY event_id", venue)
        )
        return [(int(i), str(n), v, bool(c)) for i, n, v, c in rows]

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
        with self._connection.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO products VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING product_id",
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
            return int(cursor.fetchone()[0])

    @staticmethod
    def product(conn: SQL, product_id: int) -> tuple[Any, ...]:
        """(kind, policy, uses, passback minutes, days, zones) of a product; CentralError if
        there is no such product."""
        row = conn.execute(
            "SELECT kind, policy, uses, passback_minutes, days, zones FROM products"
            " WHERE product_id = ?",
            (product_id,),
        ).fetchone()
        if row is None:
            raise CentralError(f"no product {product_id}")
        return tuple(row)


class Sales:
    """Credentials: sold in sales, each with the code minted for it as it stands."""

    def __init__(
        self, connection: Connection, log: ChangeLog, keys: SigningKeys, catalogue: Catalogue
    ) -> None:
        self._connection = connection
        self._log = log
        self._keys = keys
        self._catalogue = catalogue

    def mint(self, conn: SQL, cid: int) -> tuple[str, CredentialChange]:
        """Mint the code of a credential as it stands, and its facts for the edges."""
        row = conn.execute(
            "SELECT c.product_id, c.event_id, c.paid, c.valid_from, c.valid_until, c.reissue,"
            " p.kind, p.policy, p.uses, p.passback_minutes, p.zones"
            " FROM credentials c JOIN products p USING (product_id) WHERE credential_id = ?",
            (cid,),
        ).fetchone()
        product, event, paid, start, end, reissue, kind, policy, uses, passback, zones = row
        key_id, key = self._keys.current(conn)
        validity = None
        if start is not None:
            validity = Validity(
                datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)
            )
        claims = Claims(
            key_id=key_id,
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
        return mint(claims, key), facts

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
        progress: Callable[[int], None] | None = None,
    ) -> tuple[int, list[Sold]]:
        """Sell `count` credentials in one sale; returns the sale id and the codes.
        `progress` hears how many are minted, every PROGRESS_STEP credentials."""
        if count < 1:
            raise CentralError("count must be at least 1")
        if plain_codes and len(plain_codes) != count:
            raise CentralError("give one plain code per credential, or none")
        with self._connection.transaction() as conn:
            _, _, _, _, days, _ = self._catalogue.product(conn, product_id)
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
                start = epoch(valid_from or datetime.now(UTC).replace(microsecond=0))
                duration = days * 86400
                end = start + duration - 1
            sold: list[Sold] = []
            changes: list[Change] = []
            for i in range(count):
                cursor = conn.execute(
                    "INSERT INTO credentials (product_id, event_id, sale_id, holder, season,"
                    " paid, valid_from, valid_until, duration, code)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '') RETURNING credential_id",
                    (product_id, event_id, sale, holder, season, int(paid), start, end, duration),
                )
                cid = int(cursor.fetchone()[0])
                code, facts = self.mint(conn, cid)
                conn.execute("UPDATE credentials SET code = ? WHERE credential_id = ?", (code, cid))
                sold.append(Sold(cid, code))
                changes.append(facts)
                if plain_codes:
                    changes.append(PlainCodeChange(plain_hash(plain_codes[i]), cid))
                if progress is not None and (i + 1) % PROGRESS_STEP == 0:
                    progress(i + 1)
            self._log.append(conn, changes)
            if progress is not None:
                progress(count)
        return int(sale), sold

    @staticmethod
    def credential(conn: SQL, cid: int) -> tuple[Any, ...]:
        """(state, code, valid from, valid until, duration, paid) of a credential; CentralError
        if there is no such credential."""
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
        with self._connection.reading() as conn:
            return str(self.credential(conn, cid)[1])
