"""The edge's sync client against hostile pushes, replays and gaps, with a real store and port."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import KEY_ID, PRIVATE, mint_code, public_bytes, ticket
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.cli import main
from edge.core.codes import Kind, PolicyKind, parse
from edge.core.decide import GateRules, Reason
from edge.core.errors import SyncError
from edge.core.facts import Direction
from edge.gate.gate import Gate
from edge.store.database import Store
from sync import protocol
from sync.central.db import CentralDB
from sync.central.server import serve
from sync.client.bundle import import_bundle
from sync.client.replicator import BULK_BYTES, Replicator
from sync.client.settings import SyncConfig
from sync.client.state import REVISION_CURSOR
from sync.protocol import (
    CancelEvent,
    CredentialChange,
    EnvelopeKind,
    Passage,
    Revocation,
    RevokeCode,
)

RULES = GateRules(gate="lane-1")
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def envelope(changes: list[object], first: int, key: Ed25519PrivateKey = PRIVATE) -> bytes:
    return protocol.seal(
        EnvelopeKind.CHANGES, KEY_ID, key, first=first, last=first + len(changes), at_ms=1,
        changes=changes,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.fixture
async def replicator(store: Store) -> AsyncIterator[Replicator]:
    """A running client whose central system is unreachable: only pushes arrive."""
    await store.set_cursor(REVISION_CURSOR, "0")
    settings = SyncConfig(url="http://127.0.0.1:9", push_port=0, timeout_seconds=0.5)
    client = Replicator(settings, store, device="gate-1", identity=Ed25519PrivateKey.generate())
    task = asyncio.create_task(client.run())
    try:
        await _until(lambda: client.listening_url is not None, "the push server to listen")
        yield client
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def push(client: Replicator, body: bytes) -> tuple[int, dict[str, object]]:
    assert client.listening_url
    async with (
        aiohttp.ClientSession() as session,
        session.post(client.listening_url, data=body) as r,
    ):
        assert r.headers["Edge-Protocol"] == "1"
        return r.status, protocol.unpack(await r.read(), "answer", 1 << 16)


def decision(store: Store, code: str) -> Reason:
    return (
        Gate(store, clock=lambda: NOW).check(code.encode(), RULES, Direction.ENTRY).decision.reason
    )


async def test_pushes_apply_in_order_and_replays_change_nothing(
    store: Store, replicator: Replicator
) -> None:
    code = mint_code(ticket(1))
    revoke = RevokeCode(parse(code.encode()).hash, Revocation.REVOKED)
    assert decision(store, code) is Reason.ADMITTED
    status, answer = await push(replicator, envelope([revoke], 0))
    assert (status, answer) == (200, {"revision": 1, "status": "applied"})
    assert decision(store, code) is Reason.REVOKED
    assert store.cursor(REVISION_CURSOR) == "1"

    before = store.stats()
    status, answer = await push(replicator, envelope([revoke], 0))
    assert answer == {"revision": 1, "status": "stale"}
    assert store.stats() == before

    # Revisions 3..: revision 2 is missing, so nothing is applied and a pull is wanted.
    status, answer = await push(replicator, envelope([CancelEvent(42)], 2))
    assert answer == {"revision": 1, "status": "gap"}
    assert decision(store, mint_code(ticket(2))) is Reason.ADMITTED

    # An envelope overlapping what the store has applies only the new part.
    status, answer = await push(replicator, envelope([revoke, CancelEvent(42)], 0))
    assert answer == {"revision": 2, "status": "applied"}
    assert decision(store, mint_code(ticket(2))) is Reason.EVENT_CANCELLED
    assert replicator.state.pushes == {"applied": 2, "stale": 1, "gap": 1}


async def test_large_pushes_go_through_the_bulk_worker_with_the_same_answers(
    store: Store, replicator: Replicator
) -> None:
    """Pushes over BULK_BYTES are verified and written by the worker process, in order."""
    codes = [mint_code(ticket(100 + n)) for n in range(3)]
    filler = [RevokeCode(os.urandom(16), Revocation.REVOKED) for _ in range(3_000)]
    revokes = [RevokeCode(parse(c.encode()).hash, Revocation.CANCELLED) for c in codes]
    body = envelope([*filler, *revokes], 0)
    assert len(body) > BULK_BYTES
    status, answer = await push(replicator, envelope([*filler, CancelEvent(7)], 5))
    assert answer == {"revision": 0, "status": "gap"}  # nothing written
    assert store.stats().revoked_codes == 0
    status, answer = await push(replicator, body)
    assert (status, answer) == (200, {"revision": 3_003, "status": "applied"})
    assert [decision(store, c) for c in codes] == [Reason.CANCELLED] * 3
    assert store.stats().revoked_codes == 3_003
    assert store.cursor(REVISION_CURSOR) == "3003"
    status, answer = await push(replicator, body)
    assert answer == {"revision": 3_003, "status": "stale"}
    forged = envelope([*filler, *revokes], 0, Ed25519PrivateKey.generate())
    status, answer = await push(replicator, forged)
    assert status == 403  # untrusted, as a small push
    assert "does not verify" in str(answer)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"", 400, "not valid msgpack"),
        (b"\x93\x01\x02\x03", 400, "envelope: must be a map"),
        (envelope([CancelEvent(42)], 0, Ed25519PrivateKey.generate()), 403, "does not verify"),
        (envelope([CancelEvent(42)], 0)[:-3], 400, "not valid msgpack"),
        (b"\x00" * (protocol.MAX_PUSH_BYTES + 1), 413, "too large"),
        (
            protocol.seal(
                EnvelopeKind.BUNDLE,
                KEY_ID,
                PRIVATE,
                first=0,
                last=1,
                at_ms=1,
                changes=[CancelEvent(42)],
            ),
            400,
            "bundle envelope is not accepted here",
        ),
    ],
)
async def test_bad_pushes_are_refused_with_an_error_body_and_change_nothing(
    store: Store, replicator: Replicator, body: bytes, status: int, message: str
) -> None:
    before = store.stats()
    got, answer = await push(replicator, body)
    assert got == status
    assert message in str(answer["message"])
    assert store.stats() == before
    assert store.cursor(REVISION_CURSOR) == "0"
    assert decision(store, mint_code(ticket(3))) is Reason.ADMITTED  # scanning still works


async def test_passages_from_other_gates_count_once_and_our_own_not_at_all(
    store: Store, replicator: Replicator
) -> None:
    at = int(NOW.timestamp() * 1000) - 60_000
    theirs = Passage("gate-2", 5, 1, at, "South", entry=True)
    ours = Passage("gate-1", 9, 2, at, "North", entry=True)
    await push(replicator, envelope([theirs, ours], 0))
    await push(replicator, envelope([theirs], 2))  # the same passage again, as a new revision
    assert decision(store, mint_code(ticket(1))) is Reason.ALREADY_USED
    assert decision(store, mint_code(ticket(2))) is Reason.ADMITTED


async def test_scanning_goes_on_while_the_central_system_is_unreachable(
    store: Store, replicator: Replicator
) -> None:
    gate = Gate(store, clock=lambda: NOW)
    check = await gate.admit(mint_code(ticket(7)).encode(), RULES, Direction.ENTRY)
    assert check.decision.reason is Reason.ADMITTED
    replicator.journal_changed()
    assert store.journal_backlog() == 1  # still queued: nothing acknowledged it


async def test_bundles_apply_with_the_checks_of_a_push(store: Store, tmp_path: Path) -> None:
    code = mint_code(ticket(4))
    bundle = protocol.seal(
        EnvelopeKind.BUNDLE, KEY_ID, PRIVATE, first=0, last=1, at_ms=1, changes=[CancelEvent(42)]
    )
    assert await import_bundle(store, bundle, device="gate-1") == ("applied", 0, 1)
    assert decision(store, code) is Reason.EVENT_CANCELLED
    assert await import_bundle(store, bundle, device="gate-1") == ("stale", 1, 1)
    later = protocol.seal(
        EnvelopeKind.BUNDLE, KEY_ID, PRIVATE, first=5, last=6, at_ms=1, changes=[CancelEvent(43)]
    )
    with pytest.raises(SyncError, match="write a bundle with --since 1 or less"):
        await import_bundle(store, later, device="gate-1")


def test_edge_import_rejects_a_damaged_bundle_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gate.toml"
    config.write_text(
        f'[device]\nname = "g"\n[[keys]]\nid = {KEY_ID}\n'
        f'public = "{base64.b64encode(public_bytes(PRIVATE)).decode()}"\n'
    )
    good = protocol.seal(
        EnvelopeKind.BUNDLE, KEY_ID, PRIVATE, first=0, last=1, at_ms=1, changes=[CancelEvent(42)]
    )
    damaged = tmp_path / "damaged.bundle"
    damaged.write_bytes(good[:-10] + bytes(10))
    assert main(["import", str(damaged), "--config", str(config)]) == 1
    assert "signature does not verify" in capsys.readouterr().err

    async def revision() -> str | None:
        store = await Store.open(tmp_path / "edge.db")
        try:
            return store.cursor(REVISION_CURSOR)
        finally:
            await store.close()

    assert asyncio.run(revision()) is None
    fine = tmp_path / "fine.bundle"
    fine.write_bytes(good)
    assert main(["import", str(fine), "--config", str(config)]) == 0
    assert "applied revisions 1..1" in capsys.readouterr().out
    assert asyncio.run(revision()) == "1"


async def test_a_central_system_that_never_answers_does_not_hold_up_scans(store: Store) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        del request
        entered.set()
        await release.wait()  # answers only once the test is over
        return web.Response(status=503)

    app = web.Application()
    app.router.add_post("/v1/hello", hang)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    settings = SyncConfig(url=f"http://127.0.0.1:{port}", push_port=0, timeout_seconds=60)
    client = Replicator(settings, store, device="gate-1", identity=Ed25519PrivateKey.generate())
    task = asyncio.create_task(client.run())
    try:
        await asyncio.wait_for(entered.wait(), 10)  # the hello is hanging now
        gate = Gate(store, clock=lambda: NOW)
        for credential in range(10, 20):
            check = await gate.admit(mint_code(ticket(credential)).encode(), RULES, Direction.ENTRY)
            assert check.decision.reason is Reason.ADMITTED
        assert not task.done()
        assert store.journal_backlog() == 10
    finally:
        release.set()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await runner.cleanup()


async def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 20
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def _stop(task: asyncio.Task[Any], server: asyncio.Task[Any], db: CentralDB) -> None:
    """Stop a running client and its central's server (each ends cancelled), close the db."""
    for running in (task, server):
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    db.close()


async def test_a_push_after_a_gap_makes_the_edge_pull_what_it_missed(
    store: Store, tmp_path: Path
) -> None:
    db = CentralDB(tmp_path / "central.db")
    db.keys.add()
    identity = Ed25519PrivateKey.generate()
    db.devices.add("gate-1", protocol.public_bytes(identity))
    product = db.catalogue.add_product("Ticket")
    _, sold = db.sales.sell(product, count=3)
    await store.put_keys([(k, public, retired) for k, public, retired in db.keys.public_keys()])
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(serve(db, "127.0.0.1", 0, ready.set_result))
    # The central system's own pushes go nowhere, and no periodic pull comes soon: only the
    # gap in the push below can make the edge fetch what it missed.
    settings = SyncConfig(url=await ready, push_port=0, push_url="http://127.0.0.1:9/v1/push",
                          pull_interval_seconds=3600, channel=False)  # fmt: skip
    client = Replicator(settings, store, device="gate-1", identity=identity)
    task = asyncio.create_task(client.run())
    try:
        start = db.log.head()
        await _until(lambda: client.state.revision == start, "the bootstrap")
        db.workflows.revoke_code(sold[0].code)
        db.workflows.revoke_code(sold[1].code)
        key_id, key, _ = db.keys.signer()
        _, (change,), _ = db.log.changes_since(start + 1, 1)
        gap = protocol.seal(EnvelopeKind.CHANGES, key_id, key, first=start + 1,
                            last=start + 2, at_ms=1, changes=[change])  # fmt: skip
        status, answer = await push(client, gap)
        assert (status, answer) == (200, {"revision": start, "status": "gap"})
        await _until(lambda: client.state.revision == start + 2, "the pull after the gap")
        assert decision(store, sold[0].code) is Reason.REVOKED
        assert decision(store, sold[1].code) is Reason.REVOKED
        assert decision(store, sold[2].code) is Reason.ADMITTED
    finally:
        await _stop(task, server, db)


def _credential_change(credential_id: int, *, paid: bool) -> CredentialChange:
    return CredentialChange(
        credential_id=credential_id, kind=int(Kind.TICKET), event_id=42, product_id=10,
        policy=int(PolicyKind.SINGLE), uses=1, passback_minutes=0, valid_from=None,
        valid_until=None, zones=0, paid=paid,
    )  # fmt: skip


def test_an_old_or_empty_bundle_never_rewinds_the_revision_or_the_facts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gate.toml"
    config.write_text(
        f'[device]\nname = "g"\n[[keys]]\nid = {KEY_ID}\n'
        f'public = "{base64.b64encode(public_bytes(PRIVATE)).decode()}"\n'
    )
    code = mint_code(ticket(4))
    history: list[protocol.Change] = [
        _credential_change(4, paid=False),
        CancelEvent(90),
        CancelEvent(91),
        _credential_change(4, paid=True),
    ]
    files: dict[str, tuple[int, int, list[protocol.Change]]] = {
        "old": (0, 1, history[:1]),  # written when the ticket was not paid yet
        "all": (0, 4, history),
        "empty": (0, 0, []),  # `edge-central bundle --since HEAD` on an empty central
        "head": (4, 4, []),  # `--since HEAD` once the central is at 4: nothing new
    }
    for name, (first, last, changes) in files.items():
        (tmp_path / f"{name}.bundle").write_bytes(
            protocol.seal(
                EnvelopeKind.BUNDLE,
                KEY_ID,
                PRIVATE,
                first=first,
                last=last,
                at_ms=1,
                changes=changes,
            )
        )

    def edge_import(name: str) -> str:
        assert main(["import", str(tmp_path / f"{name}.bundle"), "--config", str(config)]) == 0
        return capsys.readouterr().out

    async def state() -> tuple[str | None, Reason]:
        store = await Store.open(tmp_path / "edge.db")
        try:
            return store.cursor(REVISION_CURSOR), decision(store, code)
        finally:
            await store.close()

    assert "applied revisions 1..4" in edge_import("all")
    assert asyncio.run(state()) == ("4", Reason.ADMITTED)
    assert "older than this gate's data" in edge_import("empty")
    assert asyncio.run(state()) == ("4", Reason.ADMITTED)
    assert "nothing new, the store is at revision 4" in edge_import("head")
    out = edge_import("old")
    assert "the bundle ends at revision 1, the store is at 4; nothing applied" in out
    assert asyncio.run(state()) == ("4", Reason.ADMITTED)  # not unpaid again


@pytest.mark.parametrize("age", [3600.0, 0.0], ids=["replayed-hour-old", "fresh"])
async def test_a_snapshot_signed_long_ago_is_refused_as_a_replay(store: Store, age: float) -> None:
    """Anyone on the path can answer 409 (error bodies are not signed) and then serve an old
    signed snapshot, which would rewind the facts: only freshly signed chunks are taken."""
    await store.put_keys([(KEY_ID, public_bytes(PRIVATE), False)])
    code = mint_code(ticket(4))
    snapshot = protocol.seal(
        EnvelopeKind.SNAPSHOT, KEY_ID, PRIVATE, first=3, last=3,
        at_ms=int((time.time() - age) * 1000), changes=[CancelEvent(42)], head=3,
    )  # fmt: skip

    async def hello(request: web.Request) -> web.Response:
        del request
        body = protocol.pack({"protocol": 1, "time": int(time.time() * 1000), "head": 3})
        return web.Response(body=body, headers=protocol.HEADERS)

    async def snapshot_chunk(request: web.Request) -> web.Response:
        del request
        return web.Response(body=snapshot, headers=protocol.HEADERS)

    app = web.Application()
    app.router.add_post("/v1/hello", hello)
    app.router.add_post("/v1/snapshot", snapshot_chunk)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    settings = SyncConfig(url=f"http://127.0.0.1:{port}", push_port=0, timeout_seconds=2)
    client = Replicator(settings, store, device="gate-1", identity=Ed25519PrivateKey.generate())
    task = asyncio.create_task(client.run())
    try:
        if age:
            await _until(lambda: "signed 60 min ago" in client.state.last_error, "refusal")
            assert store.cursor(REVISION_CURSOR) is None
            assert decision(store, code) is Reason.ADMITTED  # the replayed facts not applied
        else:
            await _until(lambda: store.cursor(REVISION_CURSOR) == "3", "the bootstrap")
            assert decision(store, code) is Reason.EVENT_CANCELLED
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await runner.cleanup()


def _nice(tid: int) -> int:
    # /proc/PID/task/TID/stat: the 19th field is the nice value (after the parenthesised name)
    stat = Path(f"/proc/{os.getpid()}/task/{tid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[16])


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_edge_import_decodes_at_background_priority_and_leaves_the_caller_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import threading  # noqa: PLC0415

    from sync.client import bundle  # noqa: PLC0415

    config = tmp_path / "gate.toml"
    config.write_text(
        f'[device]\nname = "g"\n[[keys]]\nid = {KEY_ID}\n'
        f'public = "{base64.b64encode(public_bytes(PRIVATE)).decode()}"\n'
    )
    path = tmp_path / "revocations.bundle"
    changes = [RevokeCode(os.urandom(16), Revocation.REVOKED) for _ in range(3)]
    path.write_bytes(
        protocol.seal(
            EnvelopeKind.BUNDLE, KEY_ID, PRIVATE, first=0, last=3, at_ms=1, changes=changes
        )
    )
    main_tid = threading.get_native_id()
    ours = _nice(main_tid)
    seen: list[tuple[int, int]] = []
    real = bundle.to_batch  # type: ignore[attr-defined]

    def observed(*args: Any, **kwargs: Any) -> Any:
        tid = threading.get_native_id()
        seen.append((tid, _nice(tid)))
        return real(*args, **kwargs)

    monkeypatch.setattr(bundle, "to_batch", observed)
    assert main(["import", str(path), "--config", str(config)]) == 0
    assert "applied revisions 1..3" in capsys.readouterr().out
    [(tid, nice)] = seen
    assert tid != main_tid
    assert nice == max(ours, 10)
    assert _nice(main_tid) == ours  # the caller's thread keeps its priority


async def test_a_record_journaled_while_an_upload_batch_is_read_is_sent_at_once(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge.store.gate import JournalEntry  # noqa: PLC0415
    from sync.client import replicator as replicator_module  # noqa: PLC0415

    db = CentralDB(tmp_path / "central.db")
    db.keys.add()
    identity = Ed25519PrivateKey.generate()
    db.devices.add("gate-1", protocol.public_bytes(identity))
    await store.put_keys([(k, public, retired) for k, public, retired in db.keys.public_keys()])
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(serve(db, "127.0.0.1", 0, ready.set_result))
    settings = SyncConfig(url=await ready, push_port=0, push_url="http://127.0.0.1:9/v1/push",
                          pull_interval_seconds=3600, channel=False)  # fmt: skip
    client = Replicator(settings, store, device="gate-1", identity=identity)
    loop = asyncio.get_running_loop()
    real = replicator_module._upload_body
    reads = 0
    scanned: list[JournalEntry] = []

    async def scan_now() -> None:
        # A lane journals a decision and says so, as the lane does after its commit.
        entry = JournalEntry(
            datetime.now(UTC), "lane-1", Direction.ENTRY, Reason.UNKNOWN, None, b"u" * 16, "…1"
        )
        await store.record(entry)
        scanned.append(entry)
        client.journal_changed()

    def read_while_a_scan_comes(*args: Any) -> Any:
        nonlocal reads
        reads += 1
        batch = real(*args)
        if reads == 1:  # the first read found nothing; the scan lands before it returns
            asyncio.run_coroutine_threadsafe(scan_now(), loop).result(5)
        return batch

    monkeypatch.setattr(replicator_module, "_upload_body", read_while_a_scan_comes)
    task = asyncio.create_task(client.run())
    try:
        # The next pull is an hour away: only the scan's own wake-up can send it.
        await _until(lambda: bool(scanned) and not store.unsent(), "the scan's row uploaded")
        assert reads >= 2
    finally:
        await _stop(task, server, db)
