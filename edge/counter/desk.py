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
import string
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from datetime import time as dt_time
from typing import Any

import aiohttp

from edge.core.codes import Kind, PlainCode, SignedCode, mask, parse
from edge.core.errors import CodeError, EdgeError, PrinterError, ScannerError, SyncError
from edge.core.messages import UI, format_day, ui
from edge.counter.printqueue import PrintJob, PrintQueue
from edge.counter.templates import Template, TextItem, missing_glyph
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


# Values of these placeholders are words of the catalogue themselves (a kind, a state, ...).
_WORDS = {"kind": "kind.", "state": "state.", "what": "what.", "label": "form."}


class DeskError(EdgeError, ValueError):
    """A desk request cannot be done as asked: a catalogue key (edge.core.messages.UI, "error.")
    with its values; `field` names the form field at fault. str() is the English text."""

    def __init__(self, key: str, *, field: str | None = None, **values: object) -> None:
        self.key = key
        self.field = field
        self.values = values
        super().__init__(self.text("en"))

    def text(self, language: str) -> str:
        """The message in `language`, with kinds, states and labels in that language too."""
        words = {}
        for name, value in self.values.items():
            prefix = _WORDS.get(name)
            words[name] = (
                ui(prefix + str(value), language)
                if prefix is not None and prefix + str(value) in UI
                else value
            )
        return ui(f"error.{self.key}", language, **words)

    def title(self, language: str) -> str:
        """A short headline without the underlying detail (a printer's or the central's own
        words); the whole text where there is no detail."""
        key = f"error.{self.key}.title"
        if key not in UI:
            return self.text(language)
        what = self.values.get("what")
        return ui(key, language, what=ui(f"what.{what}", language) if what else "")

    @property
    def detail(self) -> str | None:
        """The underlying detail, in the words of whoever reported it."""
        value = self.values.get("detail")
        return None if value is None else str(value)


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
            ("surname", "surname"),
            ("first_name", "first_name"),
            ("address", "address"),
        ):
            value = form.get(name)
            if not isinstance(value, str) or not value.strip():
                raise DeskError("required", field=name, label=label)
            value = value.strip()
            if len(value) > MAX_TEXT or not value.replace("\n", " ").isprintable():
                raise DeskError("too_long", field=name, label=label, max=MAX_TEXT)
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
            raise DeskError("scan_voucher", field="voucher")
        holder = Holder.parse(form)
        raw = form.get("valid_from")
        try:
            valid_from = date.fromisoformat(raw) if isinstance(raw, str) else None
        except ValueError:
            valid_from = None
        if valid_from is None:
            raise DeskError("valid_from", field="valid_from")
        shipping = form.get("shipping")
        if shipping not in SHIPPING:
            raise DeskError("shipping", field="shipping")
        return cls(voucher.strip(), holder, valid_from, str(shipping))


_NAME_FIELDS = frozenset({"holder", "surname", "first_name"})


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _card_code() -> str:
    """A fresh plain card code: AP and 16 base32 characters (QR alphanumeric mode)."""
    return CARD_CODE_PREFIX + base64.b32encode(secrets.token_bytes(CARD_CODE_BYTES)).decode()


def _day(seconds: int | None, zone: tzinfo = UTC) -> str:
    """A validity bound as the day it falls on in `zone` (ISO, for the API)."""
    return "" if seconds is None else datetime.fromtimestamp(seconds, zone).date().isoformat()


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
        zone: tzinfo = UTC,
        language: str = "en",
        terms: Sequence[Template] = (),
        nfc: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        self._store = store
        self._queue = queue
        self._card = card_template
        self._ticket = ticket_template
        self._central = central
        self._offline_days = offline_pass_days
        self._clock = clock
        self._print_timeout = print_timeout
        self._zone = zone
        self._language = language
        self._terms = tuple(terms)
        self._nfc = nfc  # reads the chip UID of the card about to be printed
        for page in self._terms:  # the queue prints them by name, like configured templates
            queue.templates.setdefault(page.name, page)
        self._wake = asyncio.Event()
        self._send_lock = asyncio.Lock()

    @property
    def prints_tickets(self) -> bool:
        """Whether a ticket template is configured."""
        return self._ticket is not None

    @property
    def prints_terms(self) -> bool:
        """Whether terms are configured."""
        return bool(self._terms)

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
                raise DeskError("refused", detail=err.message) from err
            _LOGGER.warning("desk: %s refused (%s); using the synced copy", path, err)
            return None
        except (SyncError, aiohttp.ClientError, TimeoutError, OSError) as err:
            _LOGGER.info("desk: central system unreachable (%s); using the synced copy", err)
            return None
        answer = protocol.unpack(data, "desk answer", 1 << 16)
        if not isinstance(answer, dict):
            raise DeskError("central", detail="not a map")
        return answer

    async def lookup(self, code: str | None = None, number: int | None = None) -> dict[str, Any]:
        """A voucher or pass as the central system (or, offline, the synced copy) knows it."""
        if code is not None:
            code = code.strip()
            if not code:
                raise DeskError("scan_or_number", field="code")
            self._parse(code)  # malformed input never leaves the device
        elif number is None:
            raise DeskError("scan_or_number", field="code")
        request: dict[str, Any] = {"code": code} if code is not None else {"number": number}
        try:
            answer = await self._ask("/v1/desk/lookup", request)
        except DeskError as err:  # the central system knows no such code or number
            field = "code" if code is not None else "number"
            raise DeskError("not_found", field=field, detail=err.detail) from err
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
            raise DeskError("number_offline", field="number", number=number)
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
            raise DeskError("not_a_code", field="code", detail=err) from err

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
                raise DeskError("foreign", field="code")
            kind = parsed.claims.kind
            cid = parsed.claims.credential_id
        elif facts.credential is None:
            raise DeskError("unknown_code", field="code")
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
        self._check_glyphs(form.holder)
        sale = await self.lookup(form.voucher)
        if sale["kind"] != "voucher":
            raise DeskError("not_voucher", field="voucher", kind=sale["kind"])
        if sale["state"] != "active":
            raise DeskError("voucher_state", field="voucher", state=sale["state"])
        # A pass is valid from midnight where the venue is, not midnight in Greenwich.
        start = datetime.combine(form.valid_from, dt_time(0), tzinfo=self._zone)
        days = int(sale.get("days") or self._offline_days)
        valid_from = int(start.timestamp())
        valid_until = valid_from + days * 86400 - 1
        card = _card_code()
        chip = await self._read_chip()
        key = uuid.uuid4().hex
        await self._print_card(
            key,
            {
                "holder": form.holder.name,
                "surname": form.holder.surname,
                "first_name": form.holder.first_name,
                "number": card,
                "valid_from": self._printed_day(valid_from),
                "valid_until": self._printed_day(valid_until),
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
        if chip is not None:
            body["nfc_uid"] = chip
        voucher_hash = self._parse(form.voucher).hash
        state = await self._record(key, "issue", body, voucher_hash)
        _LOGGER.info("desk: pass card %s printed, issue %s", mask(card), state.value)
        return {
            "key": key,
            "state": state.value,
            "card": card,
            "chip": chip,
            "holder": form.holder.name,
            "valid_from": _day(valid_from, self._zone),
            "valid_until": _day(valid_until, self._zone),
        }

    async def extend(self, credential: int, code: str | None) -> dict[str, Any]:
        """Extend a pass by its original duration; reprint its card only if it shows validity."""
        sale = await self.lookup(code, None if code else credential)
        if sale["kind"] != "pass" or sale["credential"] != credential:
            raise DeskError("scan_pass", field="code")
        if sale["state"] != "active" or sale.get("valid_until") is None:
            raise DeskError("pass_state", state=sale["state"])
        key = uuid.uuid4().hex
        state = await self._record(key, "extend", {"key": key, "credential": credential}, None)
        detail = self._detail(key)
        until = detail.get("valid_until") if detail else None
        if until is None:  # offline: the pass's duration as this desk knows it
            until = int(sale["valid_until"]) + int(sale.get("days") or self._offline_days) * 86400
        result: dict[str, Any] = {
            "key": key,
            "state": state.value,
            "valid_until": _day(int(until), self._zone),
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
                "valid_from": self._printed_day(sale.get("valid_from")),
                "valid_until": self._printed_day(int(until)),
                "code": code,
            },
        )
        result["reprinted"] = True
        return result

    async def replace(self, credential: int) -> dict[str, Any]:
        """A lost card: print a card with a new code, then queue the replacement."""
        sale = await self.lookup(None, credential)
        if sale["kind"] != "pass" or sale["state"] != "active":
            raise DeskError("pass_state", state=sale["state"])
        card = _card_code()
        chip = await self._read_chip()
        key = uuid.uuid4().hex
        await self._print_card(
            key,
            {
                "holder": sale.get("holder") or "",
                "number": card,
                "valid_from": self._printed_day(sale.get("valid_from")),
                "valid_until": self._printed_day(sale.get("valid_until")),
                "code": card,
            },
        )
        body = {"key": key, "credential": credential, "card_code": card}
        if chip is not None:
            body["nfc_uid"] = chip
        state = await self._record(key, "replace", body, None)
        return {"key": key, "state": state.value, "card": card, "chip": chip}

    async def cancel(self, credential: int) -> dict[str, Any]:
        """Cancel the sale of a pass or voucher: the central system revokes its codes."""
        if credential < 1:
            raise DeskError("pass_number", field="credential")
        key = uuid.uuid4().hex
        state = await self._record(key, "cancel", {"key": key, "credential": credential}, None)
        return {"key": key, "state": state.value}

    async def print_ticket(self, code: str) -> dict[str, Any]:
        """Print a BOCA ticket for a voucher or day ticket that is still valid."""
        if self._ticket is None:
            raise DeskError("no_ticket_template")
        sale = await self.lookup(code)
        if sale["kind"] not in ("voucher", "ticket"):
            raise DeskError("ticket_kind", kind=sale["kind"])
        if sale["state"] != "active":
            raise DeskError("ticket_state", kind=sale["kind"], state=sale["state"])
        values = {
            "code": code.strip(),
            "product": str(sale.get("product") or sale["kind"]),
            "event": str(sale.get("product") or sale["kind"]),
            "holder": str(sale.get("holder") or ""),
            "number": str(sale["credential"]),
            "date": self._printed_day(sale.get("valid_from") or int(self._clock())),
            "price": "",
        }
        missing = [f for f in self._ticket.fields if f not in values]
        if missing:
            raise DeskError("template_field", what="ticket", field=missing[0])
        job_id = f"desk-ticket-{uuid.uuid4().hex}"
        fields = {name: values[name] for name in self._ticket.fields}
        try:
            record = await self._queue.submit(PrintJob(job_id, self._ticket.name, fields))
        except PrinterError as err:
            raise DeskError("print", what="ticket", detail=err) from err
        return {"job_id": record.job_id, "printer": record.printer, "state": record.state.value}

    def _printed_day(self, seconds: int | None) -> str:
        """A validity bound as the card or ticket prints it: the local day, the device's way."""
        if seconds is None:
            return ""
        return format_day(datetime.fromtimestamp(seconds, self._zone).date(), self._language)

    def _check_glyphs(self, holder: Holder) -> None:
        """DeskError on the holder's field if the card's font cannot draw one of its letters."""
        if self._card is None:
            return
        for item in self._card.items:
            if not isinstance(item, TextItem) or not _NAME_FIELDS & _placeholders(item.text):
                continue
            for name in ("surname", "first_name"):
                value = getattr(holder, name)
                lacking = missing_glyph(value, item.size, self._card.font_path)
                if lacking is not None:
                    raise DeskError("unprintable", field=name, label=name, char=lacking)

    async def print_terms(self, key: str | None = None) -> dict[str, Any]:
        """Queue the venue's terms on the ticket printer, one job per page; the same `key` again
        prints nothing new (a double click)."""
        if not self._terms:
            raise DeskError("no_terms")
        key = key or uuid.uuid4().hex
        if not 1 <= len(key) <= 64 or not key.isalnum():
            raise DeskError("bad_request", detail="key: 1..64 letters and digits")
        printer = ""
        for page in self._terms:
            try:
                record = await self._queue.submit(
                    PrintJob(f"desk-{page.name}-{key}", page.name, {})
                )
            except PrinterError as err:
                raise DeskError("print", what="terms", detail=err) from err
            printer = record.printer
        return {"key": key, "printer": printer, "pages": len(self._terms)}

    async def _read_chip(self) -> str | None:
        """The UID of the blank card on the desk's NFC reader (None without a reader); read
        before printing, so a card whose chip cannot be read is never printed."""
        if self._nfc is None:
            return None
        try:
            return await self._nfc()
        except ScannerError as err:
            raise DeskError("nfc_failed", detail=err) from err

    async def _print_card(self, key: str, values: Mapping[str, str]) -> None:
        """Print one card and wait for it; DeskError (nothing half done) if it fails."""
        if self._card is None:
            raise DeskError("no_card_template")
        missing = [f for f in self._card.fields if f not in values]
        if missing:
            raise DeskError("template_field", what="card", field=missing[0])
        fields = {name: values[name] for name in self._card.fields}
        job_id = f"desk-{key}"
        try:
            await self._queue.submit(PrintJob(job_id, self._card.name, fields))
        except PrinterError as err:
            raise DeskError("print", what="card", detail=err) from err
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
                raise DeskError("card_failed", detail=why)
            why = record.error or f"no card after {self._print_timeout:.0f} s"
            if await self._queue.abandon(job_id, f"the desk gave up: {why}"):
                raise DeskError("card_failed", detail=why)

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
            raise DeskError("central", detail=f"operation {key} vanished after it was stored")
        if stored.state is OpState.REJECTED:
            raise DeskError("refused", detail=stored.detail)
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
