"""Sync with pretix: pull keys, check-in list, catalog, revoked/blocked and known secrets;
upload offline check-ins with their original time and an idempotency nonce.

Secrets are stored only as hashes (sync.pretix.secrets.secret_hash). An admitted scan is
uploaded by position id (pretix's per-list redeem endpoint), so the gate never needs the
raw secret again: a ticket sold after the last sync waits in the journal until a pull has
mapped its secret's hash to its position.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from edge.core.codes import PlainCode
from edge.core.decide import Reason
from edge.core.errors import CodeError, EdgeError, SyncError
from edge.core.facts import Credential, Direction, EntryState, Revocation
from edge.store.database import Store
from sync.pretix.client import PretixClient
from sync.pretix.resolver import (
    KEYS_CURSOR,
    LIST_CURSOR,
    ListState,
    PretixResolver,
    keys_to_json,
    position_credential,
    unknown_position_id,
)
from sync.pretix.secrets import load_key, looks_sig1, raw_key, secret_hash

_LOGGER = logging.getLogger(__name__)

REVOKED_CURSOR = "pretix:revoked-since"  # `created` of the newest revoked secret applied
BLOCKED_CURSOR = "pretix:blocked-since"  # `updated` of the newest blocked-secret change
CATALOG_CURSOR = "pretix:catalog"  # JSON: item and subevent names, for operators
NONCE_CURSOR = "pretix:nonce-prefix"  # random per store: nonces of two stores never meet
PRETIX_GATE = "pretix"  # where a passage pretix reported happened, as "already used" shows it
UPLOAD_BATCH = 500  # journal rows per upload round
MAX_SECRET_CHARS = 512  # longer "secrets" from the server are rejected
RETRY_SECONDS = (1.0, 5.0, 30.0, 120.0)  # backoff after failed rounds

# What pretix's check-in API answers (status "ok", else its `reason`) where the gate decides
# `Reason`: the contract the integration test checks against a running pretix.
PRETIX_REASONS = {
    Reason.ADMITTED: "ok",
    Reason.EXIT: "ok",
    Reason.ALREADY_USED: "already_redeemed",
    Reason.REVOKED: "revoked",  # pretix's blocked secrets answer "blocked"
    Reason.CANCELLED: "canceled",
    Reason.UNKNOWN: "invalid",
    Reason.BAD_SIGNATURE: "invalid",
    Reason.UNKNOWN_KEY: "invalid",
    Reason.MALFORMED: "invalid",
    Reason.WRONG_GATE: "product",
    Reason.UNPAID: "unpaid",
    Reason.NOT_YET_VALID: "invalid_time",
    Reason.EXPIRED: "invalid_time",
}


@dataclass(frozen=True, slots=True)
class PullStats:
    """What one pull applied."""

    keys: int
    revoked: int
    blocked: int
    unblocked: int
    positions: int
    items: int
    subevents: int


@dataclass(frozen=True, slots=True)
class UploadStats:
    """What one upload round did."""

    sent: int  # redeemed at pretix (whatever pretix answered)
    skipped: int  # rejected scans: kept in the local journal only
    waiting: int  # admitted scans whose position no pull has mapped yet


def _field(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SyncError(f"pretix {where}: field {key!r} is {type(value).__name__}, not expected")
    return value


def _optional_id(obj: dict[str, Any], key: str, where: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    return int(_field(obj, key, int, where))


def _time(obj: dict[str, Any], key: str, where: str) -> datetime | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise SyncError(f"pretix {where}: field {key!r} is not a time")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as err:
        raise SyncError(f"pretix {where}: field {key!r}: {err}") from err
    if moment.tzinfo is None:
        raise SyncError(f"pretix {where}: field {key!r} has no time zone")
    return moment


def _secret(obj: dict[str, Any], key: str, where: str) -> str:
    value = _field(obj, key, str, where)
    if not value or len(value) > MAX_SECRET_CHARS or not value.isascii():
        raise SyncError(f"pretix {where}: field {key!r} is not a ticket secret")
    return str(value)


class _Newest:
    """The latest of pretix's timestamps seen, kept as pretix wrote it (the next cursor)."""

    def __init__(self, text: str | None) -> None:
        self.text = text
        self._at = _time({"cursor": text}, "cursor", "stored cursor") if text else None

    def see(self, row: dict[str, Any], key: str, where: str) -> None:
        at = _time(row, key, where)
        if at is None:
            raise SyncError(f"pretix {where}: no {key!r}")
        # Compared as times: pretix leaves out zero microseconds, so text order is wrong.
        if self._at is None or at > self._at:
            self._at, self.text = at, str(row[key])


@dataclass(slots=True)
class _Positions:
    """What a pull learned from the check-in list's positions."""

    credentials: list[Credential] = field(default_factory=list)
    plain: list[tuple[bytes, int]] = field(default_factory=list)  # secret hash → position
    moves: list[tuple[int, int]] = field(default_factory=list)  # provisional id → position
    entries: list[tuple[int, EntryState]] = field(default_factory=list)  # pretix's check-ins
    cancelled: list[int] = field(default_factory=list)


def _checkins(checkins: Any, list_id: int) -> EntryState | None:
    """The passages pretix recorded for a position on the list, or None if there are none."""
    if not isinstance(checkins, list):
        raise SyncError("pretix position: field 'checkins' is not a list")
    passages: list[tuple[datetime, Direction]] = []
    for checkin in checkins:
        if not isinstance(checkin, dict) or checkin.get("list") != list_id:
            continue
        at = _time(checkin, "datetime", "check-in")
        if at is None:
            raise SyncError("pretix check-in: no datetime")
        kind = checkin.get("type", "entry")
        passages.append((at, Direction.EXIT if kind == "exit" else Direction.ENTRY))
    if not passages:
        return None
    entries = sorted(at for at, d in passages if d is Direction.ENTRY)
    last_at, last_direction = max(passages, key=lambda p: p[0])
    return EntryState(
        count=len(entries),
        first_at=entries[0] if entries else None,
        first_gate=PRETIX_GATE if entries else None,
        last_at=last_at,
        last_direction=last_direction,
        last_gate=PRETIX_GATE,
    )


class PretixConnector:
    """Pulls from and uploads to one pretix event and check-in list for one device."""

    def __init__(self, store: Store, client: PretixClient, resolver: PretixResolver) -> None:
        self._store = store
        self._client = client
        self._resolver = resolver
        self._settings = client.settings

    async def pull(self) -> PullStats:
        """Fetch everything the gate decides with and apply it; the resolver sees it after."""
        started = time.monotonic()
        api = self._settings.event_api
        event = await self._client.get(f"{api}/")
        keys = self._keys(event)
        state = await self._list()
        items = {
            int(_field(i, "id", int, "item")): i.get("name")
            async for i in self._client.pages(f"{api}/items/")
        }
        subevents: dict[int, Any] = {}
        if event.get("has_subevents"):
            subevents = {
                int(_field(s, "id", int, "subevent")): {
                    "name": s.get("name"),
                    "date_from": s.get("date_from"),
                    "date_to": s.get("date_to"),
                }
                async for s in self._client.pages(f"{api}/subevents/")
            }
        revoked, revoked_since = await self._revoked()
        blocks, blocked_since = await self._blocked()
        positions = await self._positions(state)

        store = self._store
        # Refusals first: scans run between these writes, and a re-issued ticket's old
        # secret must never meet its position's fresh facts without its revocation.
        if revoked:
            await store.revoke_codes((h, Revocation.REVOKED) for h in revoked)
        if blocks:
            await store.block_codes(blocks)
        if positions.cancelled:
            await store.revoke_credentials(
                (pid, Revocation.CANCELLED) for pid in positions.cancelled
            )
        await store.put_credentials(positions.credentials, positions.plain)
        # Passages counted under a ticket's provisional id now belong to its position.
        await store.move_entries(positions.moves)
        await store.merge_entries(positions.entries)
        # Cursors after the data they describe: a crash in between re-applies (idempotent).
        await store.set_cursor(KEYS_CURSOR, keys_to_json(keys))
        await store.set_cursor(LIST_CURSOR, state.to_json())
        await store.set_cursor(
            CATALOG_CURSOR,
            json.dumps({"items": items, "subevents": subevents}, sort_keys=True, default=str),
        )
        if revoked_since:
            await store.set_cursor(REVOKED_CURSOR, revoked_since)
        if blocked_since:
            await store.set_cursor(BLOCKED_CURSOR, blocked_since)
        self._resolver.reload()
        stats = PullStats(
            keys=len(keys),
            revoked=len(revoked),
            blocked=sum(1 for _, b in blocks if b),
            unblocked=sum(1 for _, b in blocks if not b),
            positions=len(positions.credentials),
            items=len(items),
            subevents=len(subevents),
        )
        _LOGGER.info(
            "pretix %s/%s: pulled in %.0f ms: %s",
            self._settings.organizer,
            self._settings.event,
            (time.monotonic() - started) * 1000,
            stats,
        )
        return stats

    def _keys(self, event: dict[str, Any]) -> list[bytes]:
        valid = event.get("valid_keys")
        if not isinstance(valid, dict):
            raise SyncError("pretix event: no valid_keys (pretix 3.16 or newer publishes them)")
        texts = valid.get("pretix_sig1", [])
        if not isinstance(texts, list):
            raise SyncError("pretix event: valid_keys.pretix_sig1 is not a list")
        try:
            return [raw_key(load_key(str(t))) for t in texts]
        except CodeError as err:
            raise SyncError(f"pretix event: valid_keys.pretix_sig1: {err}") from err

    async def _list(self) -> ListState:
        where = f"check-in list {self._settings.checkin_list}"
        data = await self._client.get(
            f"{self._settings.event_api}/checkinlists/{self._settings.checkin_list}/"
        )
        all_products = _field(data, "all_products", bool, where)
        limit = _field(data, "limit_products", list, where)
        if not all(isinstance(p, int) for p in limit):
            raise SyncError(f"pretix {where}: limit_products holds a non-integer")
        return ListState(
            list_id=int(_field(data, "id", int, where)),
            products=None if all_products else frozenset(limit),
            subevent=_optional_id(data, "subevent", where),
            include_pending=bool(_field(data, "include_pending", bool, where)),
            multiple_entries=bool(_field(data, "allow_multiple_entries", bool, where)),
        )

    async def _revoked(self) -> tuple[list[bytes], str | None]:
        """Secrets revoked since the last pull (by `created`, inclusive: re-applying is free)."""
        params = {"ordering": "created"}
        since = self._store.cursor(REVOKED_CURSOR)
        if since:
            params["created_since"] = since
        hashes: list[bytes] = []
        newest = _Newest(since)
        async for row in self._client.pages(f"{self._settings.event_api}/revokedsecrets/", params):
            hashes.append(secret_hash(_secret(row, "secret", "revoked secret")))
            newest.see(row, "created", "revoked secret")
        return hashes, newest.text

    async def _blocked(self) -> tuple[list[tuple[bytes, bool]], str | None]:
        """Blocks set or lifted since the last pull, in order of `updated`."""
        params = {"ordering": "updated"}
        since = self._store.cursor(BLOCKED_CURSOR)
        if since:
            params["updated_since"] = since
        changes: dict[bytes, bool] = {}
        newest = _Newest(since)
        url = f"{self._settings.event_api}/blockedsecrets/"
        async for row in self._client.pages(url, params):
            blocked = _field(row, "blocked", bool, "blocked secret")
            changes[secret_hash(_secret(row, "secret", "blocked secret"))] = blocked
            newest.see(row, "updated", "blocked secret")
        return list(changes.items()), newest.text

    async def _positions(self, state: ListState) -> _Positions:
        """Every position of the list (all order states): known secrets, facts, check-ins."""
        out = _Positions()
        url = f"{self._settings.event_api}/checkinlists/{state.list_id}/positions/"
        async for row in self._client.pages(url, {"ignore_status": "true"}):
            where = "position"
            pid = int(_field(row, "id", int, where))
            status = row.get("order__status")
            pending_ok = state.include_pending or row.get("order__valid_if_pending") is True
            paid = status == "p" or (status == "n" and pending_ok)
            out.credentials.append(
                position_credential(
                    pid,
                    item=int(_field(row, "item", int, where)),
                    event=_optional_id(row, "subevent", where) or 0,
                    valid_from=_time(row, "valid_from", where),
                    valid_until=_time(row, "valid_until", where),
                    paid=paid,
                    state=state,
                )
            )
            text = _secret(row, "secret", where)
            code_hash = secret_hash(text)
            out.plain.append((code_hash, pid))
            if looks_sig1(text):
                out.moves.append((unknown_position_id(code_hash), pid))
            if status in ("c", "e"):  # cancelled, expired
                out.cancelled.append(pid)
            passages = _checkins(row.get("checkins"), state.list_id)
            if passages is not None:
                out.entries.append((pid, passages))
        return out

    async def _nonce_prefix(self) -> str:
        prefix = self._store.cursor(NONCE_CURSOR)
        if prefix is None:
            prefix = secrets.token_hex(8)
            await self._store.set_cursor(NONCE_CURSOR, prefix)
        return prefix

    async def upload(self, limit: int = UPLOAD_BATCH) -> UploadStats:
        """Redeem admitted journal rows at pretix, record its answers; idempotent by nonce."""
        prefix = await self._nonce_prefix()
        replies: list[tuple[int, str, str]] = []
        sent = skipped = waiting = 0
        base = f"{self._settings.event_api}/checkinlists/{self._settings.checkin_list}/positions"
        try:
            for row in self._store.unsent(limit):
                entry = row.entry
                if not entry.reason.admits or entry.code_hash is None:
                    # pretix records check-ins, not refusals; the journal keeps them.
                    replies.append((row.seq, "skipped", entry.reason.value))
                    skipped += 1
                    continue
                credential = self._store.facts(PlainCode(entry.code_hash)).credential
                if credential is None or credential.credential_id < 0:
                    waiting += 1
                    continue
                body = {
                    "type": "exit" if entry.direction is Direction.EXIT else "entry",
                    "datetime": entry.at.isoformat(),
                    "nonce": f"edge-{prefix}-{row.seq}",
                    "force": False,
                    "ignore_unpaid": False,
                    "questions_supported": False,
                    "canceled_supported": True,
                }
                status, answer = await self._client.post(
                    f"{base}/{credential.credential_id}/redeem/", body
                )
                replies.append((row.seq, *_answer(status, answer)))
                sent += 1
        finally:
            if replies:
                await self._store.mark_sent(replies)
        stats = UploadStats(sent=sent, skipped=skipped, waiting=waiting)
        if sent or skipped:
            _LOGGER.info("pretix: uploaded %s", stats)
        return stats

    async def run(self, interval: float) -> None:
        """Pull and upload every `interval` seconds until cancelled; failures back off."""
        failures = 0
        while True:
            try:
                await self.pull()
                await self.upload()
                failures = 0
                delay = interval
            except EdgeError as err:
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                _LOGGER.error("pretix sync failed (retry in %.0f s): %s", delay, err)
            await asyncio.sleep(delay)


def _answer(status: int, answer: dict[str, Any]) -> tuple[str, str]:
    """(status, detail) of a redeem answer: ("ok", "") or ("error", pretix's reason)."""
    result = answer.get("status")
    if status in (200, 201) and result == "ok":
        return "ok", ""
    reason = answer.get("reason") or answer.get("detail") or f"HTTP {status}"
    return str(result or "error")[:40], str(reason)[:200]
