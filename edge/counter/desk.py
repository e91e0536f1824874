"""The annual-pass desk: look up a voucher or pass, issue, extend, replace, cancel.

A lookup asks the central system and falls back to the synced copy when it cannot be reached.
Every change is an operation with an idempotency key, stored in the `desk_operations` table
before it is sent, and sent in order by `run` until the central system answered it: an
offline issue reaches the central system later, exactly once (docs/protocol.md, "Counter
operations"). A card is printed before its issue or replacement is stored, so a printer that
fails leaves nothing half issued; the card's code is a plain code the desk chooses, which the
central system publishes to every gate when the operation arrives.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import aiohttp

from edge.core.codes import Kind, PlainCode, SignedCode, mask, parse
from edge.core.errors import CodeError, EdgeError, PrinterError, SyncError
from edge.counter.printqueue import PrintJob, PrintQueue
from edge.counter.templates import Template
from edge.store.desk import DeskStore, OpState
from edge.store.printjobs import JobState
from sync import protocol

_LOGGER = logging.getLogger(__name__)

CENTRAL_TIMEOUT = 5.0  # seconds a desk waits for the central system before going offline
PRINT_TIMEOUT = 60.0  # seconds a desk waits for its card
RETRY_INTERVAL = 5.0  # seconds between attempts to send queued operations
MAX_TEXT = 200  # characters of a name or address
SHIPPING = ("post", "pickup")
NO_ADDRESS = "n.a."  # what the desk records where a holder has no address
CARD_CODE_PREFIX = "AP"
CARD_CODE_BYTES = 10  # random bytes in a card code: 16 base32 characters

Central = Callable[[str, bytes], Awaitable[bytes]]


class DeskError(EdgeError, ValueError):
    """A desk request cannot be done as asked; `field` names the form field at fault."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Holder:
    """Who a pass is for; the address is NO_ADDRESS where none is recorded."""

    surname: str
    first_name: str
    address: str

    @classmethod
    def parse(cls, form: Mapping[str, Any]) -> Holder:
        """A holder from form fields, or DeskError naming the first missing or bad one."""
        values = []
        for name, label in (
            ("surname", "Surname"),
            ("first_name", "First name"),
            ("address", 'Address (or "n.a.")'),
        ):
            value = form.get(name)
            if not isinstance(value, str) or not value.strip():
                raise DeskError(f"{label} is required", field=name)
            value = value.strip()
            if len(value) > MAX_TEXT or not value.replace("\n", " ").isprintable():
                raise DeskError(f"{label}: at most {MAX_TEXT} printable characters", field=name)
            values.append(value)
        return cls(*values)

    @property
    def name(self) -> str:
        """As the card shows it."""
        return f"{self.first_name} {self.surname}"


@dataclass(frozen=True, slots=True)
class IssueForm:
    """What the desk form sends to issue a voucher's pass."""

    voucher: str
    holder: Holder
    valid_from: date
    shipping: str

    @classmethod
    def parse(cls, form: Mapping[str, Any]) -> IssueForm:
        """The form checked field by field; DeskError names the first bad field."""
        voucher = form.get("voucher")
        if not isinstance(voucher, str) or not voucher.strip():
            raise DeskError("Scan a voucher first", field="voucher")
        holder = Holder.parse(form)
        raw = form.get("valid_from")
        try:
            valid_from = date.fromisoformat(raw) if isinstance(raw, str) else None
        except ValueError:
            valid_from = None
        if valid_from is None:
            raise DeskError("Validity start is required (YYYY-MM-DD)", field="valid_from")
        shipping = form.get("shipping")
        if shipping not in SHIPPING:
            raise DeskError("Shipping: choose post or pickup", field="shipping")
        return cls(voucher.strip(), holder, valid_from, str(shipping))


def _card_code() -> str:
    """A fresh plain card code: AP and 16 base32 characters (QR alphanumeric mode)."""
    return CARD_CODE_PREFIX + base64.b32encode(secrets.token_bytes(CARD_CODE_BYTES)).decode()


def _day(seconds: int | None) -> str:
    return "" if seconds is None else datetime.fromtimestamp(seconds, UTC).date().isoformat()


class Desk:
    """The pass desk of one counter: its card template, print queue and operation queue."""

    def __init__(
        self,
        store: DeskStore,
        queue: PrintQueue,
        *,
        card_template: Template | None,
        ticket_template: Template | None = None,
        central: Central | None,
        offline_pass_days: int = 365,
        clock: Callable[[], float] = time.time,
        print_timeout: float = PRINT_TIMEOUT,
    ) -> None:
        self._store = store
        self._queue = queue
        self._card = card_template
        self._ticket = ticket_template
        self._central = central
        self._offline_days = offline_pass_days
        self._clock = clock
        self._print_timeout = print_timeout
        self._wake = asyncio.Event()
        self._send_lock = asyncio.Lock()

    # -- reading -----------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Operations per state (queued ones wait for the central system)."""
        found = self._store.desk_counts()
        return {state.value: found.get(state, 0) for state in OpState}

    def operations(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest operations, newest first (the status page)."""
        return [
            {
                "seq": op.seq,
                "operation": op.operation,
                "state": op.state.value,
                "detail": op.detail,
                "created_ms": op.created_ms,
            }
            for op in self._store.desk_operations(limit)
        ]

    async def _ask(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The central system's answer; None when it cannot be reached; DeskError if it refuses."""
        if self._central is None:
            return None
        try:
            async with asyncio.timeout(CENTRAL_TIMEOUT):
                data = await self._central(path, protocol.pack(body))
        except protocol.RemoteError as err:
            if 400 <= err.status < 500 and err.code == protocol.ErrorCode.BAD_REQUEST.value:
                raise DeskError(err.message) from err
            _LOGGER.warning("desk: %s refused (%s); using the synced copy", path, err)
            return None
        except (SyncError, aiohttp.ClientError, TimeoutError, OSError) as err:
            _LOGGER.info("desk: central system unreachable (%s); using the synced copy", err)
            return None
        answer = protocol.unpack(data, "desk answer", 1 << 16)
        if not isinstance(answer, dict):
            raise DeskError("the central system answered something that is not a map")
        return answer

    async def lookup(self, code: str | None = None, number: int | None = None) -> dict[str, Any]:
        """A voucher or pass as the central system (or, offline, the synced copy) knows it."""
        if code is not None:
            code = code.strip()
            if not code:
                raise DeskError("Scan a code or type a pass number", field="code")
            self._parse(code)  # malformed input never leaves the device
        elif number is None:
            raise DeskError("Scan a code or type a pass number", field="code")
        request: dict[str, Any] = {"code": code} if code is not None else {"number": number}
        answer = await self._ask("/v1/desk/lookup", request)
        if answer is not None:
            answer["source"] = "central"
            if answer.get("kind") == "voucher" and self._issued_here(code):
                answer["state"] = "redeemed"
            return answer
        if code is None:
            return self._offline_number(int(number or 0))
        return self._offline(code)

    def _offline_number(self, number: int) -> dict[str, Any]:
        """A pass by its number from the synced copy (a lost card has nothing to scan)."""
        synced = self._store.synced_pass(number)
        if synced is None:
            raise DeskError(
                f"Pass number {number} is not in this counter's copy and the central system "
                "cannot be reached",
                field="number",
            )
        return {
            "source": "synced copy",
            "credential": number,
            "kind": synced.kind.name.lower(),
            "state": "revoked" if synced.revoked else "active",
            "valid_from": synced.valid_from,
            "valid_until": synced.valid_until,
            "days": self._offline_days,
            "pass": None,
            "buyer": None,
        }

    @staticmethod
    def _parse(code: str) -> SignedCode | PlainCode:
        try:
            return parse(code.encode("utf-8", "replace"))
        except CodeError as err:
            raise DeskError(f"Not a code: {err}", field="code") from err

    def _issued_here(self, code: str | None) -> bool:
        if code is None:
            return False
        parsed = self._parse(code)
        return self._store.voucher_issued(parsed.hash)

    def _offline(self, code: str) -> dict[str, Any]:
        parsed = self._parse(code)
        facts = self._store.facts(parsed)
        if isinstance(parsed, SignedCode):
            key = facts.key
            if key is None or not key.verify(parsed.signed, parsed.signature):
                raise DeskError(
                    "Not a code of this venue (its issuer is unknown here)", field="code"
                )
            kind = parsed.claims.kind
            cid = parsed.claims.credential_id
        elif facts.credential is None:
            raise DeskError("Unknown code: no sale of this venue has it", field="code")
        else:
            kind, cid = facts.credential.kind, facts.credential.credential_id
        credential = facts.credential
        validity = credential.validity if credential is not None else None
        state = "active"
        if facts.code_revoked is not None:
            state = facts.code_revoked.value
        elif facts.credential_revoked is not None:
            state = facts.credential_revoked.value
        if kind is Kind.VOUCHER and (state == "revoked" or self._issued_here(code)):
            state = "redeemed"
        return {
            "source": "synced copy",
            "credential": cid,
            "kind": kind.name.lower(),
            "state": state,
            "valid_from": int(validity.start.timestamp()) if validity else None,
            "valid_until": int(validity.end.timestamp()) if validity else None,
            "days": self._offline_days,
            "pass": None,
            "buyer": None,
        }

    # -- changing ----------------------------------------------------------------------------

    async def issue(self, form: IssueForm) -> dict[str, Any]:
        """Print the voucher's pass card, then queue (and try to send) its issue."""
        sale = await self.lookup(form.voucher)
        if sale["kind"] != "voucher":
            raise DeskError(f"This code is a {sale['kind']}, not a pass voucher", field="voucher")
        if sale["state"] != "active":
            raise DeskError(f"This voucher is {sale['state']} already", field="voucher")
        start = datetime(*form.valid_from.timetuple()[:3], tzinfo=UTC)
        days = int(sale.get("days") or self._offline_days)
        valid_from = int(start.timestamp())
        valid_until = valid_from + days * 86400 - 1
        card = _card_code()
        key = uuid.uuid4().hex
        await self._print_card(
            key,
            {
                "holder": form.holder.name,
                "surname": form.holder.surname,
                "first_name": form.holder.first_name,
                "number": card,
                "valid_from": _day(valid_from),
                "valid_until": _day(valid_until),
                "code": card,
            },
        )
        body = {
            "key": key,
            "voucher": form.voucher,
            "surname": form.holder.surname,
            "first_name": form.holder.first_name,
            "address": form.holder.address,
            "valid_from": valid_from,
            "shipping": form.shipping,
            "card_code": card,
        }
        voucher_hash = self._parse(form.voucher).hash
        state = await self._record(key, "issue", body, voucher_hash)
        _LOGGER.info("desk: pass card %s printed, issue %s", mask(card), state.value)
        return {
            "key": key,
            "state": state.value,
            "card": card,
            "holder": form.holder.name,
            "valid_from": _day(valid_from),
            "valid_until": _day(valid_until),
        }

    async def extend(self, credential: int, code: str | None) -> dict[str, Any]:
        """Extend a pass by its original duration; reprint its card only if it shows validity."""
        sale = await self.lookup(code, None if code else credential)
        if sale["kind"] != "pass" or sale["credential"] != credential:
            raise DeskError("Scan the pass card to extend", field="code")
        if sale["state"] != "active" or sale.get("valid_until") is None:
            raise DeskError(f"This pass is {sale['state']}; it cannot be extended")
        key = uuid.uuid4().hex
        state = await self._record(key, "extend", {"key": key, "credential": credential}, None)
        detail = self._detail(key)
        until = detail.get("valid_until") if detail else None
        if until is None:  # offline: the pass's duration as this desk knows it
            until = int(sale["valid_until"]) + int(sale.get("days") or self._offline_days) * 86400
        result: dict[str, Any] = {
            "key": key,
            "state": state.value,
            "valid_until": _day(int(until)),
            "reprinted": False,
        }
        if self._card is None or "valid_until" not in self._card.fields:
            return result  # the card does not show validity: gates take it from synced data
        if code is None:
            result["note"] = "The card shows its validity: scan it to reprint"
            return result
        await self._print_card(
            f"{key}-reprint",
            {
                "holder": sale.get("holder") or "",
                "number": code,
                "valid_from": _day(sale.get("valid_from")),
                "valid_until": _day(int(until)),
                "code": code,
            },
        )
        result["reprinted"] = True
        return result

    async def replace(self, credential: int) -> dict[str, Any]:
        """A lost card: print a card with a new code, then queue the replacement."""
        sale = await self.lookup(None, credential)
        if sale["kind"] != "pass" or sale["state"] != "active":
            raise DeskError(f"Pass {credential} is {sale['state']}; it cannot be replaced")
        card = _card_code()
        key = uuid.uuid4().hex
        await self._print_card(
            key,
            {
                "holder": sale.get("holder") or "",
                "number": card,
                "valid_from": _day(sale.get("valid_from")),
                "valid_until": _day(sale.get("valid_until")),
                "code": card,
            },
        )
        body = {"key": key, "credential": credential, "card_code": card}
        state = await self._record(key, "replace", body, None)
        return {"key": key, "state": state.value, "card": card}

    async def cancel(self, credential: int) -> dict[str, Any]:
        """Cancel the sale of a pass or voucher: the central system revokes its codes."""
        if credential < 1:
            raise DeskError("Give the pass number", field="credential")
        key = uuid.uuid4().hex
        state = await self._record(key, "cancel", {"key": key, "credential": credential}, None)
        return {"key": key, "state": state.value}

    async def print_ticket(self, code: str) -> dict[str, Any]:
        """Print a BOCA ticket for a voucher or day ticket that is still valid."""
        if self._ticket is None:
            raise DeskError("No ticket template is configured ([counter] ticket_template)")
        sale = await self.lookup(code)
        if sale["kind"] not in ("voucher", "ticket"):
            raise DeskError(
                f"This code is a {sale['kind']}; tickets are for vouchers and day tickets"
            )
        if sale["state"] != "active":
            raise DeskError(f"This {sale['kind']} is {sale['state']}; no ticket printed")
        values = {
            "code": code.strip(),
            "product": str(sale.get("product") or sale["kind"]),
            "event": str(sale.get("product") or sale["kind"]),
            "holder": str(sale.get("holder") or ""),
            "number": str(sale["credential"]),
            "date": _day(sale.get("valid_from")) or datetime.now(UTC).date().isoformat(),
            "price": "",
        }
        missing = [f for f in self._ticket.fields if f not in values]
        if missing:
            raise DeskError(f"The ticket template needs field {missing[0]!r}, which the desk lacks")
        job_id = f"desk-ticket-{uuid.uuid4().hex}"
        fields = {name: values[name] for name in self._ticket.fields}
        try:
            record = await self._queue.submit(PrintJob(job_id, self._ticket.name, fields))
        except PrinterError as err:
            raise DeskError(f"The ticket cannot be printed: {err}") from err
        return {"job_id": record.job_id, "printer": record.printer, "state": record.state.value}

    async def _print_card(self, key: str, values: Mapping[str, str]) -> None:
        """Print one card and wait for it; DeskError (nothing half done) if it fails."""
        if self._card is None:
            raise DeskError("No card template is configured ([counter] card_template)")
        missing = [f for f in self._card.fields if f not in values]
        if missing:
            raise DeskError(f"The card template needs field {missing[0]!r}, which the desk lacks")
        fields = {name: values[name] for name in self._card.fields}
        job_id = f"desk-{key}"
        try:
            await self._queue.submit(PrintJob(job_id, self._card.name, fields))
        except PrinterError as err:
            raise DeskError(f"The card cannot be printed: {err}") from err
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._print_timeout
        while True:
            # Until the deadline a queued card can still be abandoned; past it, a card being
            # printed is waited for until the printer ends it (or a failed send requeues it).
            try:
                async with asyncio.timeout_at(deadline if loop.time() < deadline else None):
                    record = await self._queue.wait(job_id)
            except TimeoutError:
                record = self._queue.job(job_id)
            if record is not None and record.state is JobState.DONE:
                return
            if record is None or record.state is JobState.FAILED:
                why = record.error if record is not None else "the job vanished"
                raise DeskError(f"The card printer failed: {why}. The pass was not issued.")
            why = record.error or f"no card after {self._print_timeout:.0f} s"
            if await self._queue.abandon(job_id, f"the desk gave up: {why}"):
                raise DeskError(f"The card printer failed: {why}. The pass was not issued.")

    async def _record(
        self, key: str, operation: str, body: dict[str, Any], voucher_hash: bytes | None
    ) -> OpState:
        """Store an operation, then try to send the queue at once; its state after that."""
        await self._store.add_desk_operation(
            key, operation, protocol.pack(body), voucher_hash, int(self._clock() * 1000)
        )
        await self.send_queued()
        self._wake.set()
        stored = self._store.desk_operation(key)
        if stored is None:  # committed just above
            raise DeskError(f"The operation {key} vanished after it was stored")
        if stored.state is OpState.REJECTED:
            raise DeskError(f"The central system refused it: {stored.detail}")
        return stored.state

    def _detail(self, key: str) -> dict[str, Any] | None:
        stored = self._store.desk_operation(key)
        if stored is None or stored.state is not OpState.SENT or stored.detail is None:
            return None
        value = json.loads(stored.detail)
        return value if isinstance(value, dict) else None

    # -- sending -----------------------------------------------------------------------------

    async def send_queued(self) -> int:
        """Send queued operations in order until one cannot be sent; how many were answered."""
        if self._central is None:
            return 0
        answered = 0
        async with self._send_lock:
            for queued in self._store.queued_desk_operations():
                seq, operation = queued.seq, queued.operation
                try:
                    async with asyncio.timeout(CENTRAL_TIMEOUT):
                        data = await self._central(f"/v1/desk/{operation}", queued.body)
                    state, detail = (
                        OpState.SENT,
                        json.dumps(protocol.unpack(data, "desk answer", 1 << 16)),
                    )
                except protocol.RemoteError as err:
                    if err.code != protocol.ErrorCode.BAD_REQUEST.value:
                        return answered  # not this operation's fault: try later
                    state, detail = OpState.REJECTED, err.message
                except (SyncError, aiohttp.ClientError, TimeoutError, OSError):
                    return answered
                await self._store.answer_desk_operation(
                    seq, state, detail, int(self._clock() * 1000)
                )
                answered += 1
                log = _LOGGER.info if state is OpState.SENT else _LOGGER.warning
                log("desk: %s %d %s: %s", operation, seq, state.value, detail[:200])
        return answered

    async def run(self) -> None:
        """Send queued operations whenever one is added, and every RETRY_INTERVAL."""
        while True:
            await self.send_queued()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), RETRY_INTERVAL)
