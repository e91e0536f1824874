"""Per-venue partitioning: a device of a venue holds only its venue's and the group's facts."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from conftest import KEY_ID, PRIVATE
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.core.codes import Kind, parse
from edge.core.errors import SyncError
from edge.store.database import Store
from edge.store.sync import REPLACE_CURSOR, REVISION_CURSOR, VENUE_CURSOR
from sync import protocol
from sync.central import bundle
from sync.central.catalogue import Sold
from sync.central.changelog import VENUE_CHANGES_SQL, snapshot_query
from sync.central.cli import main
from sync.central.db import MIGRATIONS, CentralDB, connect
from sync.central.errors import CentralError
from sync.central.postgres import placeholders
from sync.central.server import serve
from sync.client.bulk import BulkWorker, Opened
from sync.client.bundle import import_bundle
from sync.client.replicator import Replicator
from sync.client.settings import SyncConfig
from sync.protocol import (
    CredentialChange,
    EnvelopeKind,
    JournalRecord,
    KeyChange,
    Revocation,
    RevokeCode,
)

WAIT = 15.0


@dataclass
class Group:
    """Two venues' events and sales, and a group pass valid at both."""

    db: CentralDB
    a: list[Sold]
    b: list[Sold]
    group: list[Sold]


def _group(db: CentralDB) -> Group:
    db.keys.add()
    ticket = db.catalogue.add_product("Day ticket")
    season = db.catalogue.add_product("Group pass", kind=Kind.PASS, days=365)
    arena = db.catalogue.add_event("Cup final", venue="arena")
    hall = db.catalogue.add_event("Concert", venue="hall")
    _, a = db.sales.sell(ticket, event_id=arena, count=3)
    _, b = db.sales.sell(ticket, event_id=hall, count=4, plain_codes=["B1", "B2", "B3", "B4"])
    _, group = db.sales.sell(season, count=2)
    return Group(db, a, b, group)


@pytest.fixture
def group(central_target: str) -> Iterator[Group]:
    db = CentralDB(central_target)
    try:
        yield _group(db)
    finally:
        db.close()


def _ids(changes: list[list[object]]) -> set[int]:
    out = set()
    for wire in changes:
        change = protocol.change_from_wire(wire, "change")
        if isinstance(change, CredentialChange):
            out.add(change.credential_id)
    return out


def _cids(sold: list[Sold]) -> set[int]:
    return {s.credential_id for s in sold}


def test_a_venue_snapshot_holds_its_own_and_the_groups_credentials(group: Group) -> None:
    db = group.db
    full, _ = db.log.snapshot_chunk(None, 1000)
    arena, _ = db.log.snapshot_chunk(None, 1000, "arena")
    hall, _ = db.log.snapshot_chunk(None, 1000, "hall")
    assert _ids(full) == _cids(group.a) | _cids(group.b) | _cids(group.group)
    assert _ids(arena) == _cids(group.a) | _cids(group.group)
    assert _ids(hall) == _cids(group.b) | _cids(group.group)
    kinds = [type(protocol.change_from_wire(c, "c")).__name__ for c in arena]
    assert "KeyChange" in kinds
    assert "PlainCodeChange" not in kinds  # the hall's plain codes stay at the hall
    assert len(hall) == len(arena) + 1 + 4  # one more credential, and its four plain codes
    # Paged in small chunks, the same items.
    items, cursor = [], None
    while True:
        chunk, cursor = db.log.snapshot_chunk(cursor, 2, "arena")
        items += chunk
        if cursor is None:
            break
    assert items == arena


def test_venue_changes_span_the_whole_range_and_leave_other_venues_out(group: Group) -> None:
    db = group.db
    before = db.log.head()
    db.workflows.revoke_code(group.b[0].code)
    db.workflows.revoke_code(group.group[0].code)
    db.workflows.revoke_code(group.a[0].code)
    head = db.log.head()
    first, last, revisions, changes, at = db.log.venue_changes_since(before, 100, "arena")
    assert (first, last, at) == (before, head, head)
    assert revisions == [before + 2, before + 3]  # the group pass, then arena's ticket
    hashes = [protocol.change_from_wire(c, "c") for c in changes]
    assert hashes == [
        RevokeCode(parse(group.group[0].code.encode()).hash, Revocation.REVOKED),
        RevokeCode(parse(group.a[0].code.encode()).hash, Revocation.REVOKED),
    ]
    # A limit ends the range at the last change it holds; the next pull goes on from there.
    first, last, revisions, changes, _ = db.log.venue_changes_since(before, 1, "arena")
    assert (last, revisions) == (before + 2, [before + 2])
    # Nothing of the venue's since: an empty envelope still reaches the head.
    assert db.log.venue_changes_since(head, 100, "arena") == (head, head, [], [], head)
    # Without a venue: every change, as before.
    assert len(db.log.changes_since(before, 100)[1]) == 3
    # A plain code revoked by its text concerns the venue it was given for.
    db.workflows.revoke_code("B2")
    assert db.log.venue_changes_since(head, 100, "arena")[2] == []
    assert db.log.venue_changes_since(head, 100, "hall")[2] == [head + 1]


def _kinds(db: CentralDB, venue: str) -> list[str]:
    changes = db.log.snapshot_chunk(None, 1000, venue)[0]
    return [type(protocol.change_from_wire(c, "c")).__name__ for c in changes]


def test_a_gates_passages_reach_only_its_venue(group: Group) -> None:
    db = group.db
    public = protocol.public_bytes(Ed25519PrivateKey.generate())
    db.devices.add("hall-gate", public, "hall")
    cid = group.b[0].credential_id
    record = JournalRecord(1, 1, "lane-1", "entry", "admitted", admitted=True, code_hash=None,
                           credential_id=cid)  # fmt: skip
    assert db.journals.ingest("hall-gate", [record]) == (1, 0)
    assert "Passage" in _kinds(db, "hall")
    assert "Passage" not in _kinds(db, "arena")


def test_bad_venue_names_are_refused_and_change_nothing(group: Group) -> None:
    db = group.db
    events = db.catalogue.events()
    with pytest.raises(CentralError, match="venue name"):
        db.catalogue.add_event("Bad", venue="")
    with pytest.raises(CentralError, match="venue"):
        db.catalogue.add_event("Bad", venue="x" * 65)
    assert db.catalogue.events() == events
    assert [e[1] for e in db.catalogue.events("hall")] == ["Concert"]
    with pytest.raises(CentralError, match="no device"):
        db.devices.move("nobody", "hall")


def test_an_envelope_with_revisions_applies_only_what_is_newer() -> None:
    changes = [KeyChange(KEY_ID, PRIVATE.public_key().public_bytes_raw(), retired=False)] * 3
    body = protocol.seal(
        EnvelopeKind.CHANGES, KEY_ID, PRIVATE, first=10, last=20, at_ms=1,
        changes=changes, revisions=[12, 15, 19],
    )  # fmt: skip
    keys = {KEY_ID: (PRIVATE.public_key().public_bytes_raw(), False)}
    opened = protocol.open_envelope(body, keys.get)
    assert opened.revisions == (12, 15, 19)
    assert len(opened.since(10)) == 3
    assert len(opened.since(12)) == 2
    assert len(opened.since(18)) == 1
    assert opened.since(19) == ()
    for bad in ([12, 12, 19], [9, 15, 19], [12, 15, 21], [12, 15]):
        body = protocol.seal(
            EnvelopeKind.CHANGES, KEY_ID, PRIVATE, first=10, last=20, at_ms=1,
            changes=changes, revisions=bad,
        )  # fmt: skip
        with pytest.raises(protocol.ProtocolError, match="revisions"):
            protocol.open_envelope(body, keys.get)


# -- real gates against a real server -------------------------------------------------------


async def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def _held(path: Path) -> tuple[set[int], set[bytes]]:
    """(credential ids, revoked code hashes) a gate's store holds."""
    conn = sqlite3.connect(path)
    try:
        credentials = {int(r[0]) for r in conn.execute("SELECT credential_id FROM credentials")}
        revoked = {bytes(r[0]) for r in conn.execute("SELECT code_hash FROM revoked_codes")}
    finally:
        conn.close()
    return credentials, revoked


def _hash(sold: Sold) -> bytes:
    return parse(sold.code.encode()).hash


@dataclass
class Gate:
    name: str
    path: Path
    store: Store
    client: Replicator


@pytest.fixture
async def served(central_target: str) -> AsyncIterator[tuple[Group, str]]:
    db = CentralDB(central_target)
    group = _group(db)
    server_db = CentralDB(central_target)
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(serve(server_db, "127.0.0.1", 0, ready.set_result))
    try:
        yield group, await ready
    finally:
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server
        server_db.close()
        db.close()


async def _gate(
    tmp_path: Path, db: CentralDB, url: str, name: str, venue: str | None, *, channel: bool
) -> Gate:
    identity = Ed25519PrivateKey.generate()
    db.devices.add(name, protocol.public_bytes(identity), venue)
    path = tmp_path / f"{name}.db"
    store = await Store.open(path)
    await store.put_keys(list(db.keys.public_keys()))
    settings = SyncConfig(
        url=url, channel=channel, push_listen=not channel, push_port=0,
        pull_interval_seconds=0.5 if name.endswith("moved") else 3600, timeout_seconds=5,
    )  # fmt: skip
    return Gate(name, path, store, Replicator(settings, store, device=name, identity=identity))


async def test_a_gate_holds_and_hears_only_its_venue_and_the_group(
    served: tuple[Group, str], tmp_path: Path
) -> None:
    group, url = served
    db = group.db
    gates = [
        await _gate(tmp_path, db, url, "arena-channel", "arena", channel=True),
        await _gate(tmp_path, db, url, "arena-push", "arena", channel=False),
        await _gate(tmp_path, db, url, "hall-channel", "hall", channel=True),
        await _gate(tmp_path, db, url, "everywhere", None, channel=True),
    ]
    arena, arena_push, hall, everywhere = gates
    tasks = [asyncio.create_task(g.client.run()) for g in gates]
    try:
        head = db.log.head()
        for g in gates:
            await _until(lambda g=g: g.client.state.revision == head, f"{g.name} bootstrap")  # type: ignore[misc]
        await _until(lambda: arena.client.state.channel and hall.client.state.channel, "channels")
        await _until(lambda: arena_push.client.listening_url is not None, "the push listener")
        for g in (arena, arena_push):
            assert _held(g.path)[0] == _cids(group.a) | _cids(group.group)
        assert _held(hall.path)[0] == _cids(group.b) | _cids(group.group)
        assert _held(everywhere.path)[0] == _cids(group.a) | _cids(group.b) | _cids(group.group)

        # (An inbound push that arrives while a gate bootstraps counts as a gap.)
        gaps = {g.name: g.client.state.pushes.get("gap", 0) for g in gates}
        # A revocation at the hall: its gate stores it; the arena's gates only move on.
        db.workflows.revoke_code(group.b[1].code)
        head = db.log.head()
        for g in gates:
            await _until(lambda g=g: g.client.state.revision == head, f"{g.name} at {head}")  # type: ignore[misc]
        assert _hash(group.b[1]) in _held(hall.path)[1]
        assert _hash(group.b[1]) in _held(everywhere.path)[1]
        for g in (arena, arena_push):
            assert _held(g.path)[1] == set()
        # A group pass revoked: every gate stores it, through the channel or an inbound push.
        db.workflows.revoke_code(group.group[1].code)
        head = db.log.head()
        for g in gates:
            await _until(lambda g=g: g.client.state.revision == head, f"{g.name} at {head}")  # type: ignore[misc]
            assert _hash(group.group[1]) in _held(g.path)[1]
        for g in (arena, arena_push):
            assert _held(g.path)[1] == {_hash(group.group[1])}
            # Pushed, never a gap: the envelopes span the hall's revisions too.
            assert g.client.state.pushes.get("gap", 0) == gaps[g.name], g.client.state.pushes
        # The channel carried both (an inbound push may find the gate there already: stale).
        assert arena.client.state.pushes.get("applied", 0) >= 2, arena.client.state.pushes
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with pytest.raises(asyncio.CancelledError):
                await task
        for g in gates:
            await g.store.close()


@pytest.mark.parametrize("channel", [True, False], ids=["channel", "inbound-push"])
async def test_a_gate_moved_to_another_venue_bootstraps_its_new_venue(
    served: tuple[Group, str], tmp_path: Path, channel: bool
) -> None:
    group, url = served
    db = group.db
    gate = await _gate(tmp_path, db, url, "gate-moved", "arena", channel=channel)
    task = asyncio.create_task(gate.client.run())
    try:
        head = db.log.head()
        await _until(lambda: gate.client.state.revision == head, "the bootstrap")
        assert not _cids(group.b) & _held(gate.path)[0]
        db.devices.move("gate-moved", "hall")
        # A change right after the move: neither the channel nor a push sends it (they would
        # send it on top of the arena's state); the next pull is refused as revision-ahead
        # and the gate loads the hall's snapshot, this revocation included.
        db.workflows.revoke_code(group.b[2].code)
        head = db.log.head()
        await _until(lambda: _cids(group.b) <= _held(gate.path)[0], "the hall's credentials")
        await _until(lambda: gate.client.state.revision == head, "the hall's revision")
        assert _hash(group.b[2]) in _held(gate.path)[1]
        assert not db.devices.must_bootstrap("gate-moved")
        assert gate.store.cursor(VENUE_CURSOR) == "hall"  # the hall's bundles only, from now
        # From then on it hears the hall's changes as any hall gate does.
        db.workflows.revoke_code(group.b[3].code)
        head = db.log.head()
        await _until(lambda: gate.client.state.revision == head, "the next hall revocation")
        assert _hash(group.b[3]) in _held(gate.path)[1]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await gate.store.close()


def test_admin_cli_adds_lists_and_moves_by_venue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "c.db")

    def run(*args: str) -> str:
        assert main(["--db", path, *args]) == 0, capsys.readouterr().err
        return capsys.readouterr().out

    public = base64.b64encode(protocol.public_bytes(Ed25519PrivateKey.generate())).decode()
    run("key", "add")
    assert run("event", "add", "Cup final", "--venue", "arena") == "event 1\n"
    assert run("event", "add", "Group day") == "event 2\n"
    assert run("event", "list") == "1  Cup final  venue arena\n2  Group day  venue -\n"
    assert run("event", "list", "--venue", "arena") == "1  Cup final  venue arena\n"
    assert (
        run("device", "add", "g1", public, "--venue", "arena") == "device g1 registered at arena\n"
    )
    assert run("device", "add", "g2", public) == "device g2 registered\n"
    assert run("device", "list", "--venue", "arena").startswith("g1  revision 0")
    assert "venue -" in run("device", "list").splitlines()[1]
    assert "moved to hall" in run("device", "move", "g1", "--venue", "hall")
    assert run("device", "list", "--venue", "arena") == ""
    assert "venue hall" in run("device", "list", "--venue", "hall")
    # Bad input: a clear error, nothing changed.
    assert main(["--db", path, "event", "add", "Bad", "--venue", ""]) == 1
    assert "venue name" in capsys.readouterr().err
    assert main(["--db", path, "device", "move", "nobody", "--venue", "hall"]) == 1
    assert "no device 'nobody'" in capsys.readouterr().err
    assert len(run("event", "list").splitlines()) == 2
    # Bundles for a venue's gates: by venue, or by device (its venue, or every venue's).
    out = str(tmp_path / "g.bundle")
    assert run("bundle", "--out", out, "--device", "g1").endswith("of venue hall and the group\n")
    assert run("bundle", "--out", out, "--venue", "arena").endswith("venue arena and the group\n")
    assert run("bundle", "--out", out, "--device", "g2").endswith("of every venue\n")
    assert main(["--db", path, "bundle", "--out", out, "--device", "nobody"]) == 1
    assert "no device 'nobody'" in capsys.readouterr().err
    assert main(["--db", path, "bundle", "--out", out, "--venue", "x" * 65]) == 1
    assert "venue name" in capsys.readouterr().err


def test_a_log_written_before_venues_counts_as_group_wide(central_target: str) -> None:
    old = connect(central_target)
    try:
        assert old.migrate(MIGRATIONS[:1]) == 0
        change = CredentialChange(5, 0, 3, 1, 0, 1, 0, None, None, 0, paid=True)
        wire = protocol.pack(protocol.change_to_wire(change))
        with old.transaction() as conn:
            conn.execute("INSERT INTO changes VALUES (1, 0, ?)", (wire,))
            conn.execute("INSERT INTO view_credentials VALUES (5, ?)", (wire,))
    finally:
        old.close()
    db = CentralDB(central_target)  # migration 2 adds the venue columns, NULL for old rows
    try:
        assert _ids(db.log.snapshot_chunk(None, 100, "arena")[0]) == {5}
        assert db.log.venue_changes_since(0, 100, "arena")[2] == [1]
    finally:
        db.close()


def _plan(target: str, sql: str, args: tuple[object, ...]) -> str:
    """The query plan of `sql` on the central database `target`, as text."""
    if target.startswith("postgresql://"):

        async def explain() -> str:
            conn = await asyncpg.connect(target)
            try:
                await conn.execute("ANALYZE")
                rows = await conn.fetch(f"EXPLAIN {placeholders(sql)}", *args)
            finally:
                await conn.close()
            return "\n".join(str(r[0]) for r in rows)

        return asyncio.run(explain())
    conn = sqlite3.connect(target)
    try:
        conn.execute("ANALYZE")
        return "\n".join(str(r[-1]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args))
    finally:
        conn.close()


def test_a_venues_pull_and_snapshot_read_by_the_venue_index(central_target: str) -> None:
    db = CentralDB(central_target)
    try:
        events = [db.catalogue.add_event(f"Day {v}", venue=f"venue-{v}") for v in range(20)]
        db.log.publish(
            [
                CredentialChange(cid, 0, events[cid % 20], 10, 0, 1, 0, None, None, 0, paid=True)
                for cid in range(1, 20_001)
            ]
        )
        db.log.publish([KeyChange(KEY_ID, PRIVATE.public_key().public_bytes_raw(), retired=False)])
        head = db.log.head()
        # What the index gives: the venue's and the group's changes, nothing else.
        first, last, revisions, changes, _ = db.log.venue_changes_since(0, 5_000, "venue-3")
        assert (first, last, len(changes)) == (0, head, 1_000 + 1)
        assert revisions[0] == 3
        assert revisions[-1] == head
    finally:
        db.close()
    pull = _plan(central_target, VENUE_CHANGES_SQL, ("venue-3", 100, head, 100, head, 5_000))
    snapshot = _plan(central_target, *snapshot_query("credentials", 100, "venue-3", 5_000))
    for plan, table in ((pull, "changes"), (snapshot, "view_credentials")):
        assert f"{table}_venue" in plan, plan
        # Neither a scan of the table (SQLite: SCAN, PostgreSQL: Seq Scan) nor of its key.
        assert f"SCAN {table}" not in plan, plan
        assert "Seq Scan" not in plan, plan
        assert f"{table}_pkey" not in plan, plan
        print(plan)


# -- offline bundles by venue -----------------------------------------------------------------


async def _bootstrapped(gate: Gate, db: CentralDB) -> None:
    task = asyncio.create_task(gate.client.run())
    try:
        head = db.log.head()
        await _until(lambda: gate.client.state.revision == head, f"{gate.name} bootstrap")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_gate_imports_only_bundles_of_its_own_venue(
    served: tuple[Group, str], tmp_path: Path
) -> None:
    group, url = served
    db = group.db
    gate = await _gate(tmp_path, db, url, "hall-gate", "hall", channel=False)
    try:
        await _bootstrapped(gate, db)
        assert gate.store.cursor(VENUE_CURSOR) == "hall"  # the snapshot said whose it is
        before = db.log.head()
        db.workflows.revoke_code(group.a[0].code)
        db.workflows.revoke_code(group.b[0].code)
        db.workflows.revoke_code(group.group[0].code)
        head = db.log.head()
        paths = {name: tmp_path / f"{name}.bundle" for name in ("arena", "hall", "all")}
        for name, path in paths.items():
            assert bundle.write(db, path, before, None if name == "all" else name) == (
                before,
                head,
            )
        opened = protocol.open_envelope(paths["hall"].read_bytes(), _keys(db))
        assert (opened.venue, opened.revisions) == ("hall", (before + 2, before + 3))

        # The arena's bundle, or every venue's, on a hall gate: refused, nothing changed.
        held = _held(gate.path)
        for name, whose in (("arena", "venue 'arena'"), ("all", "every venue")):
            with pytest.raises(SyncError, match=f"holds {whose}'s changes but .* 'hall'"):
                await import_bundle(gate.store, paths[name].read_bytes(), device="hall-gate")
            assert _held(gate.path) == held
            assert gate.store.cursor(REVISION_CURSOR) == str(before)
        # Relabelled for the hall without the central's key: the signature fails.
        forged = _relabelled(paths["arena"].read_bytes(), "hall")
        with pytest.raises(protocol.UntrustedError):
            await import_bundle(gate.store, forged, device="hall-gate")
        assert _held(gate.path) == held

        # Its own venue's: the hall's revocation and the group's, nothing of the arena.
        result = await import_bundle(gate.store, paths["hall"].read_bytes(), device="hall-gate")
        assert result == ("applied", before, head)
        assert _held(gate.path) == (held[0], {_hash(group.b[0]), _hash(group.group[0])})
        # The same bundle again, or an older one: nothing changes.
        again = await import_bundle(gate.store, paths["hall"].read_bytes(), device="hall-gate")
        assert again == ("stale", head, head)
        assert _held(gate.path) == (held[0], {_hash(group.b[0]), _hash(group.group[0])})

        # A new store takes the venue of its first bundle, and then keeps to it.
        fresh = await Store.open(tmp_path / "fresh.db")
        try:
            await fresh.put_keys(list(db.keys.public_keys()))
            bundle.write(db, paths["hall"], 0, "hall")
            assert (await import_bundle(fresh, paths["hall"].read_bytes(), device="new"))[0] == (
                "applied"
            )
            assert fresh.cursor(VENUE_CURSOR) == "hall"
            with pytest.raises(SyncError, match="every venue's changes"):
                await import_bundle(fresh, paths["all"].read_bytes(), device="new")
        finally:
            await fresh.close()
        assert _held(tmp_path / "fresh.db") == _held(gate.path)
    finally:
        await gate.store.close()


def _keys(db: CentralDB) -> Callable[[int], tuple[bytes, bool] | None]:
    keys = {kid: (public, retired) for kid, public, retired in db.keys.public_keys()}
    return keys.get


def _relabelled(data: bytes, venue: str) -> bytes:
    outer = protocol.unpack(data, "bundle", 1 << 26)
    body = protocol.unpack(outer["body"], "body", 1 << 26)
    body["venue"] = venue
    outer["body"] = protocol.pack(body)
    return protocol.pack(outer)


async def test_a_replacing_bootstrap_cut_short_resumes_without_losing_what_it_brought(
    served: tuple[Group, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    group, url = served
    db = group.db
    gate = await _gate(tmp_path, db, url, "gate-moved", "arena", channel=False)
    await _bootstrapped(gate, db)
    db.devices.move("gate-moved", "hall")
    # Chunks of 3 items; the second fetch of the new venue's snapshot fails once, after the
    # first chunk is written: the next attempt resumes from its cursor, and must not mark
    # again what the first chunk brought (it would be swept at the end).
    monkeypatch.setattr("sync.client.replicator.SNAPSHOT_LIMIT", 3)
    fetch = gate.client._snapshot_chunk
    calls: list[object] = []

    async def cut_short(
        worker: BulkWorker, pinned: int | None, cursor: tuple[str, object] | None
    ) -> Opened:
        calls.append(cursor)
        if len(calls) == 2:
            raise aiohttp.ClientConnectionError("the network went away")
        return await fetch(worker, pinned, cursor)

    monkeypatch.setattr(gate.client, "_snapshot_chunk", cut_short)
    task = asyncio.create_task(gate.client.run())
    try:
        head = db.log.head()
        await _until(
            lambda: (
                gate.store.cursor(VENUE_CURSOR) == "hall"
                and gate.client.state.revision == head
                and not gate.store.cursor(REPLACE_CURSOR)
            ),
            "the hall's state",
        )
        assert len(calls) > 3  # it was cut short, then resumed
        assert calls[2] is not None  # from where it was, not from the start
        assert _held(gate.path)[0] == _cids(group.b) | _cids(group.group)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await gate.store.close()
