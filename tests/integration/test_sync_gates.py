"""One central system and three gates as real processes on loopback: the DESIGN workflows."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.core.codes import EntryPolicy, Kind
from integration.sync_harness import CentralProcess, GateProcess, wait_for
from sync.protocol import Revocation, RevokeCode

# Pushes take tens of milliseconds (bench/sync.py measures them); tests wait far longer so a
# loaded machine cannot fail them, and print what it took. Timings are figures, not asserts.
PUSH_WAIT = 20.0


@pytest.fixture
def venue(
    tmp_path: Path, central_target: str
) -> Iterator[tuple[CentralProcess, list[GateProcess]]]:
    central = CentralProcess(tmp_path / "central", central_target)
    key_id = central.db.keys.add()
    (_, public, _) = central.db.keys.public_keys()[0]
    public_b64 = base64.b64encode(public).decode()
    gates = [GateProcess(tmp_path / f"g{i}", f"gate-{i}", key_id, public_b64) for i in range(3)]
    for gate in gates:
        central.db.devices.add(gate.name, gate.public_key)
    url = central.start()
    try:
        for gate in gates:
            gate.start(url)
        yield central, gates
    finally:
        for gate in gates:
            gate.kill()
        central.close()


def _reached(central: CentralProcess, gates: list[GateProcess]) -> None:
    """Wait until every gate holds the central system's newest revision; print how long."""
    head = central.db.log.head()
    took = wait_for(
        lambda: all((g.revision() or 0) >= head for g in gates),
        PUSH_WAIT,
        f"every gate at revision {head}",
    )
    print(f"revision {head} on every gate after {took * 1000:.0f} ms")


def _converged(central: CentralProcess, gates: list[GateProcess], timeout: float = 20.0) -> None:
    head = central.db.log.head()
    wait_for(
        lambda: all((g.revision() or 0) >= head for g in gates),
        timeout,
        f"every gate at revision {head}",
    )


@pytest.mark.slow
def test_workflows_reach_every_gate(
    venue: tuple[CentralProcess, list[GateProcess]],
) -> None:
    central, gates = venue
    db = central.db
    event = db.catalogue.add_event("Concert")
    other_event = db.catalogue.add_event("Matinee")
    ticket = db.catalogue.add_product("Ticket")
    annual = db.catalogue.add_product(
        "Annual pass", kind=Kind.PASS, policy=EntryPolicy.unlimited(0), days=365
    )
    _, tickets = db.sales.sell(ticket, event_id=event, count=6)
    _, matinee = db.sales.sell(ticket, event_id=other_event, count=2)
    _, (card,) = db.sales.sell(annual, holder="A. Holder")
    _, (unpaid,) = db.sales.sell(ticket, event_id=event, paid=False)
    _converged(central, gates)

    # Revoke a code: every gate gets it pushed, and rejects it.
    db.workflows.revoke_code(tickets[0].code)
    _reached(central, gates)
    assert [g.scan(tickets[0].code) for g in gates] == ["revoked"] * 3

    # Cancel a sale (one credential sold alone).
    sale, (sold,) = db.sales.sell(ticket, event_id=event)
    db.workflows.cancel_sale(sale)
    _reached(central, gates)
    assert [g.scan(sold.code) for g in gates] == ["cancelled"] * 3

    # Cancel an event: all its tickets, at every gate.
    db.workflows.cancel_event(other_event)
    _reached(central, gates)
    assert {g.scan(item.code) for g in gates for item in matinee} == {"event-cancelled"}

    # Unpaid tickets stay shut until paid.
    assert gates[0].scan(unpaid.code) == "unpaid"
    db.workflows.mark_paid(unpaid.credential_id)
    _reached(central, gates)
    assert gates[0].scan(unpaid.code) == "admitted"

    # Lost card: invalidate and replace; the old code is rejected, the new one admits.
    new_code = db.workflows.replace(card.credential_id)
    _reached(central, gates)
    assert gates[1].scan(card.code) == "replaced"
    assert gates[1].scan(new_code) == "admitted"

    # Season renewal: a dry run changes nothing; renewed passes stay shut until paid.
    season = db.catalogue.add_product(
        "Season", kind=Kind.PASS, policy=EntryPolicy.unlimited(0), days=200
    )
    db.sales.sell(season, count=3, season=2026)
    # The scans above reach the central as uploads, and their passages as changes: all of them
    # in before the head is read, or one arriving during the dry run would move it.
    wait_for(lambda: all(g.unsent() == 0 for g in gates), 30, "every scan uploaded")
    _reached(central, gates)
    head = db.log.head()
    dry = db.workflows.renew_season(
        2026, 2027, batch_size=2, valid_from=datetime.now(UTC), dry_run=True
    )
    assert (len(dry.renewed), db.log.head()) == (3, head)
    done = db.workflows.renew_season(
        2026, 2027, batch_size=2, valid_from=datetime.now(UTC), dry_run=False
    )
    _reached(central, gates)
    renewed = [db.sales.credential_code(new) for _, new in done.renewed]
    assert [g.scan(renewed[0]) for g in gates] == ["unpaid"] * 3
    db.workflows.mark_paid(done.renewed[0][1])
    _reached(central, gates)
    assert gates[2].scan(renewed[0]) == "admitted"

    # An entry at one gate reaches the others: no second entry elsewhere.
    assert gates[0].scan(tickets[1].code) == "admitted"
    cid = tickets[1].credential_id
    took = wait_for(
        lambda: all(g.entries(cid) == 1 for g in gates), PUSH_WAIT, "the entry everywhere"
    )
    print(f"entry at gate-0 known at the other gates after {took * 1000:.0f} ms")
    assert [g.scan(tickets[1].code) for g in gates[1:]] == ["already-used"] * 2

    # Every decision reaches the central system exactly once.
    for gate in gates:
        # wait_for calls it at once, before the loop moves on to the next gate.
        wait_for(lambda: gate.unsent() == 0, 30.0, f"{gate.name} journal uploaded")  # noqa: B023
        seqs = db.journals.seqs(gate.name)
        assert seqs == list(range(1, gate.last_seq() + 1))
    assert db.journals.double_entries() == []


@pytest.mark.slow
def test_pass_extension_and_sync_state_on_health_and_metrics(
    venue: tuple[CentralProcess, list[GateProcess]],
) -> None:
    central, gates = venue
    db = central.db
    annual = db.catalogue.add_product(
        "Annual", kind=Kind.PASS, policy=EntryPolicy.unlimited(0), days=30
    )
    start = datetime.now(UTC) - timedelta(days=40)  # expired ten days ago
    _, (card,) = db.sales.sell(annual, valid_from=start)
    _converged(central, gates)
    assert gates[2].scan(card.code) == "expired"
    db.workflows.extend(card.credential_id)  # by the original 30 days: valid until 20 days from now
    _reached(central, gates)
    assert gates[2].scan(card.code) == "admitted"
    assert db.sales.credential_code(card.credential_id) == card.code  # the code did not change

    wait_for(lambda: gates[2].unsent() == 0, 30.0, "journal uploaded")
    _converged(central, gates)  # the admitted passage came back as a change
    log = gates[2].log.read_text()
    match = re.search(r"metrics on (http://\S+)/metrics", log)
    assert match, log
    with urllib.request.urlopen(match.group(1) + "/health", timeout=5) as response:
        health = json.load(response)
    assert health["sync"]["revision"] == db.log.head()
    assert health["sync"]["status"] == "current"
    assert health["sync"]["lag"] == 0
    with urllib.request.urlopen(match.group(1) + "/metrics", timeout=5) as response:
        metrics = response.read().decode()
    assert f"edge_sync_revision {db.log.head()}" in metrics
    assert "edge_sync_up 1" in metrics
    offset = re.search(r"^edge_sync_clock_offset_seconds (\S+)$", metrics, re.MULTILINE)
    assert offset, metrics
    assert abs(float(offset.group(1))) < 5  # one machine: the clocks agree
    status = subprocess.run(
        [sys.executable, "-m", "edge.cli", "status", "--config",
         str(gates[2].directory / "gate.toml")],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert re.search(rf"sync revision\s+{db.log.head()}\s", status.stdout), status.stdout


@pytest.mark.slow
def test_bootstrap_comes_in_chunks_and_resumes_after_sigkill(
    tmp_path: Path, central_target: str
) -> None:
    central = CentralProcess(tmp_path / "central", central_target)
    key_id = central.db.keys.add()
    public_b64 = base64.b64encode(central.db.keys.public_keys()[0][1]).decode()
    gate = GateProcess(tmp_path / "gate", "gate-0", key_id, public_b64)
    central.db.devices.add(gate.name, gate.public_key)
    hashes = [bytes([i % 256, i // 256 % 256, i // 65536]) + bytes(13) for i in range(300_000)]
    central.db.log.publish([RevokeCode(h, Revocation.REVOKED) for h in hashes])
    url = central.start()
    try:
        gate.start(url)
        wait_for(lambda: bool(gate.cursor("sync.bootstrap")), 60, "the first chunk applied")
        gate.kill()  # SIGKILL in the middle of the bootstrap
        assert gate.revision() is None
        gate.start(url)
        _converged(central, [gate], timeout=120)

        def loaded() -> list[str]:
            return re.findall(r"bootstrapped (\d+) items", gate.log.read_text())

        # The daemon logs the bootstrap once its bulk worker answered for the last chunk,
        # which committed the revision the wait above saw: a moment later.
        wait_for(lambda: bool(loaded()), 10, "the bootstrap's log line")
        assert len(loaded()) == 1  # only the restarted daemon finished, with the rest
        assert 0 < int(loaded()[0]) < len(hashes)
        assert gate.count("revoked_codes") == len(hashes)
    finally:
        gate.kill()
        central.close()
