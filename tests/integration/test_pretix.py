"""A real pretix (from PyPI, SQLite, loopback) against the gate's offline decisions and upload.

The first run installs pretix into .cache/pretix-venv and keeps a migrated database template
in .cache, so later runs start in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
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
from edge.core.decide import GateRules, Reason
from edge.core.facts import Direction
from edge.gate.gate import Gate
from edge.gate.lane import LaneResult
from edge.store.database import Store
from sync.pretix.client import PretixClient, PretixSettings
from sync.pretix.connector import PRETIX_REASONS, PretixConnector, UploadStats
from sync.pretix.resolver import PretixResolver
from sync.pretix.secrets import Ticket, sign_sig1

PRETIX_VERSION = "2026.8.0"  # the version the secret vectors in test_pretix_secrets come from
ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache"
VENV = CACHE / "pretix-venv"
TEMPLATE_DB = CACHE / f"pretix-{PRETIX_VERSION}-migrated.sqlite3"
SEED = Path(__file__).with_name("pretix_seed.py")
INSTALL_SECONDS = 900
MIGRATE_SECONDS = 600
START_SECONDS = 60


def _run(args: list[str], *, timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )
    if result.returncode:
        pytest.fail(f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def _pretix_python() -> Path:
    """pretix's interpreter, installing pretix from PyPI on first use."""
    python = VENV / "bin" / "python"
    stamp = VENV / f".installed-pretix-{PRETIX_VERSION}"
    if not stamp.exists():
        # Minutes of pip with nothing on screen look like a hang: say what runs, past pytest's
        # output capture, and how long it took.
        started = time.monotonic()
        print(
            f"\ninstalling pretix {PRETIX_VERSION} from PyPI into {VENV} (once, a few minutes)",
            file=sys.__stderr__,
            flush=True,
        )
        shutil.rmtree(VENV, ignore_errors=True)
        CACHE.mkdir(exist_ok=True)
        base = getattr(sys, "_base_executable", sys.executable)
        _run([base, "-m", "venv", str(VENV)], timeout=120)
        _run(
            [
                str(python),
                *("-m", "pip", "install", "-q", "--disable-pip-version-check"),
                f"pretix=={PRETIX_VERSION}",
            ],
            timeout=INSTALL_SECONDS,
        )
        stamp.touch()
        print(f"pretix installed in {time.monotonic() - started:.0f} s", file=sys.__stderr__)
    return python


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Pretix:
    """A running pretix and what the seed script made in it."""

    url: str
    seed: dict[str, Any]

    def settings(self, checkin_list: int | None = None) -> PretixSettings:
        return PretixSettings(
            url=self.url,
            organizer=self.seed["organizer"],
            event=self.seed["event"],
            checkin_list=checkin_list or self.seed["list"],
            token=self.seed["token"],
        )


@pytest.fixture(scope="module")
def pretix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pretix]:
    """pretix on 127.0.0.1 with SQLite, seeded; stopped after the module."""
    python = str(_pretix_python())
    home = tmp_path_factory.mktemp("pretix")
    data = home / "data"
    data.mkdir()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    config = home / "pretix.cfg"
    config.write_text(
        "[pretix]\ninstance_name=edge-test\n"
        f"url={url}\ncurrency=EUR\ndatadir={data}\n"
        f"[database]\nbackend=sqlite3\nname={data / 'db.sqlite3'}\n"
        "[django]\ndebug=off\n"
        "[mail]\nfrom=test@example.org\nhost=127.0.0.1\nport=9\n"
    )
    env = {**os.environ, "PRETIX_CONFIG_FILE": str(config)}
    env.pop("VIRTUAL_ENV", None)
    if TEMPLATE_DB.exists():
        shutil.copyfile(TEMPLATE_DB, data / "db.sqlite3")
    else:
        print("migrating a new pretix database (once, about a minute)", file=sys.__stderr__)
    _run([python, "-m", "pretix", "migrate", "--noinput"], timeout=MIGRATE_SECONDS, env=env)
    if not TEMPLATE_DB.exists():
        partial = TEMPLATE_DB.with_suffix(".partial")
        shutil.copyfile(data / "db.sqlite3", partial)
        partial.replace(TEMPLATE_DB)
    seed = json.loads(_run([python, str(SEED)], timeout=120, env=env).stdout.splitlines()[-1])
    log = (home / "server.log").open("w")
    server = subprocess.Popen(
        [python, "-m", "pretix", "runserver", "--noreload", f"127.0.0.1:{port}"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if server.poll() is not None:
                pytest.fail(f"pretix exited: {(home / 'server.log').read_text()[-3000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                pytest.fail("pretix did not listen within a minute")
            time.sleep(0.2)  # polling a port another process opens: no event to wait on
        yield Pretix(url, seed)
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


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
                "blocked": Reason.REVOKED,  # edge has no reason "blocked"; pretix answers that
                "sold after sync": Reason.ADMITTED,
            }
            # pretix's own answers for the same scans, online, on a list with the same rules.
            online = {
                name: await _online(client, seed["mirror"], secret)
                for name, secret in scans.items()
            }
            expected = {name: PRETIX_REASONS[r] for name, r in offline.items()}
            assert expected | {"blocked": "blocked"} == online

            # Upload: the late ticket waits until a pull has mapped its secret to a position.
            assert await connector.upload() == UploadStats(sent=2, skipped=10, waiting=1)
            await connector.pull()
            assert await connector.upload() == UploadStats(sent=1, skipped=0, waiting=0)
            replies = _replies(store)
            assert list(replies.values()) == [("ok", "")] * 3

            # A retry (say the answer was lost): same nonces, pretix counts nothing twice.
            with sqlite3.connect(store.path) as conn:
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
                with contextlib.closing(sqlite3.connect(tmp_path / "edge.db")) as conn:
                    try:
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
