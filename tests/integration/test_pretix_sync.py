"""Against a real pretix: a pull mirrors the check-in list as it is now, and the upload
neither starves behind rows pretix refuses nor loses or doubles a check-in when pretix
fails (HTTP 500, cut connections, a daemon killed mid-upload).

pretix's own answer is the oracle: `checkinrpc/redeem` with `simulate` on the gate's list
says what pretix would answer for a secret without recording a check-in.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge.core.decide import GateRules, Reason
from edge.core.errors import SyncError
from edge.core.facts import Direction
from edge.gate.gate import Gate
from edge.store.base import journal_path
from edge.store.database import Store
from edge.store.gate import JournalEntry
from integration import test_pretix
from integration.http_faults import HttpFaults
from integration.pretix_server import Pretix
from sync.pretix.client import PretixClient
from sync.pretix.connector import PRETIX_REASONS, PretixConnector
from sync.pretix.resolver import PretixResolver
from sync.pretix.secrets import secret_hash

pretix = test_pretix.pretix  # the pretix server fixture, one per module
_order = test_pretix._order  # the pretix tests' way to sell tickets

DAEMON_SECONDS = 120.0  # a real daemon's pull and upload of a few hundred check-ins


async def _oracle(client: PretixClient, checkin_list: int, secret: str) -> str:
    """What pretix answers for `secret` on the list, without checking it in."""
    code, answer = await client.post(
        f"{client.settings.api}/checkinrpc/redeem/",
        {
            "secret": secret,
            "lists": [checkin_list],
            "questions_supported": False,
            "simulate": True,
        },
    )
    assert code in (200, 201, 400, 404), answer
    return "ok" if answer.get("status") == "ok" else str(answer.get("reason"))


async def _change(client: PretixClient, order: str, body: dict[str, Any]) -> None:
    code, answer = await client.post(f"{client.settings.event_api}/orders/{order}/change/", body)
    assert code == 200, answer


async def _secret(client: PretixClient, position: int) -> str:
    row = await client.get(
        f"{client.settings.event_api}/orderpositions/{position}/",
        {"include_canceled_positions": "true"},
    )
    return str(row["secret"])


def _pretix_answer(reason: Reason, online: str) -> str:
    """pretix's word for the gate's reason (the gate shows blocked secrets as revoked)."""
    if reason is Reason.REVOKED and online == "blocked":
        return "blocked"
    return PRETIX_REASONS[reason]


async def _mirror_case(client: PretixClient, tmp_path: Path, on: int, off: int) -> None:
    """Sell, pull, change in pretix, pull again: the gate answers as pretix now does."""
    api = client.settings.event_api
    checkin_list = client.settings.checkin_list
    ticket = {"item": on, "price": "10.00"}
    (reissued,) = await _order(client, [ticket], "p")
    multi = await _order(client, [ticket, ticket], "p")
    (moved,) = await _order(client, [ticket], "p")
    (blocked,) = await _order(client, [ticket], "p")
    (cancelled,) = await _order(client, [ticket], "p")
    (kept,) = await _order(client, [ticket], "p")
    before = {
        "re-issued (old secret)": reissued["secret"],
        "cancelled position of a two-ticket order": multi[1]["secret"],
        "the other position of that order": multi[0]["secret"],
        "product changed (old secret)": moved["secret"],
        "blocked": blocked["secret"],
        "order cancelled": cancelled["secret"],
        "unchanged": kept["secret"],
    }
    store = await Store.open(tmp_path / "edge.db")
    try:
        resolver = PretixResolver(store)
        connector = PretixConnector(store, client, resolver)
        await connector.pull()
        gate = Gate(store, resolver=resolver)
        rules = GateRules(gate="Main 1")

        def offline(secret: str) -> Reason:
            return gate.check(secret.encode(), rules, Direction.ENTRY).decision.reason

        assert {name: offline(s) for name, s in before.items()} == dict.fromkeys(
            before, Reason.ADMITTED
        )

        # Changes in pretix after the gate's pull.
        code, answer = await client.post(
            f"{api}/orderpositions/{reissued['id']}/regenerate_secrets/", {}
        )
        assert code == 200, answer
        await _change(
            client, multi[1]["order"], {"cancel_positions": [{"position": multi[1]["id"]}]}
        )
        await _change(
            client,
            moved["order"],
            {"patch_positions": [{"position": moved["id"], "body": {"item": off}}]},
        )
        code, answer = await client.post(
            f"{api}/orderpositions/{blocked['id']}/add_block/", {"name": "admin"}
        )
        assert code == 200, answer
        code, answer = await client.post(f"{api}/orders/{cancelled['order']}/mark_canceled/", {})
        assert code == 200, answer
        after = {
            **before,
            "re-issued (new secret)": await _secret(client, reissued["id"]),
            "product changed (current secret)": await _secret(client, moved["id"]),
        }
        assert after["re-issued (new secret)"] != reissued["secret"]

        stats = await connector.pull()
        assert stats.off_list == 1  # the moved position, still among the orders
        gate_says = {name: offline(s) for name, s in after.items()}
        pretix_says = {name: await _oracle(client, checkin_list, s) for name, s in after.items()}
        assert {n: _pretix_answer(r, pretix_says[n]) for n, r in gate_says.items()} == pretix_says
        admitted = {n for n, r in gate_says.items() if r.admits}
        assert admitted == {
            "re-issued (new secret)",
            "the other position of that order",
            "unchanged",
        }
        # A third pull changes nothing.
        again = await connector.pull()
        assert (again.removed, again.off_list) == (0, 0)
        assert {name: offline(s) for name, s in after.items()} == gate_says
    finally:
        await store.close()


@pytest.mark.slow
async def test_pull_mirrors_the_list_signed_secrets(pretix: Pretix, tmp_path: Path) -> None:
    seed = pretix.seed
    async with aiohttp.ClientSession() as session:
        client = PretixClient(pretix.settings(), session=session)
        await _mirror_case(client, tmp_path, seed["admission"], seed["parking"])


@pytest.mark.slow
async def test_pull_mirrors_the_list_random_secrets(pretix: Pretix, tmp_path: Path) -> None:
    museum = pretix.seed["museum"]
    settings = pretix.settings()
    settings = type(settings)(
        url=settings.url,
        organizer=settings.organizer,
        event=museum["event"],
        checkin_list=museum["limited"],
        token=settings.token,
    )
    async with aiohttp.ClientSession() as session:
        client = PretixClient(settings, session=session)
        await _mirror_case(client, tmp_path, museum["item"], museum["guide"])
        # Random secrets: no plain-code mapping is left for a position off the list.
        store = await Store.open(tmp_path / "edge.db")
        try:
            positions = {
                p["id"]
                async for p in client.pages(
                    f"{settings.event_api}/checkinlists/{museum['limited']}/positions/",
                    {"ignore_status": "true"},
                )
            }
            mapped = set((await store.plain_code_index()).values())
            off_list = mapped - positions
            assert len(off_list) == 1  # the moved one, mapped so the gate says "product"
        finally:
            await store.close()


def _entry(code_hash: bytes, *, direction: Direction = Direction.ENTRY) -> JournalEntry:
    return JournalEntry(
        at=datetime.now(UTC),
        lane="Main 1",
        direction=direction,
        reason=Reason.ADMITTED,
        credential_id=None,
        code_hash=code_hash,
        code_hint="…test",
    )


async def _checkins(client: PretixClient, checkin_list: int) -> dict[int, int]:
    """pretix's check-in count on the list per position (every order state)."""
    return {
        p["id"]: sum(1 for c in p["checkins"] if c["list"] == checkin_list)
        async for p in client.pages(
            f"{client.settings.event_api}/checkinlists/{checkin_list}/positions/",
            {"ignore_status": "true"},
        )
    }


@pytest.mark.slow
async def test_refused_and_unmapped_rows_do_not_starve_a_valid_one(
    pretix: Pretix, tmp_path: Path
) -> None:
    seed = pretix.seed
    async with aiohttp.ClientSession() as session:
        client = PretixClient(pretix.settings(), session=session)
        ticket = {"item": seed["admission"], "price": "10.00"}
        (unpaid,) = await _order(client, [ticket], "n")
        (valid,) = await _order(client, [ticket], "p")
        store = await Store.open(tmp_path / "edge.db")
        try:
            # 500 admitted exits of secrets no position has (say revoked before the gate
            # knew), 500 admitted entries pretix refuses (unpaid), then one valid entry.
            for number in range(500):
                await store.record(
                    _entry(secret_hash(f"gone{number:012d}"), direction=Direction.EXIT)
                )
            for _ in range(500):
                await store.record(_entry(secret_hash(unpaid["secret"])))
            await store.record(_entry(secret_hash(valid["secret"])))
            connector = PretixConnector(store, client, PretixResolver(store))
            await connector.pull()
            await connector.pull()  # two complete pulls after a scan: no position is final
            # pretix on SQLite answers some concurrent redeems with HTTP 500 ("database is
            # locked"): those rows go again in the next round, the rest are final already.
            started = time.monotonic()
            rounds, transient = 0, []
            while store.journal_backlog() and rounds < 5:
                rounds += 1
                try:
                    await connector.upload()
                except SyncError as err:
                    transient.append(str(err))
            took = time.monotonic() - started
            print(
                f"\nupload of 1,001 rows (501 redeem requests): {took:.2f} s in {rounds} "
                f"round(s), {len(transient)} with transient pretix errors, "
                f"{501 / took:.0f} requests/s"
            )
            # No starvation: every round that pretix answered without a transient error
            # drained the whole queue, the valid check-in behind 1,000 others included.
            assert all("HTTP 5" in message for message in transient), transient
            assert rounds == len(transient) + 1
            assert store.journal_backlog() == 0
            counts = await _checkins(client, seed["list"])
            assert counts[valid["id"]] == 1
            assert counts[unpaid["id"]] == 0
            assert store.reply_counts() == {"ok": 1, "error": 500, "unmapped": 500}
            (last,) = store.refusals(1)
            assert (last.status, last.detail) == ("error", "unpaid")
            assert connector.state.refused == 1000
        finally:
            await store.close()


@pytest.mark.slow
async def test_transient_failures_are_retried_and_counted_once(
    pretix: Pretix, tmp_path: Path
) -> None:
    seed = pretix.seed
    proxy = HttpFaults(
        pretix.url, match="/redeem/", script=["500", "cut", "500-after", "cut-after", "500"]
    )
    url = await proxy.start()
    try:
        async with aiohttp.ClientSession() as session:
            direct = PretixClient(pretix.settings(), session=session)
            ticket = {"item": seed["admission"], "price": "10.00"}
            tickets = await _order(direct, [ticket] * 5, "p")
            settings = pretix.settings()
            through = PretixClient(
                type(settings)(**{**_fields(settings), "url": url}), session=session
            )
            store = await Store.open(tmp_path / "edge.db")
            try:
                resolver = PretixResolver(store)
                connector = PretixConnector(store, through, resolver)
                await connector.pull()
                gate = Gate(store, resolver=resolver)
                for t in tickets:
                    check = await gate.admit(
                        t["secret"].encode(), GateRules(gate="Main 1"), Direction.ENTRY
                    )
                    assert check.decision.reason is Reason.ADMITTED
                rounds = 0
                while store.journal_backlog():
                    rounds += 1
                    with contextlib.suppress(SyncError):
                        await connector.upload()
                    assert rounds < 10, "the upload never drained"
                # 500 and cut: nothing stored as an answer; the next round sent them again.
                assert proxy.counts["500"] == 2
                assert proxy.counts["cut"] == 1
                assert rounds >= 2
                replies = {row.seq: store.reply(row.seq) for row in store.recent(10)}
                assert set(replies.values()) == {("ok", "")}
                counts = await _checkins(direct, seed["list"])
                # pretix saw some of them twice (500-after, cut-after): the nonce made it once.
                assert [counts[t["id"]] for t in tickets] == [1] * 5
            finally:
                await store.close()
    finally:
        await proxy.stop()


def _fields(settings: Any) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in settings.__dataclass_fields__}


def _daemon_config(tmp_path: Path, pretix: Pretix, fifo: Path) -> Path:
    seed = pretix.seed
    (tmp_path / "pretix.token").write_text(seed["token"] + "\n")
    path = tmp_path / "gate.toml"
    path.write_text(
        f"""
[device]
name = "pretix-kill"
store = "edge.db"

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
name = "Main 3"
actuator = "turnstile"
entry = ["fifo"]

[metrics]
enabled = false
""",
        encoding="utf-8",
    )
    return path


@contextlib.contextmanager
def _daemon(config: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _answered(db: Path) -> int:
    """Journal rows with a stored answer (another process's store: read it directly)."""
    # Read only: a plain connect would create an empty file before the daemon's store, and
    # the daemon rightly refuses a store file that holds nothing.
    try:
        journal = journal_path(str(db))
        with contextlib.closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as conn:
            return int(conn.execute("SELECT count(*) FROM journal_replies").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def _wait_answered(db: Path, target: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until `target` journal rows have a stored answer; fails if the daemon exits first."""
    deadline = time.monotonic() + DAEMON_SECONDS
    while _answered(db) < target:
        if process.poll() is not None:
            pytest.fail(f"the daemon exited before {target} answers: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {target} answers")
        time.sleep(0.02)  # another process's progress: nothing to wait on


@pytest.mark.slow
async def test_sigkill_mid_upload_every_checkin_reaches_pretix_once(
    pretix: Pretix, tmp_path: Path
) -> None:
    seed = pretix.seed
    count = 150
    fifo = tmp_path / "scanner"
    os.mkfifo(fifo)
    config = _daemon_config(tmp_path, pretix, fifo)
    db = tmp_path / "edge.db"
    log = tmp_path / "daemon.log"
    async with aiohttp.ClientSession() as session:
        client = PretixClient(pretix.settings(), session=session)
        ticket = {"item": seed["admission"], "price": "10.00"}
        tickets: list[Any] = []
        for _ in range(count // 50):
            tickets += await _order(client, [ticket] * 50, "p")
        # The gate admitted them while pretix was out of reach (journal rows, as a lane
        # writes them); the daemon maps them on its first pull and uploads them.
        store = await Store.open(db)
        try:
            for t in tickets:
                await store.record(_entry(secret_hash(t["secret"])))
        finally:
            await store.close()

        kills = 0
        for _ in range(2):
            with _daemon(config, log) as process:
                # Answers are stored every MARK_EVERY rows: the kill comes with up to that
                # many check-ins in pretix that the store has no answer for.
                target = _answered(db) + 1
                await asyncio.to_thread(_wait_answered, db, target, process, log)
                process.send_signal(signal.SIGKILL)
                process.wait()
                kills += 1
        assert 0 < _answered(db) < count, "the kills were not mid-upload"
        started = time.monotonic()
        with _daemon(config, log) as process:
            await asyncio.to_thread(_wait_answered, db, count, process, log)
            process.send_signal(signal.SIGTERM)
            process.wait(30)
        retried = log.read_text().count("go again later")
        print(
            f"\nSIGKILL mid-upload: {count} check-ins, 2 kills, the rest drained in "
            f"{time.monotonic() - started:.1f} s, {retried} rounds with transient failures"
        )
        counts = await _checkins(client, seed["list"])
        assert [counts[t["id"]] for t in tickets] == [1] * count
        assert kills == 2
