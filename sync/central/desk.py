"""The central system's annual-pass desk (docs/protocol.md, "Counter operations").

The till sells vouchers; a desk looks them up, issues the pass a voucher was sold for, and
extends, replaces or cancels passes. Every desk operation but the lookup is done once per
(device, idempotency key): a repeat gets the first answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from edge.core.codes import Kind, PolicyKind, plain_hash
from edge.core.codes import parse as parse_code
from edge.core.errors import CodeError
from sync import protocol
from sync.central.catalogue import Catalogue, Sales, Sold
from sync.central.changelog import ChangeLog, now_ms
from sync.central.connection import SQL, Connection
from sync.central.errors import CentralError
from sync.central.workflows import Workflows
from sync.protocol import PlainCodeChange, Revocation, RevokeCode, RevokeCredential

SHIPPING = ("post", "pickup")
MAX_PERSON_FIELD = 200
CARD_CODE_LENGTH = (12, 64)
MAX_KEY_LENGTH = 100  # of a desk's idempotency key


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
    nfc_uid: str | None = None  # the UID of the card's chip, read at the desk

    def __post_init__(self) -> None:
        if self.shipping not in SHIPPING:
            raise CentralError(f"shipping must be one of {', '.join(SHIPPING)}")
        if not 0 < self.valid_from < 1 << 32:
            raise CentralError("valid_from must be unix seconds")


def nfc_uid(text: str | None) -> str | None:
    """A chip's UID as the desk sends it: upper-case hex of 4, 7 or 10 bytes (ISO 14443)."""
    if text is None:
        return None
    if len(text) not in (8, 14, 20) or not all(c in "0123456789ABCDEF" for c in text):
        raise CentralError("nfc_uid must be the upper-case hex of a 4, 7 or 10 byte UID")
    return text


def _bind_chip(conn: SQL, uid: str, cid: int) -> PlainCodeChange:
    """Bind a chip to a pass; a chip already on another pass's card is refused."""
    row = conn.execute(
        "SELECT credential_id, revoked FROM nfc_chips WHERE uid = ?", (uid,)
    ).fetchone()
    if row is not None:
        raise CentralError(
            f"this card's chip belongs to pass {row[0]}"
            + (" and was revoked with its card" if row[1] else "")
            + "; use a new card"
        )
    conn.execute("INSERT INTO nfc_chips VALUES (?, ?, 0)", (uid, cid))
    return PlainCodeChange(plain_hash(uid), cid)


def _card_code(text: str) -> str:
    """A desk-chosen card code: plain (never the signed prefix), URL-safe characters."""
    low, high = CARD_CODE_LENGTH
    if not low <= len(text) <= high or not text.isascii() or not text.isalnum():
        raise CentralError(f"card_code must be {low}..{high} ASCII letters and digits")
    return text


class PassDesk:
    """Pass vouchers sold at the till, and the desk operations on them and their passes."""

    def __init__(
        self,
        connection: Connection,
        log: ChangeLog,
        catalogue: Catalogue,
        sales: Sales,
        workflows: Workflows,
    ) -> None:
        self._connection = connection
        self._log = log
        self._catalogue = catalogue
        self._sales = sales
        self._workflows = workflows

    # -- the till ----------------------------------------------------------------------------

    def add_voucher_product(self, name: str, pass_product: int) -> int:
        """A voucher product, redeemed at a pass desk for a pass of `pass_product`."""
        with self._connection.transaction() as conn:
            kind, *_ = self._catalogue.product(conn, pass_product)
            if kind != int(Kind.PASS):
                raise CentralError(f"product {pass_product} is not a pass")
            cursor = conn.execute(
                "INSERT INTO products (name, kind, policy, uses, passback_minutes)"
                " VALUES (?, ?, ?, 1, 0) RETURNING product_id",
                (name, int(Kind.VOUCHER), int(PolicyKind.SINGLE)),
            )
            product = int(cursor.fetchone()[0])
            conn.execute("INSERT INTO voucher_products VALUES (?, ?)", (product, pass_product))
        return product

    def sell_voucher(self, product_id: int, buyer: Person) -> Sold:
        """Sell one pass voucher to `buyer` (the till); returns the voucher and its code."""
        if (
            self._connection.row("SELECT 1 FROM voucher_products WHERE product_id = ?", product_id)
            is None
        ):
            raise CentralError(f"product {product_id} is not a pass voucher")
        sale, (sold,) = self._sales.sell(product_id, holder=buyer.name)
        with self._connection.transaction() as conn:
            customer = _customer(conn, buyer)
            conn.execute("INSERT INTO sale_buyers VALUES (?, ?)", (sale, customer))
        return sold

    # -- the desk ----------------------------------------------------------------------------

    def lookup(self, code: str | None = None, number: int | None = None) -> dict[str, Any]:
        """What a desk shows for a scanned voucher or pass (or a pass number)."""
        with self._connection.reading() as conn:
            cid = _find(conn, code, number)
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
    def _operation(
        self, device: str, key: str, operation: str
    ) -> Iterator[tuple[SQL, dict[str, Any]]]:
        """One desk operation: done once per (device, key); a repeat gets the first answer."""
        if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable():
            raise CentralError(f"key: 1..{MAX_KEY_LENGTH} printable characters")
        with self._connection.transaction() as conn:
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

    def issue(self, device: str, key: str, request: IssueRequest) -> dict[str, Any]:
        """Personalise and issue the pass a voucher was sold for; its card shows `card_code`."""
        with self._operation(device, key, "issue") as (conn, answer):
            if "credential" in answer:
                return answer
            voucher = _find(conn, request.voucher, None)
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
            chip = nfc_uid(request.nfc_uid)
            customer = _customer(conn, request.holder)
            duration = days * 86400
            cursor = conn.execute(
                "INSERT INTO credentials (product_id, event_id, sale_id, holder, paid,"
                " valid_from, valid_until, duration, code) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?)"
                " RETURNING credential_id",
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
            cid = int(cursor.fetchone()[0])
            conn.execute(
                "INSERT INTO passes VALUES (?, ?, ?, ?, ?, ?)",
                (cid, voucher, customer, request.shipping, device, now_ms()),
            )
            conn.execute(
                "UPDATE credentials SET state = 'revoked' WHERE credential_id = ?", (voucher,)
            )
            _, facts = self._sales.mint(conn, cid)
            changes: list[Any] = [
                facts,
                PlainCodeChange(plain_hash(card), cid),
                RevokeCredential(voucher, Revocation.REVOKED),
            ]
            if chip is not None:
                changes.append(_bind_chip(conn, chip, cid))
            self._log.append(conn, changes)
            answer.update(
                credential=cid,
                sale=sale,
                valid_from=request.valid_from,
                valid_until=request.valid_from + duration - 1,
            )
        return answer

    def extend(self, device: str, key: str, cid: int) -> dict[str, Any]:
        """Extend a pass by its original duration, once per key; the code stays."""
        with self._operation(device, key, "extend") as (conn, answer):
            if "valid_until" in answer:
                return answer
            end = self._workflows.extend_validity(conn, cid, "pass")
            answer.update(credential=cid, valid_until=end)
        return answer

    def replace(
        self, device: str, key: str, cid: int, card_code: str, chip: str | None = None
    ) -> dict[str, Any]:
        """A lost card: revoke the pass's current code and its card's chip; the new card shows
        `card_code` and carries the chip `chip` (if the desk read one)."""
        with self._operation(device, key, "replace") as (conn, answer):
            if "credential" in answer:
                return answer
            state, old, *_ = self._sales.credential(conn, cid)
            if state != "active":
                raise CentralError(f"pass {cid} is {state}")
            card = _card_code(card_code)
            chip = nfc_uid(chip)
            conn.execute("UPDATE credentials SET code = ? WHERE credential_id = ?", (card, cid))
            old_hash = parse_code(str(old).encode("ascii")).hash
            changes: list[Any] = [RevokeCode(old_hash, Revocation.REPLACED)]
            old_chips = conn.execute(
                "SELECT uid FROM nfc_chips WHERE credential_id = ? AND revoked = 0", (cid,)
            ).fetchall()
            conn.execute("UPDATE nfc_chips SET revoked = 1 WHERE credential_id = ?", (cid,))
            changes += [RevokeCode(plain_hash(uid), Revocation.REPLACED) for (uid,) in old_chips]
            changes.append(PlainCodeChange(plain_hash(card), cid))
            if chip is not None:
                changes.append(_bind_chip(conn, chip, cid))
            codes = {c.code_hash: cid for c in changes if isinstance(c, RevokeCode)}
            self._log.append(conn, changes, codes)
            answer.update(credential=cid)
        return answer

    def cancel(self, device: str, key: str, cid: int) -> dict[str, Any]:
        """Cancel the sale of a pass (or voucher): every code of it is revoked."""
        with self._operation(device, key, "cancel") as (conn, answer):
            if "cancelled" in answer:
                return answer
            row = conn.execute(
                "SELECT sale_id FROM credentials WHERE credential_id = ?", (cid,)
            ).fetchone()
            if row is None:
                raise CentralError(f"no pass or voucher number {cid}")
            cids = self._workflows.cancel_active(conn, row[0])
            if not cids:
                raise CentralError(f"sale {row[0]} has nothing active to cancel")
            answer.update(cancelled=cids)
        return answer

    # -- reports -----------------------------------------------------------------------------

    def operation_count(self) -> int:
        """Desk operations done (each once, however often a desk sent it)."""
        return int(self._connection.row("SELECT count(*) FROM desk_operations")[0])

    def pass_count(self) -> int:
        """Passes issued at desks."""
        return int(self._connection.row("SELECT count(*) FROM passes")[0])


def _customer(conn: SQL, person: Person) -> int:
    """The customer id of a person, recorded now if they are new."""
    row = conn.execute(
        "SELECT customer_id FROM customers WHERE surname = ? AND first_name = ? AND address = ?",
        (person.surname, person.first_name, person.address),
    ).fetchone()
    if row is not None:
        return int(row[0])
    cursor = conn.execute(
        "INSERT INTO customers (surname, first_name, address) VALUES (?, ?, ?)"
        " RETURNING customer_id",
        (person.surname, person.first_name, person.address),
    )
    return int(cursor.fetchone()[0])


def _find(conn: SQL, code: str | None, number: int | None) -> int:
    """The credential a desk names by a scanned code or by a pass number."""
    if number is not None:
        if conn.execute("SELECT 1 FROM credentials WHERE credential_id = ?", (number,)).fetchone():
            return number
        raise CentralError(f"no pass or voucher number {number}")
    if not code:
        raise CentralError("give a code or a number")
    try:
        parsed = parse_code(code.encode("ascii", "replace"))
    except CodeError as err:
        raise CentralError(f"not a code: {err}") from err
    text = code.upper() if code.upper().startswith("EDGE:") else code
    row = conn.execute("SELECT credential_id FROM credentials WHERE code = ?", (text,)).fetchone()
    if row is None:
        old = conn.execute(
            "SELECT 1 FROM view_revoked_codes WHERE key = ?", (parsed.hash,)
        ).fetchone()
        if old is not None:
            raise CentralError("this card was replaced or revoked; scan the current card")
        raise CentralError("not a code of this venue (no sale has it)")
    return int(row[0])
