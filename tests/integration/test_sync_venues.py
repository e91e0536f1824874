"""A gate moved to another venue, as real processes: `edge-central serve` and `edge run`."""

from __future__ import annotations

import base64
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge.core.codes import EntryPolicy, plain_hash
from integration.sync_harness import CentralProcess, GateProcess, wait_for
from sync.central.catalogue import Sold

WAIT = 30.0


@dataclass
class Venues:
    central: CentralProcess
    gate: GateProcess
    arena: list[Sold]  # plain codes A1..A4, A4 revoked
    hall: list[Sold]  # plain codes B1..B4, B4 revoked
    group: list[Sold]  # plain codes G1, G2 of a group ticket (no venue), unlimited entries


@pytest.fixture
def venues(tmp_path: Path, central_target: str) -> Iterator[Venues]:
    central = CentralProcess(tmp_path / "central", central_target)
    db = central.db
    key_id = db.keys.add()
    public_b64 = base64.b64encode(db.keys.public_keys()[0][1]).decode()
    ticket = db.catalogue.add_product("Day ticket")
    anywhere = db.catalogue.add_product("Group day", policy=EntryPolicy.unlimited())
    arena = db.catalogue.add_event("Cup final", venue="arena")
    hall = db.catalogue.add_event("Concert", venue="hall")
    _, a = db.sales.sell(ticket, event_id=arena, count=4, plain_codes=["A1", "A2", "A3", "A4"])
    _, b = db.sales.sell(ticket, event_id=hall, count=4, plain_codes=["B1", "B2", "B3", "B4"])
    _, g = db.sales.sell(anywhere, count=2, plain_codes=["G1", "G2"])
    db.workflows.revoke_code("A4")
    db.workflows.revoke_code("B4")
    gate = GateProcess(tmp_path / "gate", "gate-1", key_id, public_b64)
    db.devices.add(gate.name, gate.public_key, "arena")
    url = central.start()
    try:
        # Pulls every 2 s: the move reaches the gate through the channel (the central closes
        # it) or, at the latest, through its next pull.
        gate.start(url, pull_interval=2.0)
        yield Venues(central, gate, a, b, g)
    finally:
        gate.kill()
        central.close()


def _facts(gate: GateProcess) -> tuple[set[int], set[bytes], set[bytes]]:
    """(credential ids, plain code hashes, revoked code hashes) in the gate's store."""
    conn = sqlite3.connect(f"file:{gate.store_path}?mode=ro", uri=True, timeout=10)
    try:
        credentials = {int(r[0]) for r in conn.execute("SELECT credential_id FROM credentials")}
        plain = {bytes(r[0]) for r in conn.execute("SELECT code_hash FROM plain_codes")}
        revoked = {bytes(r[0]) for r in conn.execute("SELECT code_hash FROM revoked_codes")}
    finally:
        conn.close()
    return credentials, plain, revoked


def _ids(*sales: list[Sold]) -> set[int]:
    return {s.credential_id for sold in sales for s in sold}


def _hashes(*texts: str) -> set[bytes]:
    return {plain_hash(t) for t in texts}


def test_a_moved_gate_holds_exactly_its_new_venues_share(venues: Venues) -> None:
    central, gate = venues.central, venues.gate
    head = central.db.log.head()
    wait_for(lambda: (gate.revision() or 0) >= head, WAIT, "the arena's bootstrap")
    assert gate.scan("A1") == "admitted"
    assert gate.scan("A4") == "revoked"
    assert gate.scan("B1") == "unknown"  # the hall's tickets are not the arena's business
    assert gate.scan("G1") == "admitted"
    assert _facts(gate) == (
        _ids(venues.arena, venues.group),
        _hashes("A1", "A2", "A3", "A4", "G1", "G2"),
        _hashes("A4"),
    )

    central.db.devices.move(gate.name, "hall")
    moved = time.monotonic()
    # While it moves, the group's ticket keeps opening the gate: no scan finds it unknown.
    reasons = set()
    while _facts(gate)[0] != _ids(venues.hall, venues.group) or gate.cursor("sync.replace"):
        assert time.monotonic() - moved < WAIT, f"not moved after {WAIT} s: {_facts(gate)}"
        reasons.add(gate.scan("G1"))
    took = time.monotonic() - moved
    assert reasons <= {"admitted"}, reasons
    print(f"moved to the hall's share in {took * 1000:.0f} ms ({len(reasons)} scans between)")
    head = central.db.log.head()
    wait_for(lambda: (gate.revision() or 0) >= head, WAIT, "the hall's revision")

    # Exactly the hall's share and the group's: nothing of the arena, nothing missing.
    assert _facts(gate) == (
        _ids(venues.hall, venues.group),
        _hashes("B1", "B2", "B3", "B4", "G1", "G2"),
        _hashes("B4"),
    )
    assert gate.count("credentials") == 6
    assert gate.count("revoked_codes") == 1
    assert gate.scan("A2") == "unknown"
    assert gate.scan("A4") == "unknown"
    assert gate.scan("B1") == "admitted"
    assert gate.scan("B4") == "revoked"
    assert gate.scan("G2") == "admitted"
    # And it goes on hearing the hall's changes.
    central.db.workflows.revoke_code("B2")
    wait_for(lambda: plain_hash("B2") in _facts(gate)[2], WAIT, "the hall's revocation")
    assert gate.scan("B2") == "revoked"


def _command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_edge_import_takes_only_its_venues_bundles(tmp_path: Path) -> None:
    central = CentralProcess(tmp_path)  # administered only: no server, no network
    db = central.db
    db.keys.add()
    public = base64.b64encode(db.keys.public_keys()[0][1]).decode()
    ticket = db.catalogue.add_product("Day ticket")
    arena = db.catalogue.add_event("Cup final", venue="arena")
    hall = db.catalogue.add_event("Concert", venue="hall")
    db.sales.sell(ticket, event_id=arena, count=2, plain_codes=["A1", "A2"])
    db.sales.sell(ticket, event_id=hall, count=2, plain_codes=["B1", "B2"])
    db.workflows.revoke_code("B2")
    central.close()
    gate = tmp_path / "gate.toml"
    gate.write_text(
        f'[device]\nname = "hall-1"\nstore = "gate.db"\n'
        f'[[keys]]\nid = 1\npublic = "{public}"\n'
        '[[scanners]]\nname = "s"\ntype = "lines"\npath = "-"\n'
        '[[actuators]]\nname = "a"\ntype = "console"\n'
        '[[lanes]]\nname = "L"\nactuator = "a"\nentry = ["s"]\n',
        encoding="utf-8",
    )
    stick = tmp_path / "stick"
    stick.mkdir()
    for venue in ("arena", "hall"):
        wrote = _command("sync.central.cli", "--db", str(central.db_path), "bundle", "--venue",
                         venue, "--out", str(stick / f"{venue}.bundle"))  # fmt: skip
        assert wrote.returncode == 0, wrote.stderr
    imported = _command("edge.cli", "import", str(stick / "hall.bundle"), "--config", str(gate))
    assert imported.returncode == 0, imported.stderr

    # The arena's bundle carried to the hall's gate: refused, named, nothing applied.
    refused = _command("edge.cli", "import", str(stick / "arena.bundle"), "--config", str(gate))
    assert refused.returncode == 1
    assert "holds venue 'arena''s changes but this gate (hall-1) holds venue 'hall''s" in (
        refused.stderr
    )
    assert "edge-central bundle --device hall-1" in refused.stderr

    def check(code: str) -> str:
        answer = _command("edge.cli", "check", code, "--config", str(gate))
        return answer.stdout.split()[1]

    assert [check(c) for c in ("B1", "B2", "A1")] == ["admitted", "revoked", "unknown"]
