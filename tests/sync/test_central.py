"""The reference central system: workflow operations, journal ingest, snapshots, its HTTP API."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from racing import run_at_once

from edge.core.codes import EntryPolicy, Kind, parse
from sync import protocol
from sync.central.cli import main
from sync.central.db import MIGRATIONS, SCHEMA_VERSION, CentralDB
from sync.central.errors import CentralError
from sync.central.server import serve
from sync.protocol import (
    CredentialChange,
    EnvelopeKind,
    JournalRecord,
    KeyChange,
    Revocation,
    RevokeCode,
    RevokeCredential,
)

START = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def db(central_target: str) -> Iterator[CentralDB]:
    central = CentralDB(central_target)
    central.keys.add()
    try:
        yield central
    finally:
        central.close()


def changes(db: CentralDB, since: int = 0) -> list[protocol.Change]:
    _, wire, _ = db.log.changes_since(since, 10_000)
    return [protocol.change_from_wire(c, "test") for c in wire]


def test_replace_revokes_the_old_code_and_keeps_name_and_validity(db: CentralDB) -> None:
    annual = db.catalogue.add_product(
        "Annual", kind=Kind.PASS, policy=EntryPolicy.unlimited(10), days=365
    )
    _, (card,) = db.sales.sell(annual, holder="Ada", valid_from=START)
    head = db.log.head()
    new = db.workflows.replace(card.credential_id)
    assert new != card.code
    old, fresh = parse(card.code.encode()), parse(new.encode())
    assert fresh.claims.credential_id == old.claims.credential_id  # type: ignore[union-attr]
    assert fresh.claims.validity == old.claims.validity  # type: ignore[union-attr]
    assert fresh.claims.reissue == 1  # type: ignore[union-attr]
    revoke, facts = changes(db, head)
    assert revoke == RevokeCode(old.hash, Revocation.REPLACED)
    assert isinstance(facts, CredentialChange)
    assert db.sales.credential_code(card.credential_id) == new


def test_extend_adds_the_original_duration_and_keeps_the_code(db: CentralDB) -> None:
    annual = db.catalogue.add_product(
        "Annual", kind=Kind.PASS, policy=EntryPolicy.unlimited(), days=30
    )
    _, (card,) = db.sales.sell(annual, valid_from=START)
    assert db.workflows.extend(card.credential_id) == START + timedelta(days=60, seconds=-1)
    assert db.workflows.extend(card.credential_id) == START + timedelta(days=90, seconds=-1)
    (last,) = changes(db, db.log.head() - 1)
    assert isinstance(last, CredentialChange)
    assert last.valid_until == int((START + timedelta(days=90)).timestamp()) - 1
    assert db.sales.credential_code(card.credential_id) == card.code


def test_season_renewal_dry_run_reports_and_changes_nothing(db: CentralDB) -> None:
    season = db.catalogue.add_product(
        "Season", kind=Kind.PASS, policy=EntryPolicy.unlimited(), days=300
    )
    _, sold = db.sales.sell(season, count=5, season=2025, valid_from=START)
    sale, (gone,) = db.sales.sell(season, season=2025, valid_from=START)
    db.workflows.cancel_sale(sale)
    head = db.log.head()
    report = db.workflows.renew_season(2025, 2026, batch_size=2, valid_from=START, dry_run=True)
    assert (len(report.renewed), report.batches, report.dry_run) == (5, 3, True)
    assert report.skipped == [(gone.credential_id, "cancelled, not renewed")]
    assert db.log.head() == head

    done = db.workflows.renew_season(2025, 2026, batch_size=2, valid_from=START, dry_run=False)
    assert [old for old, _ in done.renewed] == [s.credential_id for s in sold]
    renewed = changes(db, head)
    assert len(renewed) == 5
    assert all(isinstance(c, CredentialChange) and not c.paid for c in renewed)
    again = db.workflows.renew_season(2025, 2026, batch_size=2, valid_from=START, dry_run=True)
    assert again.renewed == []  # every holder is renewed already
    with pytest.raises(CentralError, match="no credentials in season 1999"):
        db.workflows.renew_season(1999, 2000, batch_size=2, valid_from=START, dry_run=True)


def test_cancel_sale_and_event_and_refusals_change_nothing(db: CentralDB) -> None:
    event = db.catalogue.add_event("Gala")
    ticket = db.catalogue.add_product("Ticket")
    sale, sold = db.sales.sell(ticket, event_id=event, count=2)
    head = db.log.head()
    assert db.workflows.cancel_sale(sale) == [s.credential_id for s in sold]
    assert changes(db, head) == [
        RevokeCredential(s.credential_id, Revocation.CANCELLED) for s in sold
    ]
    db.workflows.cancel_event(event)
    head = db.log.head()
    for refused in (
        lambda: db.workflows.cancel_sale(sale),
        lambda: db.workflows.cancel_event(event),
        lambda: db.workflows.extend(sold[0].credential_id),
        lambda: db.sales.sell(ticket, event_id=999),
        lambda: db.keys.retire(1),
        lambda: db.workflows.revoke_code("EDGE:!!"),
    ):
        with pytest.raises(CentralError):
            refused()
    assert db.log.head() == head


def test_key_rotation_is_endorsed_and_retiring_is_published(db: CentralDB) -> None:
    second = db.keys.add()
    key_id, key, chain = db.keys.signer()
    assert key_id == second
    first_public = db.keys.public_keys()[0][1]
    data = protocol.seal(EnvelopeKind.CHANGES, key_id, key, first=0, last=0, at_ms=1, changes=[],
                         chain=chain)  # fmt: skip
    envelope = protocol.open_envelope(data, {1: (first_public, False)}.get)  # not rotated yet
    assert envelope.key_id == second
    db.keys.retire(1)
    assert changes(db)[-1] == KeyChange(1, first_public, retired=True)
    # A retired key vouches for nothing: the central no longer carries its endorsement, so an
    # edge that trusts only key 1 (it missed the rotation) cannot follow it any more.
    key_id, key, chain = db.keys.signer()
    assert chain == ()
    data = protocol.seal(EnvelopeKind.CHANGES, key_id, key, first=0, last=0, at_ms=1, changes=[],
                         chain=chain)  # fmt: skip
    with pytest.raises(protocol.UntrustedError, match="does not trust"):
        protocol.open_envelope(data, {1: (first_public, False)}.get)


def test_journal_rows_are_stored_once_and_double_entries_reported(db: CentralDB) -> None:
    ticket = db.catalogue.add_product("Ticket")
    _, (sold,) = db.sales.sell(ticket)
    code_hash = parse(sold.code.encode()).hash

    def row(seq: int) -> JournalRecord:
        return JournalRecord(
            seq, 1000 + seq, "L", "entry", "admitted", admitted=True, code_hash=code_hash,
            credential_id=sold.credential_id,
        )  # fmt: skip

    assert db.journals.ingest("north", [row(1)]) == (1, 0)
    assert db.journals.ingest("north", [row(1)]) == (0, 1)  # a retried batch
    assert db.journals.double_entries() == []
    assert db.journals.ingest("south", [row(1)]) == (1, 0)  # the same ticket at a cut-off gate
    (double,) = db.journals.double_entries()
    assert (double.device, double.entries, double.allowed) == ("south", 2, 1)
    assert db.journals.count() == 2


def test_snapshot_chunks_cover_the_state_once_and_resume_at_a_cursor(db: CentralDB) -> None:
    ticket = db.catalogue.add_product("Ticket")
    _, sold = db.sales.sell(ticket, count=7, plain_codes=[f"BAR{i}" for i in range(7)])
    for item in sold[:3]:
        db.workflows.revoke_code(item.code)
    everything: list[list[object]] = []
    cursor = None
    while True:
        chunk, cursor = db.log.snapshot_chunk(cursor, 4)
        assert len(chunk) <= 4
        everything += chunk
        if cursor is None:
            break
    kinds = [c[0] for c in everything]
    assert (kinds.count("key"), kinds.count("credential"), kinds.count("plain")) == (1, 7, 7)
    assert kinds.count("revoke-code") == 3
    assert len(everything) == 18


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 1000])
def test_snapshot_pages_every_section_by_its_key_passages_by_device_and_seq(
    db: CentralDB, limit: int
) -> None:
    ticket = db.catalogue.add_product("Ticket")
    _, sold = db.sales.sell(ticket, count=5)
    for device, seqs in (("north", (1, 2, 3)), ("south", (1, 2))):
        db.journals.ingest(device, [
            JournalRecord(seq, 1000 + seq, "L", "entry", "admitted", admitted=True,
                          code_hash=None, credential_id=sold[seq].credential_id)
            for seq in seqs
        ])  # fmt: skip
    for item in sold[:2]:
        db.workflows.revoke_code(item.code)
    whole, end = db.log.snapshot_chunk(None, 10_000)
    assert end is None
    paged: list[list[object]] = []
    cursor = None
    while True:
        chunk, cursor = db.log.snapshot_chunk(cursor, limit)
        assert len(chunk) <= limit
        paged += chunk
        if cursor is None:
            break
    assert paged == whole
    passages = [c for c in whole if c[0] == "passage"]
    assert [(c[1], c[2]) for c in passages] == [
        ("north", 1), ("north", 2), ("north", 3), ("south", 1), ("south", 2)
    ]  # fmt: skip
    assert len(whole) == 1 + 5 + 2 + 5


def test_admin_cli_drives_the_workflows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "c.db")

    def run(*args: str) -> str:
        assert main(["--db", path, *args]) == 0, capsys.readouterr().err
        return capsys.readouterr().out

    run("key", "add")
    assert run("event", "add", "Gala") == "event 1\n"
    assert run("product", "add", "Pass", "--kind", "pass", "--unlimited", "5", "--days", "365")
    sold = run("sell", "1", "--season", "2025", "--count", "2", "--unpaid").split("\n")[1]
    cid, code = sold.split()
    assert run("paid", cid) == f"credential {cid} paid\n"
    assert "valid until" in run("extend", cid)
    assert run("replace", cid).startswith("EDGE:")
    assert "revoked" in run("revoke", code)
    assert "would renew 2 in 1 batch," in run("renew", "2025", "2026", "--valid-from",
                                               "2026-01-01", "--dry-run")  # fmt: skip
    assert "0 double entries" in run("doubles")
    assert "wrote" in run("bundle", "--out", str(tmp_path / "b.bundle"))
    assert main(["--db", path, "extend", "999"]) == 1
    assert "no credential 999" in capsys.readouterr().err


@pytest.fixture
async def server(db: CentralDB) -> AsyncIterator[str]:
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(db, "127.0.0.1", 0, ready.set_result))
    url = await ready
    try:
        yield url
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_the_api_answers_bad_requests_with_error_bodies(db: CentralDB, server: str) -> None:
    device = Ed25519PrivateKey.generate()
    db.devices.add("gate-1", protocol.public_bytes(device))
    head = db.log.head()

    async def post(path: str, body: bytes, key: Ed25519PrivateKey = device) -> tuple[int, object]:
        headers = protocol.sign_request(key, "gate-1", method="POST", path=path,
                                        time_ms=int(datetime.now(UTC).timestamp() * 1000),
                                        body=body)  # fmt: skip
        async with (
            aiohttp.ClientSession() as session,
            session.post(server + path, data=body, headers=headers) as response,
        ):
            assert response.headers["Edge-Protocol"] == "1"  # errors included
            return response.status, protocol.unpack(await response.read(), "answer", 1 << 24)

    status, answer = await post("/v1/hello", protocol.pack({"revision": 0}))
    assert status == 200
    assert answer["head"] == head  # type: ignore[index]
    cases = [
        ("/v1/hello", b"\xc1", device, 400, "bad-request"),
        ("/v1/changes", protocol.pack({"since": "zero"}), device, 400, "bad-request"),
        ("/v1/changes", protocol.pack({"since": head + 5}), device, 409, "revision-ahead"),
        ("/v1/journal", protocol.pack({"entries": [[1]]}), device, 400, "bad-request"),
        ("/v1/hello", protocol.pack({"revision": 0}), Ed25519PrivateKey.generate(), 401,
         "unauthenticated"),
    ]  # fmt: skip
    for path, body, key, want_status, code in cases:
        status, answer = await post(path, body, key)
        assert (status, answer["error"]) == (want_status, code), answer  # type: ignore[index]
    assert db.journals.count() == 0
    assert db.log.head() == head
    db.devices.remove("gate-1")
    status, answer = await post("/v1/hello", protocol.pack({"revision": 0}))
    assert (status, answer["error"]) == (403, "unknown-device")  # type: ignore[index]


# -- schema versions -------------------------------------------------------------------------

_OPEN_CENTRAL = "import sys; from sync.central.db import CentralDB; CentralDB(sys.argv[1]).close()"


def _central_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


@pytest.mark.parametrize("existing", [False, True], ids=["new-file", "unversioned-file"])
def test_thirty_processes_opening_one_central_database_at_once_all_succeed(
    tmp_path: Path, existing: bool
) -> None:
    path = tmp_path / "central.db"
    if existing:  # written before the schema had versions: adopted as version 1, rows kept
        conn = sqlite3.connect(path, isolation_level=None)
        conn.executescript(MIGRATIONS[0])
        conn.execute("INSERT INTO events VALUES (7, 'Opening night', 0)")
        conn.close()
    failures = run_at_once(_OPEN_CENTRAL, str(path))
    assert failures == [], "\n\n".join(failures)
    assert _central_version(path) == SCHEMA_VERSION
    if existing:
        conn = sqlite3.connect(path)
        assert conn.execute("SELECT name FROM events").fetchall() == [("Opening night",)]
        conn.close()


def test_a_newer_central_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "central.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(CentralError, match="newer than this edge-central knows"):
        CentralDB(path)
    assert _central_version(path) == SCHEMA_VERSION + 1
