"""A real pretix (from PyPI, SQLite, loopback) against the gate's offline decisions and upload.

The first run installs pretix into .cache/pretix-venv and keeps a migrated database template
in .cache, so later runs start in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge import daemon
from edge.config import parse
from edge.core.decide import Decision, GateRules, Reason
from edge.core.facts import Direction
from edge.gate.gate import Gate
from edge.gate.lane import LaneResult
from edge.store.database import Store
from integration.pretix_server import Pretix, running_pretix
from sync.pretix.client import PretixClient
from sync.pretix.connector import PRETIX_REASONS, PretixConnector, UploadStats
from sync.pretix.resolver import PretixResolver
from sync.pretix.secrets import Ticket, sign_sig1


@pytest.fixture(scope="module")
def pretix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pretix]:
    """pretix on 127.0.0.1 with SQLite, seeded; stopped after the module."""
    with running_pretix(tmp_path_factory.mktemp("pretix")) as server:
        yield server


async def _order(client: PretixClient, positions: list[dict[str, Any]], status: str) -> list[Any]:
    """Place an order through pretix's REST API; its positions (id, secret, ...)."""
    code, answer = await client.post(
        f"{client.settings.event_api}/orders/",
        {
            "email": "guest@example.org",
            "locale": "en",
            "sales_channel": "web",
            "status": status,
            "payment_provider": "manual",
            "positions": positions,
        },
    )
    assert code == 201, answer
    return list(answer["positions"])


async def _online(client: PretixClient, checkin_list: int, secret: str) -> str:
    """pretix's own online answer to a scan: "ok" or its reason."""
    _, answer = await client.post(
        f"{client.settings.api}/checkinrpc/redeem/",
        {"secret": secret, "lists": [checkin_list], "questions_supported": False},
    )
    return "ok" if answer.get("status") == "ok" else str(answer.get("reason"))


def _replies(store: Store) -> dict[int, tuple[str, str] | None]:
    return {row.seq: store.reply(row.seq) for row in store.recent(100) if row.entry.reason.admits}


@pytest.mark.slow
async def test_offline_gate_agrees_with_pretix_and_uploads_once(
    pretix: Pretix, tmp_path: Path
) -> None:
    seed = pretix.seed
    admission, parking = seed["admission"], seed["parking"]
    now = datetime.now(UTC)
    async with aiohttp.ClientSession() as session:
        client = PretixClient(pretix.settings(), session=session)
        api = client.settings.event_api
        paid = await _order(
            client,
            [
                {"item": admission, "price": "10.00"},
                {"item": admission, "price": "10.00"},
                {"item": parking, "price": "5.00"},
                {"item": admission, "price": "10.00", "valid_until": str(now - timedelta(days=1))},
                {"item": admission, "price": "10.00", "valid_from": str(now + timedelta(days=1))},
                {"item": admission, "price": "10.00"},
            ],
            "p",
        )
        (pending,) = await _order(client, [{"item": admission, "price": "10.00"}], "n")
        (cancelled,) = await _order(client, [{"item": admission, "price": "10.00"}], "p")
        code, answer = await client.post(f"{api}/orders/{cancelled['order']}/mark_canceled/", {})
        assert code == 200, answer
        old_secret = paid[1]["secret"]
        code, reissued = await client.post(
            f"{api}/orderpositions/{paid[1]['id']}/regenerate_secrets/", {}
        )
        assert code == 200, reissued
        assert reissued["secret"] != old_secret
        code, answer = await client.post(
            f"{api}/orderpositions/{paid[5]['id']}/add_block/", {"name": "admin"}
        )
        assert code == 200, answer

        store = await Store.open(tmp_path / "edge.db")
        try:
            resolver = PretixResolver(store)
            connector = PretixConnector(store, client, resolver)
            stats = await connector.pull()
            assert (stats.keys, stats.revoked, stats.items) == (1, 2, 2)  # re-issued, cancelled
            assert stats.positions == 7  # the list's product only: 5 paid, 1 pending, 1 cancelled
            assert (stats.blocked, stats.unblocked) == (1, 0)

            # Sold after the gate's last sync: pretix_sig1 lets the gate admit it anyway.
            (late,) = await _order(client, [{"item": admission, "price": "10.00"}], "p")
            forged = sign_sig1(
                Ticket(seed="forged123", item=admission), Ed25519PrivateKey.generate()
            )
            scans = {
                "valid": paid[0]["secret"],
                "used": paid[0]["secret"],
                "revoked": old_secret,
                "reissued": reissued["secret"],
                "unknown": "qwertzuiopasdfgh",
                "forged": forged,
                "other product": paid[2]["secret"],
                "expired": paid[3]["secret"],
                "not yet valid": paid[4]["secret"],
                "unpaid": pending["secret"],
                "cancelled": cancelled["secret"],
                "blocked": paid[5]["secret"],
                "sold after sync": late["secret"],
            }
            gate = Gate(store, resolver=resolver)
            rules = GateRules(gate="Main 1")
            offline = {
                name: (await gate.admit(secret.encode(), rules, Direction.ENTRY)).decision.reason
                for name, secret in scans.items()
            }
            assert offline == {
                "valid": Reason.ADMITTED,
                "used": Reason.ALREADY_USED,
                "revoked": Reason.REVOKED,
                "reissued": Reason.ADMITTED,
                "unknown": Reason.UNKNOWN,
                "forged": Reason.BAD_SIGNATURE,
                "other product": Reason.WRONG_GATE,
                "expired": Reason.EXPIRED,
                "not yet valid": Reason.NOT_YET_VALID,
                "unpaid": Reason.UNPAID,
                "cancelled": Reason.REVOKED,  # pretix revokes a cancelled ticket's secret
                "blocked": Reason.BLOCKED,
                "sold after sync": Reason.ADMITTED,
            }
            # pretix's own answers for the same scans, online, on a list with the same rules.
            online = {
                name: await _online(client, seed["mirror"], secret)
                for name, secret in scans.items()
            }
            expected = {name: PRETIX_REASONS[r] for name, r in offline.items()}
            assert expected == online

            # Upload: the late ticket waits until a pull has mapped its secret to a position.
            assert await connector.upload() == UploadStats(sent=2, skipped=10, waiting=1)
            await connector.pull()
            assert await connector.upload() == UploadStats(sent=1, skipped=0, waiting=0)
            replies = _replies(store)
            assert list(replies.values()) == [("ok", "")] * 3

            # A retry (say the answer was lost): same nonces, pretix counts nothing twice.
            with sqlite3.connect(store.journal_path) as conn:
                conn.execute("UPDATE journal SET uploaded = 0 WHERE admitted = 1")
            assert await connector.upload() == UploadStats(sent=3, skipped=0, waiting=0)
            assert list(_replies(store).values()) == [("ok", "")] * 3
            admitted_at = {
                row.entry.credential_id: row.entry.at
                for row in store.recent(100)
                if row.entry.reason.admits
            }
            checkins: dict[int, list[datetime]] = {}
            async for position in client.pages(
                f"{api}/checkinlists/{seed['list']}/positions/", {"ignore_status": "true"}
            ):
                checkins[position["id"]] = [
                    datetime.fromisoformat(c["datetime"])
                    for c in position["checkins"]
                    if c["list"] == seed["list"]
                ]
            late_id = late["id"]
            assert checkins[paid[0]["id"]] == [admitted_at[paid[0]["id"]]]  # original time
            assert checkins[paid[1]["id"]] == [admitted_at[paid[1]["id"]]]
            assert len(checkins[late_id]) == 1
            # Its passage moved from the provisional id to the position: still used once.
            check = await gate.admit(late["secret"].encode(), rules, Direction.ENTRY)
            assert check.decision.reason is Reason.ALREADY_USED
            assert check.decision.credential_id == late_id
            assert all(not checkins[p["id"]] for p in (paid[3], paid[4], paid[5], pending))

            # A block can be lifted: the next pull lets the ticket in again.
            code, answer = await client.post(
                f"{api}/orderpositions/{paid[5]['id']}/remove_block/", {"name": "admin"}
            )
            assert code == 200, answer
            stats = await connector.pull()
            assert (stats.blocked, stats.unblocked) == (0, 1)
            unblocked = paid[5]["secret"].encode()
            check = await gate.admit(unblocked, rules, Direction.ENTRY)
            assert check.decision.reason is Reason.ADMITTED
            assert await _online(client, seed["mirror"], paid[5]["secret"]) == "ok"
        finally:
            await store.close()

        # A second gate learns the first one's check-ins from pretix on its pull.
        (fresh,) = await _order(client, [{"item": admission, "price": "10.00"}], "p")
        other = await Store.open(tmp_path / "other.db")
        try:
            resolver = PretixResolver(other)
            connector = PretixConnector(other, client, resolver)
            await connector.pull()
            south = Gate(other, resolver=resolver)
            south_rules = GateRules(gate="South 1")
            check = await south.admit(paid[0]["secret"].encode(), south_rules, Direction.ENTRY)
            assert check.decision.reason is Reason.ALREADY_USED
            assert check.decision.gate == "pretix"
            assert check.decision.at == admitted_at[paid[0]["id"]]
            # Checked in elsewhere after this gate's pull: the gate admits offline, and
            # pretix's answer to the upload says what happened; the gate records it.
            assert await _online(client, seed["list"], fresh["secret"]) == "ok"
            check = await south.admit(fresh["secret"].encode(), south_rules, Direction.ENTRY)
            assert check.decision.reason is Reason.ADMITTED
            assert await connector.upload() == UploadStats(sent=1, skipped=1, waiting=0, refused=1)
            (row,) = other.recent(1)
            assert other.reply(row.seq) == ("error", "already_redeemed")
        finally:
            await other.close()


@pytest.mark.slow
async def test_device_token_pulls_and_uploads(pretix: Pretix, tmp_path: Path) -> None:
    seed = pretix.seed
    async with aiohttp.ClientSession() as session:
        team = PretixClient(pretix.settings(), session=session)
        (ticket,) = await _order(team, [{"item": seed["admission"], "price": "10.00"}], "p")
        settings = dataclasses.replace(pretix.settings(), token=seed["device_token"], device=True)
        client = PretixClient(settings, session=session)
        store = await Store.open(tmp_path / "device.db")
        try:
            resolver = PretixResolver(store)
            connector = PretixConnector(store, client, resolver)
            stats = await connector.pull()
            assert stats.keys == 1
            assert stats.positions > 0
            check = await Gate(store, resolver=resolver).admit(
                ticket["secret"].encode(), GateRules(gate="Device 1"), Direction.ENTRY
            )
            assert check.decision.reason is Reason.ADMITTED
            assert await connector.upload() == UploadStats(sent=1, skipped=0, waiting=0)
            (row,) = store.recent(1)
            assert store.reply(row.seq) == ("ok", "")
        finally:
            await store.close()
        position = await team.get(f"{settings.event_api}/orderpositions/{ticket['id']}/")
        assert [c["list"] for c in position["checkins"]] == [seed["list"]]
        # pretix attributes the check-in to the device, not to a team token.
        assert position["checkins"][0]["device"] is not None


@pytest.mark.slow
async def test_random_secrets_are_known_from_the_pull(pretix: Pretix, tmp_path: Path) -> None:
    museum = pretix.seed["museum"]
    settings = dataclasses.replace(
        pretix.settings(), event=museum["event"], checkin_list=museum["list"]
    )
    async with aiohttp.ClientSession() as session:
        client = PretixClient(settings, session=session)
        (ticket,) = await _order(client, [{"item": museum["item"], "price": "12.00"}], "p")
        assert len(ticket["secret"]) < 100  # a random secret, not pretix_sig1
        store = await Store.open(tmp_path / "museum.db")
        try:
            resolver = PretixResolver(store)
            connector = PretixConnector(store, client, resolver)
            stats = await connector.pull()
            assert (stats.keys, stats.positions) == (0, 1)
            (late,) = await _order(client, [{"item": museum["item"], "price": "12.00"}], "p")
            gate = Gate(store, resolver=resolver)
            rules = GateRules(gate="Museum 1")
            scans = {
                "valid": ticket["secret"],
                "used": ticket["secret"],
                "unknown": "abcdefghjkmnpqrs",
                "case changed": ticket["secret"].upper(),
            }
            offline = {
                name: (await gate.admit(secret.encode(), rules, Direction.ENTRY)).decision.reason
                for name, secret in scans.items()
            }
            assert offline == {
                "valid": Reason.ADMITTED,
                "used": Reason.ALREADY_USED,
                "unknown": Reason.UNKNOWN,
                "case changed": Reason.UNKNOWN,
            }
            online = {
                name: await _online(client, museum["mirror"], secret)
                for name, secret in scans.items()
            }
            assert {name: PRETIX_REASONS[r] for name, r in offline.items()} == online
            # Random secrets carry nothing: a ticket sold after the pull is unknown offline
            # (pretix's own answer differs here) until the next pull brings it.
            late_scan = late["secret"].encode()
            check = await gate.admit(late_scan, rules, Direction.ENTRY)
            assert check.decision.reason is Reason.UNKNOWN
            await connector.pull()
            check = await gate.admit(late_scan, rules, Direction.ENTRY)
            assert check.decision.reason is Reason.ADMITTED
            assert await connector.upload() == UploadStats(sent=2, skipped=4, waiting=0)
            assert list(_replies(store).values()) == [("ok", "")] * 2
        finally:
            await store.close()


async def _until(condition: Any, what: str, seconds: float = 30.0) -> None:
    """Poll `condition` (another process's state: nothing to wait on) until true."""
    deadline = time.monotonic() + seconds
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


@pytest.mark.slow
async def test_daemon_with_pretix_section_admits_and_uploads(
    pretix: Pretix, tmp_path: Path
) -> None:
    seed = pretix.seed
    fifo = tmp_path / "scanner"
    os.mkfifo(fifo)
    (tmp_path / "pretix.token").write_text(seed["token"] + "\n")
    config = parse(
        f"""
[device]
name = "pretix-gate"
store = "edge.db"
repeat_window_ms = 0  # the second scan is a second person, not the scanner re-reading

[pretix]
url = "{pretix.url}"
organizer = "{seed["organizer"]}"
event = "{seed["event"]}"
checkin_list = {seed["list"]}
token_file = "pretix.token"
sync_interval_seconds = 5

[[scanners]]
name = "fifo"
type = "lines"
path = "{fifo}"

[[actuators]]
name = "turnstile"
type = "console"
color = "never"

[[lanes]]
name = "Main 2"
actuator = "turnstile"
entry = ["fifo"]

[metrics]
enabled = false
""",
        tmp_path / "gate.toml",
    )
    results: list[LaneResult] = []
    two = asyncio.Event()

    def collect(result: LaneResult) -> None:
        results.append(result)
        if len(results) == 2:
            two.set()

    async with aiohttp.ClientSession() as session:
        client = PretixClient(pretix.settings(), session=session)
        (ticket,) = await _order(client, [{"item": seed["admission"], "price": "10.00"}], "p")
        stop = asyncio.Event()
        running = asyncio.create_task(daemon.serve(config, stop=stop, on_result=collect))
        try:

            async def pulled() -> bool:
                # Read only: a plain connect would create an empty file before the daemon's
                # store, and the daemon rightly refuses a store file that holds nothing.
                uri = f"file:{tmp_path / 'edge.db'}?mode=ro"
                try:
                    with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
                        row = conn.execute(
                            "SELECT 1 FROM sync_cursors WHERE name = 'pretix:list'"
                        ).fetchone()
                except sqlite3.OperationalError:  # not created yet
                    return False
                return row is not None

            await _until(pulled, "the daemon's first pull")
            fd = os.open(fifo, os.O_WRONLY)
            try:
                os.write(fd, (ticket["secret"] + "\n" + ticket["secret"] + "\n").encode())
            finally:
                os.close(fd)
            await asyncio.wait_for(two.wait(), 30)
            reasons = [r.check.decision.reason for r in results if r.check is not None]
            assert reasons == [Reason.ADMITTED, Reason.ALREADY_USED]

            async def uploaded() -> bool:
                position = await client.get(
                    f"{client.settings.event_api}/orderpositions/{ticket['id']}/"
                )
                return bool(position["checkins"])

            await _until(uploaded, "the daemon's upload to pretix")
        finally:
            stop.set()
            await asyncio.wait_for(running, 30)
        position = await client.get(f"{client.settings.event_api}/orderpositions/{ticket['id']}/")
        assert [c["list"] for c in position["checkins"]] == [seed["list"]]


# -- pretix's check-in decisions: the gate against pretix's own redeem ------------------------


def _reason(decision: Decision) -> str:
    return PRETIX_REASONS[decision.reason]


@dataclass
class _Side:
    """A gate on one check-in list of an event, and the client pretix is asked through."""

    client: PretixClient
    list_id: int
    store: Store
    connector: PretixConnector
    resolver: PretixResolver

    async def pull(self) -> None:
        await self.connector.pull()

    def gate(self, at: datetime | None = None) -> Gate:
        clock = (lambda: at) if at is not None else (lambda: datetime.now(UTC))
        return Gate(self.store, clock=clock, resolver=self.resolver)

    async def online(
        self,
        secret: str,
        *,
        direction: Direction = Direction.ENTRY,
        at: datetime | None = None,
        ignore_unpaid: bool = False,
        simulate: bool = False,
        force: bool = False,
    ) -> str:
        """pretix's own answer to a scan on this list: "ok" or its reason."""
        body: dict[str, Any] = {
            "secret": secret,
            "lists": [self.list_id],
            "questions_supported": False,
            "canceled_supported": True,
            "type": direction.value,
            "ignore_unpaid": ignore_unpaid,
            "simulate": simulate,
            "force": force,
        }
        if at is not None:
            body["datetime"] = at.isoformat()
        status, answer = await self.client.post(
            f"{self.client.settings.api}/checkinrpc/redeem/", body
        )
        assert status in (200, 201, 400, 404), (status, answer)
        return "ok" if answer.get("status") == "ok" else str(answer.get("reason"))


async def _checkin_list(client: PretixClient, **config: Any) -> int:
    code, answer = await client.post(
        f"{client.settings.event_api}/checkinlists/", {"name": "edge test", **config}
    )
    assert code == 201, answer
    return int(answer["id"])


@contextlib.asynccontextmanager
async def _side(
    pretix: Pretix, session: aiohttp.ClientSession, tmp: Path, event: str, **config: Any
) -> Any:
    settings = dataclasses.replace(pretix.settings(), event=event)
    client = PretixClient(settings, session=session)
    list_id = await _checkin_list(client, **config)
    client = PretixClient(dataclasses.replace(settings, checkin_list=list_id), session=session)
    store = await Store.open(tmp / f"list{list_id}.db")
    try:
        resolver = PretixResolver(store)
        yield _Side(client, list_id, store, PretixConnector(store, client, resolver), resolver)
    finally:
        await store.close()


def _lane(**fields: Any) -> GateRules:
    return GateRules(gate="Lane 1", clock_skew=timedelta(0), **fields)


async def _twice(
    side: _Side, positions: list[dict[str, Any]], status: str = "p", **order: Any
) -> tuple[list[Any], list[Any]]:
    """The same order placed twice: one copy for pretix's answers, one for the gate's."""
    copies = []
    for _ in range(2):
        code, answer = await side.client.post(
            f"{side.client.settings.event_api}/orders/",
            {
                "email": "guest@example.org",
                "locale": "en",
                "sales_channel": "web",
                "status": status,
                "payment_provider": "manual",
                "positions": positions,
                **order,
            },
        )
        assert code == 201, answer
        copies.append(list(answer["positions"]))
    return copies[0], copies[1]


async def _steps(
    side: _Side,
    pairs: list[tuple[str, str]],
    steps: list[tuple[int, Direction]],
    lane: GateRules,
    at: datetime | None = None,
) -> tuple[list[str], list[str]]:
    """Scan each step with pretix (online, recorded) and with the gate (offline, journaled)."""
    online, offline = [], []
    gate = side.gate(at)
    for index, direction in steps:
        oracle_secret, gate_secret = pairs[index]
        online.append(
            await side.online(
                oracle_secret, direction=direction, at=at, ignore_unpaid=lane.ignore_unpaid
            )
        )
        check = await gate.admit(gate_secret.encode(), lane, direction)
        offline.append(_reason(check.decision))
    return online, offline


ENTRY, EXIT = Direction.ENTRY, Direction.EXIT


def _product_rule(*items: int) -> dict[str, Any]:
    return {
        "inList": [
            {"var": "product"},
            {"objectList": [{"lookup": ["product", str(i), "x"]} for i in items]},
        ]
    }


@pytest.mark.slow
async def test_rules_entries_and_exits_as_pretix(pretix: Pretix, tmp_path: Path) -> None:
    r = pretix.seed["rules"]
    admission = {"item": r["admission"], "variation": r["red"], "price": "10.00"}
    parking = {"item": r["parking"], "price": "5.00"}
    cases: list[tuple[str, dict[str, Any], list[dict[str, Any]], list[tuple[int, Direction]]]] = [
        # A list whose rules only admit Parking: Admission is refused with "rules".
        (
            "product rule",
            {"all_products": True, "rules": _product_rule(r["parking"])},
            [admission, parking],
            [(0, ENTRY), (1, ENTRY)],
        ),
        # entries_number < 2 with multiple entries: the third entry is refused.
        (
            "entries_number",
            {
                "all_products": True,
                "allow_multiple_entries": True,
                "rules": {"<": [{"var": "entries_number"}, 2]},
            },
            [admission],
            [(0, ENTRY), (0, ENTRY), (0, ENTRY), (0, EXIT), (0, ENTRY)],
        ),
        # pretix's default: entry after exit.
        (
            "entry after exit",
            {"all_products": True},
            [admission],
            [(0, ENTRY), (0, ENTRY), (0, EXIT), (0, ENTRY), (0, ENTRY), (0, EXIT), (0, EXIT)],
        ),
        (
            "no entry after exit",
            {"all_products": True, "allow_entry_after_exit": False},
            [admission],
            [(0, EXIT), (0, ENTRY), (0, EXIT), (0, ENTRY)],
        ),
        # Exits are answered on the list's products: Parking is not on this one.
        (
            "exit of another product",
            {"all_products": False, "limit_products": [r["admission"]]},
            [admission, parking],
            [(1, EXIT), (1, ENTRY), (0, EXIT), (0, ENTRY)],
        ),
        (
            "rules do not apply to exits",
            {"all_products": True, "rules": {"<": [{"var": "entries_number"}, 1]}},
            [admission],
            [(0, ENTRY), (0, EXIT), (0, EXIT), (0, ENTRY)],
        ),
    ]
    async with aiohttp.ClientSession() as session:
        for name, config, positions, steps in cases:
            async with _side(pretix, session, tmp_path, r["event"], **config) as side:
                oracle, mine = await _twice(side, positions)
                await side.pull()
                pairs = [(o["secret"], m["secret"]) for o, m in zip(oracle, mine, strict=True)]
                online, offline = await _steps(side, pairs, steps, _lane())
                assert offline == online, name
                assert "ok" in online, name
                assert set(online) != {"ok"}, name  # the case bites


@pytest.mark.slow
async def test_exits_answered_as_pretix_but_free_exit_journals_it(
    pretix: Pretix, tmp_path: Path
) -> None:
    r = pretix.seed["rules"]
    ticket = [{"item": r["admission"], "variation": r["blue"], "price": "10.00"}]
    async with (
        aiohttp.ClientSession() as session,
        _side(pretix, session, tmp_path, r["event"], all_products=True) as side,
    ):
        api = side.client.settings.event_api
        unpaid = await _twice(side, ticket, "n")
        cancelled = await _twice(side, ticket)
        blocked = await _twice(side, ticket)
        revoked = await _twice(side, ticket)
        for copy in cancelled:
            code, answer = await side.client.post(
                f"{api}/orders/{copy[0]['order']}/mark_canceled/", {}
            )
            assert code == 200, answer
        for copy in blocked:
            code, answer = await side.client.post(
                f"{api}/orderpositions/{copy[0]['id']}/add_block/", {"name": "admin"}
            )
            assert code == 200, answer
        old = [copy[0]["secret"] for copy in revoked]
        for copy in revoked:
            code, answer = await side.client.post(
                f"{api}/orderpositions/{copy[0]['id']}/regenerate_secrets/", {}
            )
            assert code == 200, answer
        await side.pull()
        pairs = [
            (unpaid[0][0]["secret"], unpaid[1][0]["secret"]),
            (cancelled[0][0]["secret"], cancelled[1][0]["secret"]),
            (blocked[0][0]["secret"], blocked[1][0]["secret"]),
            (old[0], old[1]),
        ]
        free = _lane(free_exit=True)
        online, offline = await _steps(side, pairs, [(i, EXIT) for i in range(4)], free)
        # A re-issued random secret is unknown to pretix (signed ones answer "revoked").
        assert online == ["unpaid", "canceled", "blocked", "invalid"]
        assert offline == online
        # The lane opened (free exit), the journal says what pretix would have said.
        reasons = [row.entry.reason for row in side.store.recent(4)][::-1]
        assert [PRETIX_REASONS[x] for x in reasons] == online
        assert not any(x.admits for x in reasons)


@pytest.mark.slow
async def test_addons_pending_validity_as_pretix(pretix: Pretix, tmp_path: Path) -> None:
    r = pretix.seed["rules"]
    now = datetime.now(UTC)
    admission = {"item": r["admission"], "variation": r["red"], "price": "10.00"}
    with_addon = [
        {**admission, "positionid": 1},
        {"item": r["vip"], "price": "20.00", "addon_to": 1, "positionid": 2},
    ]
    async with aiohttp.ClientSession() as session:
        # addon_match: the main ticket's scan checks in its VIP add-on; the add-on's own
        # secret then counts that entry.
        config = {"all_products": False, "limit_products": [r["vip"]], "addon_match": True}
        async with _side(pretix, session, tmp_path, r["event"], **config) as side:
            oracle, mine = await _twice(side, with_addon)
            await side.pull()
            pairs = [(o["secret"], m["secret"]) for o, m in zip(oracle, mine, strict=True)]
            online, offline = await _steps(
                side, pairs, [(0, ENTRY), (1, ENTRY), (0, EXIT), (1, ENTRY)], _lane()
            )
            assert online == ["ok", "already_redeemed", "ok", "ok"]
            assert offline == online
            (row,) = side.store.recent(1)
            assert row.entry.credential_id == mine[1]["id"]  # journaled (uploaded) as the add-on
            await side.connector.upload()
            assert side.store.reply(row.seq) == ("ok", "")
            api = side.client.settings.event_api
            position = await side.client.get(f"{api}/orderpositions/{mine[1]['id']}/")
            assert sorted(c["type"] for c in position["checkins"]) == ["entry", "entry", "exit"]
        # Two add-ons on the list: pretix cannot tell which one is meant.
        two = [*with_addon, {"item": r["vip"], "price": "20.00", "addon_to": 1, "positionid": 3}]
        async with _side(pretix, session, tmp_path, r["event"], **config) as side:
            oracle, mine = await _twice(side, two)
            await side.pull()
            online, offline = await _steps(
                side, [(oracle[0]["secret"], mine[0]["secret"])], [(0, ENTRY)], _lane()
            )
            assert online == offline == ["ambiguous"]

        # Pending orders: include_pending admits them only with ignore_unpaid (a lane
        # setting); valid_if_pending admits them anyway; approval pending answers unapproved.
        async with _side(
            pretix, session, tmp_path, r["event"], all_products=True, include_pending=True
        ) as side:
            pending = await _twice(side, [admission], "n")
            valid = await _twice(side, [admission], "n", valid_if_pending=True)
            approval = await _twice(side, [admission], "n", require_approval=True)
            expired = await _twice(
                side, [{**admission, "valid_until": (now - timedelta(seconds=45)).isoformat()}]
            )
            future = await _twice(
                side, [{**admission, "valid_from": (now + timedelta(seconds=45)).isoformat()}]
            )
            await side.pull()
            pairs = [
                (c[0][0]["secret"], c[1][0]["secret"])
                for c in (pending, valid, approval, expired, future)
            ]
            steps = [(i, ENTRY) for i in range(5)]
            online, offline = await _steps(side, pairs, steps, _lane())
            assert online == ["unpaid", "ok", "unapproved", "invalid_time", "invalid_time"]
            assert offline == online
            online, offline = await _steps(side, pairs[:1], [(0, ENTRY)], _lane(ignore_unpaid=True))
            assert online == offline == ["ok"]
            # The upload says what the lane decided: the pending order's entry reaches pretix.
            uploader = PretixConnector(
                side.store, side.client, side.resolver, ignore_unpaid_lanes=frozenset({"Lane 1"})
            )
            await uploader.upload()
            (row,) = side.store.recent(1)
            assert side.store.reply(row.seq) == ("ok", "")


@pytest.mark.slow
async def test_subevents_as_pretix(pretix: Pretix, tmp_path: Path) -> None:
    series = pretix.seed["series"]
    day1, day2 = series["subevents"]
    ticket = {"item": series["item"], "price": "8.00"}
    async with (
        aiohttp.ClientSession() as session,
        _side(pretix, session, tmp_path, series["event"], all_products=True, subevent=day1) as side,
    ):
        first = await _twice(side, [{**ticket, "subevent": day1}])
        second = await _twice(side, [{**ticket, "subevent": day2}])
        await side.pull()
        # Sold after the pull: signed secrets carry their date.
        late_first = await _twice(side, [{**ticket, "subevent": day1}])
        late_second = await _twice(side, [{**ticket, "subevent": day2}])
        pairs = [
            (c[0][0]["secret"], c[1][0]["secret"]) for c in (first, second, late_first, late_second)
        ]
        online, offline = await _steps(side, pairs, [(i, ENTRY) for i in range(4)], _lane())
        assert online == ["ok", "invalid", "ok", "invalid"]
        assert offline == online
        # A pending order sold after the pull: its payment cannot be known offline. A gate
        # set to wait for it answers pretix's "unpaid"; the default admits, as pretix's apps.
        late_pending = await _twice(side, [{**ticket, "subevent": day1}], "n")
        strict = PretixResolver(side.store, admit_unsynced_signed=False)
        gate = Gate(side.store, resolver=strict)
        assert await side.online(late_pending[0][0]["secret"]) == "unpaid"
        check = gate.check(late_pending[1][0]["secret"].encode(), _lane(), ENTRY)
        assert _reason(check.decision) == "unpaid"
        check = gate.check(pairs[2][1].encode(), _lane(), ENTRY)
        assert _reason(check.decision) == "unpaid"  # the price: paid ones wait for a pull too


DIFF_SEED = int(os.environ.get("EDGE_PRETIX_DIFF_SEED", "16"))
DIFF_LISTS = 5  # check-in lists, each with random flags and rules
DIFF_POSITIONS = 24  # positions, each with its own passages on every list
DIFF_ASKS = 5  # scans per position and list, at random times and directions
DIFF_PARALLEL = 6  # simulated asks in flight at once


class _RuleMaker:
    """Random check-in rules from the grammar pretix's rule editor and API accept."""

    def __init__(self, rng: random.Random, seed: dict[str, Any], base: datetime) -> None:
        self.rng = rng
        self.seed = seed
        self.base = base

    def time(self) -> dict[str, Any]:
        rng = self.rng
        form = rng.choice(["date_from", "date_to", "date_admission", "custom", "customtime"])
        if form == "custom":
            at = self.base + timedelta(minutes=rng.randint(-2000, 5000))
            return {"buildTime": ["custom", at.strftime("%Y-%m-%dT%H:%M:%S.000Z")]}
        if form == "customtime":
            return {
                "buildTime": ["customtime", f"{rng.randint(0, 23):02}:{rng.choice([0, 30]):02}"]
            }
        return {"buildTime": [form]}

    def leaf(self) -> dict[str, Any]:
        rng = self.rng
        kind = rng.randrange(7)
        op = rng.choice(["<", "<=", ">", ">=", "==", "!="])
        if kind == 0:
            return _product_rule(rng.choice([self.seed["admission"], self.seed["parking"]]))
        if kind == 1:
            variations = rng.sample([self.seed["red"], self.seed["blue"]], rng.choice([1, 1, 2]))
            return {
                "inList": [
                    {"var": "variation"},
                    {"objectList": [{"lookup": ["variation", str(v), "x"]} for v in variations]},
                ]
            }
        if kind == 2:
            name = rng.choice(["entries_number", "entries_today", "entries_days"])
            return {op: [{"var": name}, rng.randint(0, 3)]}
        if kind == 3:
            name = rng.choice(["minutes_since_last_entry", "minutes_since_first_entry"])
            return {op: [{"var": name}, rng.choice([-1, 0, 10, 60, 600, 3000])]}
        if kind == 4:
            return {op: [{"var": "now_isoweekday"}, rng.randint(1, 7)]}
        if kind == 5:
            counter = rng.choice(
                ["entries_since", "entries_before", "entries_days_since", "entries_days_before"]
            )
            return {op: [{counter: [self.time()]}, rng.randint(0, 2)]}
        tolerance = rng.choice([None, 0, 5, 30, 120])
        args: list[Any] = [{"var": "now"}, self.time()]
        if tolerance is not None:
            args.append(tolerance)
        return {rng.choice(["isAfter", "isBefore"]): args}

    def rules(self, depth: int = 0) -> dict[str, Any]:
        rng = self.rng
        if depth >= 2 or rng.random() < 0.4:
            return self.leaf()
        return {
            rng.choice(["and", "or"]): [self.rules(depth + 1) for _ in range(rng.randint(1, 3))]
        }


async def _place(client: PretixClient, positions: list[dict[str, Any]], **order: Any) -> list[Any]:
    code, answer = await client.post(
        f"{client.settings.event_api}/orders/",
        {
            "email": "guest@example.org",
            "locale": "en",
            "sales_channel": "web",
            "payment_provider": "manual",
            "positions": positions,
            **order,
        },
    )
    assert code == 201, answer
    return list(answer["positions"])


@pytest.mark.slow
async def test_generated_scans_agree_with_pretix(pretix: Pretix, tmp_path: Path) -> None:
    """Random lists, rules, tickets, passages and scan times: pretix's answer is the gate's."""
    r = pretix.seed["rules"]
    rng = random.Random(DIFF_SEED)
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)  # the event's start
    maker = _RuleMaker(rng, r, base)

    def moment(low_minutes: int, high_minutes: int) -> datetime:
        return base + timedelta(
            seconds=60 * rng.randint(low_minutes, high_minutes) + rng.randint(0, 59)
        )

    def ticket() -> dict[str, Any]:
        item = rng.choice([r["admission"], r["admission"], r["parking"]])
        position: dict[str, Any] = {"item": item, "price": "1.00"}
        if item == r["admission"]:
            position["variation"] = rng.choice([r["red"], r["blue"]])
        if rng.random() < 0.3:
            position["valid_from"] = moment(-2000, 2000).isoformat()
        if rng.random() < 0.3:
            position["valid_until"] = moment(2001, 5000).isoformat()
        return position

    async with aiohttp.ClientSession() as session:
        settings = dataclasses.replace(pretix.settings(), event=r["event"])
        client = PretixClient(settings, session=session)
        kinds: list[dict[str, Any]] = [
            {"status": "p"},
            {"status": "p"},
            {"status": "p"},
            {"status": "p"},
            {"status": "n"},
            {"status": "n", "valid_if_pending": True},
            {"status": "n", "require_approval": True},
            {"status": "p", "cancel": True},
        ]
        secrets: list[str] = []
        per_order = -(-DIFF_POSITIONS // len(kinds))
        for number, kind in enumerate(kinds):
            cancel = kind.pop("cancel", False)
            placed = await _place(client, [ticket() for _ in range(per_order)], **kind)
            if cancel:
                code, answer = await client.post(
                    f"{settings.event_api}/orders/{placed[0]['order']}/mark_canceled/", {}
                )
                assert code == 200, answer
            if number < 2:  # one position of each of the first two paid orders is blocked
                code, answer = await client.post(
                    f"{settings.event_api}/orderpositions/{placed[1]['id']}/add_block/",
                    {"name": "admin"},
                )
                assert code == 200, answer
            secrets += [p["secret"] for p in placed]

        seen: dict[str, int] = {}
        differences: list[str] = []
        for index in range(DIFF_LISTS):
            config: dict[str, Any] = {
                "all_products": rng.random() < 0.5,
                "include_pending": rng.random() < 0.5,
                "allow_multiple_entries": rng.random() < 0.4,
                "allow_entry_after_exit": rng.random() < 0.7,
                "rules": maker.rules() if rng.random() < 0.85 else {},
            }
            if not config["all_products"]:
                config["limit_products"] = rng.sample(
                    [r["admission"], r["parking"]], rng.randint(1, 2)
                )
            async with _side(pretix, session, tmp_path, r["event"], **config) as side:
                # Passages pretix recorded earlier (forced, at their own times), pulled by the gate.
                for secret in secrets:
                    for _ in range(rng.choice([0, 1, 1, 2])):
                        direction = ENTRY if rng.random() < 0.7 else EXIT
                        answer = await side.online(
                            secret, direction=direction, at=moment(-2000, 4000), force=True
                        )
                        assert answer == "ok", answer
                await side.pull()
                asks = [
                    (
                        secret,
                        moment(-1500, 5000),
                        ENTRY if rng.random() < 0.75 else EXIT,
                        _lane(ignore_unpaid=rng.random() < 0.5),
                    )
                    for secret in secrets
                    for _ in range(DIFF_ASKS)
                ]
                # simulate: pretix answers without recording, so the gate's pull still holds
                # and the asks may run side by side.
                answers: list[str] = []
                for start in range(0, len(asks), DIFF_PARALLEL):
                    answers += await asyncio.gather(
                        *(
                            side.online(
                                secret,
                                direction=direction,
                                at=at,
                                ignore_unpaid=lane.ignore_unpaid,
                                simulate=True,
                            )
                            for secret, at, direction, lane in asks[start : start + DIFF_PARALLEL]
                        )
                    )
                for (secret, at, direction, lane), online in zip(asks, answers, strict=True):
                    decision = side.gate(at).check(secret.encode(), lane, direction).decision
                    offline = _reason(decision)
                    seen[online] = seen.get(online, 0) + 1
                    if online != offline:
                        differences.append(
                            f"list {index} {config} {direction.value} at {at.isoformat()} "
                            f"unpaid ok: {lane.ignore_unpaid}: pretix {online}, gate {offline}"
                        )
    asked = sum(seen.values())
    print(
        f"\ngenerated differential (seed {DIFF_SEED}): {asked} scans, "
        f"{len(differences)} differences; pretix answered {dict(sorted(seen.items()))}"
    )
    assert asked >= 500
    # Every step of pretix's decision answered at least once: the comparison has teeth.
    assert set(seen) >= {"ok", "rules", "product", "unpaid", "unapproved", "already_redeemed"}
    assert set(seen) >= {"invalid_time", "canceled", "blocked"}
    assert not differences, "\n".join(differences[:20])
