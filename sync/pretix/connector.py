"""Sync with pretix: pull keys, check-in list, catalog, revoked/blocked and known secrets;
upload offline check-ins with their original time and an idempotency nonce.

Secrets are stored only as hashes (sync.pretix.secrets.secret_hash). An admitted scan is
uploaded by position id (pretix's per-list redeem endpoint), so the gate never needs the
raw secret again: a ticket sold after the last sync waits in the journal until a pull has
mapped its secret's hash to its position.

A pull is a mirror: every pull reads every order of the event once, whole (no
`modified_since`: a mirror must see what left), and the store afterwards holds exactly what
it read. The same read serves both of the gate's tables: the check-in list's listing (the
positions whose product and date the list holds, all order states: pretix's list endpoint
with ignore_status gives the same) for the mirror and the upload, and every position of the
list's date for the decision (sync.pretix.positions). A position that left the listing and
is still among the orders moved to a product or date the list does not admit: it keeps its
facts with the new product (pretix answers "product"); one gone from the orders (cancelled,
deleted) loses its facts and code mapping. Codes that no longer name a position are revoked
when the event signs its secrets, so an old pretix_sig1 secret is never taken for a ticket
sold after the pull. The daemon runs pulls in a worker process (sync.pretix.worker).

Upload never blocks on a row: rows are paged through by sequence number, rows pretix
refused (a 4xx answer with a reason) or that no position matches after two complete pulls
are marked with the reason and leave the queue, and transient failures (5xx, timeouts, cut
connections, "locked") are never stored: the row is sent again, with the same nonce, later.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from edge.core.codes import PlainCode
from edge.core.decide import Reason
from edge.core.errors import CodeError, EdgeError, SyncError
from edge.core.facts import Credential, Direction, EntryState, Revocation
from edge.store.database import Store
from edge.store.gate import JournalRow
from edge.store.pretix import PretixPosition
from edge.store.sync import Mirror, Refusal
from sync.pretix.client import PretixClient, PretixSettings
from sync.pretix.positions import Pulled, Read, calendar, order_positions, reachable
from sync.pretix.resolver import (
    CALENDAR_CURSOR,
    KEYS_CURSOR,
    LIST_CURSOR,
    PRETIX_GATE,
    ListState,
    PretixResolver,
    keys_to_json,
    position_credential,
    unknown_position_id,
)
from sync.pretix.secrets import load_key, raw_key, secret_hash

_LOGGER = logging.getLogger(__name__)

PULLS_CURSOR = "pretix:pulls"  # JSON: unix ms at which the last two complete pulls started
REVOKED_CURSOR = "pretix:revoked-since"  # `created` of the newest revoked secret applied
BLOCKED_CURSOR = "pretix:blocked-since"  # `updated` of the newest blocked-secret change
CATALOG_CURSOR = "pretix:catalog"  # JSON: item and subevent names, for operators
NONCE_CURSOR = "pretix:nonce-prefix"  # random per store: nonces of two stores never meet
UPLOAD_PAGE = 100  # journal rows read at a time during an upload round, on the event loop
# (a page of 500 held it 5.6-6.1 ms with a backlog, every lane waiting; 100: 1.4-1.5 ms)
UPLOAD_BATCH = 2000  # redeem requests per upload round at most, so pulls come between rounds
UPLOAD_CONCURRENCY = 4  # redeem requests in flight, for distinct positions
MARK_EVERY = 50  # answers stored together: a crash re-sends at most this many (same nonces)
MAX_FAILURES_IN_A_ROW = 3  # transient failures that end a round: pretix is away, not one row
MAX_SECRET_CHARS = 512  # longer "secrets" from the server are rejected
RETRY_SECONDS = (1.0, 5.0, 30.0, 120.0)  # backoff after failed rounds
SHOWN_REFUSALS = 10  # refused uploads kept in memory for /health and the status page

# Journal reply statuses (journal_replies.status) the upload stores.
REPLY_OK = "ok"  # pretix recorded the check-in
REPLY_REFUSED = "error"  # pretix refused it; the detail is pretix's reason (as pretix's status)
REPLY_UNMAPPED = "unmapped"  # admitted here, but no position of the list has this code
REPLY_SKIPPED = "skipped"  # a rejected scan: pretix records check-ins, not refusals

# What pretix's check-in API answers (status "ok", else its `reason`) where the gate decides
# `Reason`: the contract the integration test checks against a running pretix.
PRETIX_REASONS = {
    Reason.ADMITTED: "ok",
    Reason.EXIT: "ok",
    Reason.ALREADY_USED: "already_redeemed",
    Reason.REVOKED: "revoked",
    Reason.BLOCKED: "blocked",
    Reason.UNAPPROVED: "unapproved",
    Reason.RULES: "rules",
    Reason.AMBIGUOUS: "ambiguous",
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
    removed: int = 0  # positions that left the list: cancelled, deleted
    off_list: int = 0  # positions moved to a product or date the list does not admit
    reachable: int = 0  # positions of the list's date (any product): what scans can find
    changed: int = 0  # of `reachable`: new, or different from the last pull's (written)


@dataclass(frozen=True, slots=True)
class UploadStats:
    """What one upload round did."""

    sent: int  # answered by pretix (ok or refused)
    skipped: int  # rejected scans: kept in the local journal only
    waiting: int  # admitted scans whose position no pull has mapped yet
    refused: int = 0  # of `sent`: pretix refused them (4xx with a reason)
    unmapped: int = 0  # admitted scans no position matches after two complete pulls
    failed: int = 0  # transient failures: the rows stay queued and go again later


class Puller(Protocol):
    """Runs a pull into the store elsewhere (the daemon's worker process)."""

    async def pull(self, settings: PretixSettings) -> PullStats:
        """Pull from pretix into the store; what the pull raises."""
        ...


@dataclass(slots=True)
class PretixSyncState:
    """The connector's state for /health, the status page and `edge status`."""

    status: str = "starting"  # starting, ok, offline (the last pull or upload failed)
    last_pull: float | None = None  # unix time of the last complete pull
    last_upload: float | None = None  # unix time of the last upload round without failure
    last_error: str = ""
    uploaded: int = 0  # check-ins pretix recorded since start
    refused: int = 0  # rows pretix refused or that could not be mapped, since start
    refusals: list[dict[str, object]] = field(default_factory=list)  # newest first


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
    """What a pull learned from the event's orders: the check-in list's listing (positions
    whose product and date are on the list), what a scan can reach, and the rest by id."""

    credentials: list[Credential] = field(default_factory=list)
    plain: dict[bytes, int] = field(default_factory=dict)  # secret hash → position
    moves: list[tuple[int, int]] = field(default_factory=list)  # provisional id → position
    entries: list[tuple[int, EntryState]] = field(default_factory=list)  # pretix's check-ins
    cancelled: list[int] = field(default_factory=list)
    active: list[int] = field(default_factory=list)  # positions whose order is not cancelled
    blocks: list[tuple[bytes, bool]] = field(default_factory=list)  # the position's own state
    ids: set[int] = field(default_factory=set)  # every position on the list
    reachable: list[Pulled] = field(default_factory=list)  # of the list's date, any product
    off: dict[int, PretixPosition] = field(default_factory=dict)  # not on the list, any date

    def add(self, read: Read, state: ListState) -> None:
        """Take in one position of an order."""
        position, seen, signed = read
        if reachable(position, state):
            self.reachable.append((position, seen))
        pid = position.position_id
        event = position.subevent or 0
        if not _on_list(state, position.item, event):
            self.off[pid] = position
            return
        self.ids.add(pid)
        status = position.order_status
        pending_ok = state.include_pending or position.valid_if_pending
        self.credentials.append(
            position_credential(
                pid,
                item=position.item,
                event=event,
                valid_from=position.valid_from,
                valid_until=position.valid_until,
                paid=status == "p" or (status == "n" and pending_ok),
                state=state,
            )
        )
        code_hash = position.code_hash
        self.plain[code_hash] = pid
        self.blocks.append((code_hash, position.blocked))
        if signed:
            self.moves.append((unknown_position_id(code_hash), pid))
        if status in ("c", "e"):  # cancelled, expired
            self.cancelled.append(pid)
        else:
            self.active.append(pid)
        entries = _checkins(seen)
        if entries is not None:
            self.entries.append((pid, entries))


def _left_the_list(
    stored: dict[int, tuple[int, int]], listed: set[int], state: ListState
) -> list[int]:
    """Synced positions the list would hold by product and date but did not list (a thread)."""
    return [
        cid
        for cid, (event, product) in stored.items()
        if cid > 0 and cid not in listed and _on_list(state, product, event)
    ]


def _code_changes(
    index: dict[bytes, int], scope: set[int], wanted: dict[bytes, int]
) -> tuple[list[bytes], list[tuple[bytes, int]]]:
    """(mappings to drop, mappings to add) for positions in `scope` (run in a thread)."""
    dropped = [h for h, cid in index.items() if cid in scope and wanted.get(h) != cid]
    added = [(h, cid) for h, cid in wanted.items() if index.get(h) != cid]
    return dropped, added


def _on_list(state: ListState, product: int, event: int) -> bool:
    """Whether the list's product and date limits let a position with these onto the list."""
    if state.products is not None and product not in state.products:
        return False
    return state.subevent is None or event == state.subevent


def _checkins(seen: list[tuple[datetime, Direction]]) -> EntryState | None:
    """The passages pretix recorded for a position on the list, or None if there are none."""
    if not seen:
        return None
    entries = sorted(at for at, d in seen if d is Direction.ENTRY)
    last_at, last_direction = max(seen, key=lambda p: p[0])
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

    def __init__(
        self,
        store: Store,
        client: PretixClient,
        resolver: PretixResolver,
        *,
        state: PretixSyncState | None = None,
        ignore_unpaid_lanes: frozenset[str] = frozenset(),  # lanes set to ignore_unpaid
        puller: Puller | None = None,  # runs pulls elsewhere (sync.pretix.worker); None: here
    ) -> None:
        self._store = store
        self._client = client
        self._resolver = resolver
        self._settings = client.settings
        self.state = state if state is not None else PretixSyncState()
        self._in_flight = 1  # redeem requests sent at once, up to UPLOAD_CONCURRENCY
        if not self.state.refusals:
            self.state.refusals = [
                _refusal_view(r) for r in store.refusals(SHOWN_REFUSALS, accepted=_ACCEPTED)
            ]
        self._ignore_unpaid = ignore_unpaid_lanes
        self._puller = puller

    async def sync(self) -> PullStats:
        """Pull through the puller if there is one (the resolver then reloads), else here."""
        if self._puller is None:
            return await self.pull()
        started = time.monotonic()
        stats = await self._puller.pull(self._settings)
        self._resolver.reload()
        self.state.last_pull = time.time()
        _LOGGER.info(
            "pretix %s/%s: pulled in %.0f ms (in the worker): %s",
            self._settings.organizer,
            self._settings.event,
            (time.monotonic() - started) * 1000,
            stats,
        )
        return stats

    async def pull(self) -> PullStats:
        """Fetch everything the gate decides with and mirror it; the resolver sees it after."""
        started = time.monotonic()
        started_ms = int(time.time() * 1000)
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
                    "date_admission": s.get("date_admission"),
                }
                async for s in self._client.pages(f"{api}/subevents/")
            }
        revoked, revoked_since = await self._revoked()
        blocks, blocked_since = await self._blocked()
        positions = await self._orders(state)
        mirror, removed, off_list = await self._mirror(state, positions, keys, revoked, blocks)
        store = self._store
        # What pretix's check-in decides with (sync.pretix.checkin): every reachable position;
        # only what changed is written.
        changed, _ = await store.mirror_pretix_positions(positions.reachable)
        cursors = {
            KEYS_CURSOR: keys_to_json(keys),
            LIST_CURSOR: state.to_json(),
            CATALOG_CURSOR: json.dumps(
                {"items": items, "subevents": subevents}, sort_keys=True, default=str
            ),
            PULLS_CURSOR: json.dumps([*self._pulls()[-1:], started_ms]),
            CALENDAR_CURSOR: calendar(event, subevents).to_json(),
        }
        if revoked_since:
            cursors[REVOKED_CURSOR] = revoked_since
        if blocked_since:
            cursors[BLOCKED_CURSOR] = blocked_since
        # One transaction: a scan sees the listing before or after, never half of it.
        await store.mirror(mirror, cursors)
        # Passages counted under a ticket's provisional id now belong to its position;
        # both steps are idempotent, so a crash before them is repaired by the next pull.
        await store.move_entries(positions.moves)
        await store.merge_entries(positions.entries)
        self._resolver.reload()
        self.state.last_pull = time.time()
        stats = PullStats(
            keys=len(keys),
            revoked=len(revoked),
            blocked=sum(1 for _, b in blocks if b),
            unblocked=sum(1 for _, b in blocks if not b),
            positions=len(positions.credentials),
            items=len(items),
            subevents=len(subevents),
            removed=removed,
            off_list=off_list,
            reachable=len(positions.reachable),
            changed=changed,
        )
        _LOGGER.info(
            "pretix %s/%s: pulled in %.0f ms: %s",
            self._settings.organizer,
            self._settings.event,
            (time.monotonic() - started) * 1000,
            stats,
        )
        return stats

    def _pulls(self) -> list[int]:
        """Start times (unix ms) of the last two complete pulls, oldest first."""
        text = self._store.cursor(PULLS_CURSOR)
        if not text:
            return []
        try:
            value = json.loads(text)
        except ValueError as err:
            raise SyncError(f"stored pretix pull times are damaged: {err}") from err
        if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
            raise SyncError("stored pretix pull times are damaged")
        return [int(v) for v in value[-2:]]

    async def _mirror(
        self,
        state: ListState,
        positions: _Positions,
        keys: list[bytes],
        revoked: list[bytes],
        blocks: list[tuple[bytes, bool]],
    ) -> tuple[Mirror, int, int]:
        """The store changes that make it hold exactly this listing; (mirror, removed, off list).

        A position that was on the list at the last pull and is not now was either moved to
        a product or date the list does not admit (it is still among the orders' positions):
        it keeps its facts with the new product, so the gate answers "product" as pretix
        does; or cancelled or deleted (gone from the orders): it is removed.
        """
        store = self._store
        credentials = list(positions.credentials)
        wanted = dict(positions.plain)
        own_blocks = list(positions.blocks)
        stored = await store.credential_index()
        left = await asyncio.to_thread(_left_the_list, stored, positions.ids, state)
        removed: list[int] = []
        moved: list[int] = []
        for cid in left:
            off = positions.off.get(cid)
            if off is None:
                removed.append(cid)
                continue
            credentials.append(
                position_credential(
                    cid,
                    item=off.item,
                    event=off.subevent or 0,
                    valid_from=off.valid_from,
                    valid_until=off.valid_until,
                    paid=True,  # the list refuses its product whatever the order's state
                    state=state,
                )
            )
            wanted[off.code_hash] = cid
            own_blocks.append((off.code_hash, off.blocked))
            moved.append(cid)
        scope = {c.credential_id for c in credentials} | set(removed)
        index = await store.plain_code_index()
        dropped, added = await asyncio.to_thread(_code_changes, index, scope, wanted)
        revocations = [(h, Revocation.REVOKED) for h in revoked]
        if keys:
            # An event that signs: a code that names no position any more must not pass as
            # a ticket sold after the pull (pretix revokes most of these itself, not all).
            revocations += [(h, Revocation.REVOKED) for h in dropped if h not in wanted]
        blocked = store.blocked_index()
        for code_hash, is_blocked in blocks:
            (blocked.add if is_blocked else blocked.discard)(code_hash)
        # The position's own `blocked` is what pretix's redeem checks: it wins.
        changes = [*blocks, *((h, b) for h, b in own_blocks if (h in blocked) != b)]
        mirror = Mirror(
            credentials=credentials,
            removed=removed,
            plain_codes=added,
            dropped_codes=dropped,
            cleared_codes=[h for h, _ in added],  # a position's current secret is not revoked
            revoked_codes=revocations,
            revoked_credentials=[(pid, Revocation.CANCELLED) for pid in positions.cancelled],
            restored_credentials=positions.active,
            blocks=changes,
        )
        return mirror, len(removed), len(moved)

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
            entry_after_exit=bool(data.get("allow_entry_after_exit", True)),
            addon_match=bool(data.get("addon_match", False)),
            rules=json.dumps(data.get("rules") or None, sort_keys=True),
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

    async def _orders(self, state: ListState) -> _Positions:
        """Every position of the event, read once from its orders (all states)."""
        out = _Positions()
        async for order in self._client.pages(f"{self._settings.event_api}/orders/"):
            for read in order_positions(order, state.list_id):
                out.add(read, state)
        return out

    async def _nonce_prefix(self) -> str:
        prefix = self._store.cursor(NONCE_CURSOR)
        if prefix is None:
            prefix = secrets.token_hex(8)
            await self._store.set_cursor(NONCE_CURSOR, prefix)
        return prefix

    def _queue(self) -> Iterator[JournalRow]:
        """Every unsent journal row, oldest first, read a page at a time."""
        after = 0
        while rows := self._store.unsent(UPLOAD_PAGE, after=after):
            yield from rows
            after = rows[-1].seq

    async def upload(self, limit: int = UPLOAD_BATCH) -> UploadStats:
        """Redeem admitted journal rows at pretix and record final answers; idempotent by nonce.

        At most `limit` redeem requests. Raises SyncError after the round if any request
        failed transiently (those rows stay queued); every final answer is stored first.
        """
        prefix = await self._nonce_prefix()
        pulls = self._pulls()
        # A scan before this went through two complete pulls: no position, no upload.
        settled = datetime.fromtimestamp(pulls[0] / 1000, UTC) if len(pulls) == 2 else None
        done = _Round(self._store)
        posts = 0
        window: list[tuple[JournalRow, int]] = []
        try:
            for row in self._queue():
                entry = row.entry
                if not entry.reason.admits:
                    # pretix records check-ins, not refusals; the journal keeps them.
                    await done.mark(row.seq, REPLY_SKIPPED, entry.reason.value, "skipped")
                    continue
                # The position the decision was about (an add-on for addon_match), else the
                # one a pull has mapped the secret to since.
                position = entry.credential_id
                if position is None or position < 0:
                    position = self._position(entry.code_hash)
                if position is None:
                    if entry.code_hash is None or (settled is not None and entry.at < settled):
                        await done.mark(row.seq, REPLY_UNMAPPED, UNMAPPED_DETAIL, "unmapped")
                        self._refused(row, REPLY_UNMAPPED, UNMAPPED_DETAIL)
                    else:
                        done.counts["waiting"] += 1
                    continue
                if posts >= limit:
                    break
                # Passages of one ticket go one after the other: pretix's answer to an
                # entry depends on the exit before it.
                if len(window) >= self._in_flight or any(p == position for _, p in window):
                    await self._send(prefix, window, done)
                    window = []
                    if done.in_a_row >= MAX_FAILURES_IN_A_ROW:
                        break
                posts += 1
                window.append((row, position))
            if window:
                await self._send(prefix, window, done)
        finally:
            await done.flush()
        stats = done.stats()
        if stats.sent or stats.skipped or stats.unmapped or stats.failed:
            _LOGGER.info("pretix: uploaded %s", stats)
        if done.error is not None:
            raise SyncError(
                f"{stats.failed} check-ins not uploaded (they go again later): {done.error}"
            ) from done.error
        self.state.last_upload = time.time()
        return stats

    async def _send(self, prefix: str, window: list[tuple[JournalRow, int]], done: _Round) -> None:
        """Redeem a window of check-ins (distinct positions) at once and record the answers."""
        results = await asyncio.gather(
            *(self._redeem(prefix, row, position) for row, position in window),
            return_exceptions=True,
        )
        # Slow start: one more in flight after a clean window, half after a failure (pretix
        # on SQLite answers concurrent writes with "database is locked").
        if any(isinstance(r, BaseException) for r in results):
            self._in_flight = max(1, self._in_flight // 2)
        else:
            self._in_flight = min(UPLOAD_CONCURRENCY, self._in_flight + 1)
        for (row, _), result in zip(window, results, strict=True):
            if isinstance(result, SyncError):
                # Not pretix's answer: the row stays queued and goes again, same nonce.
                done.error = result
                done.counts["failed"] += 1
                done.in_a_row += 1
                continue
            if isinstance(result, BaseException):
                raise result
            done.in_a_row = 0
            outcome, detail = _answer(*result)
            done.counts["sent"] += 1
            if outcome == REPLY_OK:
                self.state.uploaded += 1
            else:
                done.counts["refused"] += 1
                self._refused(row, outcome, detail)
            await done.mark(row.seq, outcome, detail)

    def _position(self, code_hash: bytes | None) -> int | None:
        """The pretix position a pull mapped the code to, if any."""
        if code_hash is None:
            return None
        credential = self._store.facts(PlainCode(code_hash)).credential
        if credential is None or credential.credential_id < 0:
            return None
        return credential.credential_id

    async def _redeem(
        self, prefix: str, row: JournalRow, position: int
    ) -> tuple[int, dict[str, Any]]:
        """POST one check-in to pretix with its original time and its nonce."""
        entry = row.entry
        body = {
            "type": "exit" if entry.direction is Direction.EXIT else "entry",
            "datetime": entry.at.isoformat(),
            "nonce": f"edge-{prefix}-{row.seq}",
            "force": False,
            # As the lane decided: only its ignore_unpaid admitted a pending order.
            "ignore_unpaid": entry.lane in self._ignore_unpaid,
            "questions_supported": False,
            "canceled_supported": True,
        }
        api = self._settings.event_api
        url = f"{api}/checkinlists/{self._settings.checkin_list}/positions/{position}/redeem/"
        return await self._client.post(url, body)

    def _refused(self, row: JournalRow, status: str, detail: str) -> None:
        """Keep a refused or unmappable row for /health and the status page."""
        self.state.refused += 1
        entry = row.entry
        view = _refusal_view(
            Refusal(row.seq, entry.at, entry.lane, entry.direction, entry.code_hint, status, detail)
        )
        self.state.refusals = [view, *self.state.refusals][:SHOWN_REFUSALS]

    async def run(self, interval: float) -> None:
        """Pull every `interval` seconds and upload after each pull until cancelled.

        A failed pull is tried again after a backoff, and so is an upload that met a
        transient failure; one does not hold up the other.
        """
        failures = 0
        next_pull = 0.0
        while True:
            healthy = True
            if time.monotonic() >= next_pull:
                try:
                    await self.sync()
                    next_pull = time.monotonic() + interval
                except EdgeError as err:
                    healthy = False
                    self._failed("pull", err)
            progress = self.state.uploaded + self.state.refused
            backlog = False
            try:
                stats = await self.upload()
                # A full round leaves more behind: the next one starts at once.
                backlog = stats.sent + stats.failed >= UPLOAD_BATCH
            except EdgeError as err:
                healthy = False
                self._failed("upload", err)
                if self.state.uploaded + self.state.refused > progress:
                    failures = 0  # pretix answers, only not every time: no long backoff
            if healthy:
                failures = 0
                self.state.status = "ok"
                self.state.last_error = ""
                delay = 0.0 if backlog else interval
            else:
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                self.state.status = "offline"
                _LOGGER.error("pretix sync: retry in %.0f s: %s", delay, self.state.last_error)
            await asyncio.sleep(delay)

    def _failed(self, what: str, err: EdgeError) -> None:
        self.state.last_error = f"{what}: {err}"


UNMAPPED_DETAIL = "no position of the check-in list has this code"


class _Round:
    """The answers of one upload round, stored every MARK_EVERY rows and at its end."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._marks: list[tuple[int, str, str]] = []
        self.counts: collections.Counter[str] = collections.Counter()
        self.in_a_row = 0  # transient failures since the last answer
        self.error: SyncError | None = None  # the last transient failure

    async def mark(self, seq: int, status: str, detail: str, count: str | None = None) -> None:
        """Record a final answer for a journal row (and count it under `count`)."""
        self._marks.append((seq, status, detail))
        if count:
            self.counts[count] += 1
        if len(self._marks) >= MARK_EVERY:
            await self.flush()

    async def flush(self) -> None:
        """Store the answers recorded so far."""
        if self._marks:
            marks, self._marks = self._marks, []
            await self._store.mark_sent(marks)

    def stats(self) -> UploadStats:
        """What the round did."""
        counts = self.counts
        return UploadStats(
            sent=counts["sent"],
            skipped=counts["skipped"],
            waiting=counts["waiting"],
            refused=counts["refused"],
            unmapped=counts["unmapped"],
            failed=counts["failed"],
        )


_ACCEPTED = (REPLY_OK, REPLY_SKIPPED)


def _refusal_view(refusal: Refusal) -> dict[str, object]:
    """A refused upload as /health and the status page show it."""
    return {
        "seq": refusal.seq,
        "at": refusal.at.isoformat(),
        "lane": refusal.lane,
        "direction": refusal.direction.value,
        "code": refusal.code_hint,
        "status": refusal.status,
        "reason": refusal.detail,
    }


def _answer(status: int, answer: dict[str, Any]) -> tuple[str, str]:
    """(status, detail) of pretix's final answer to a redeem: ("ok", "") or a refusal."""
    result = answer.get("status")
    if 200 <= status < 300 and result == "ok":
        return REPLY_OK, ""
    reason = answer.get("reason") or answer.get("detail")
    if not isinstance(reason, str) or not reason:
        reason = f"HTTP {status}: {json.dumps(answer)}"
    return str(result or REPLY_REFUSED)[:40], reason[:200]
