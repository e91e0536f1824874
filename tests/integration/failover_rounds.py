"""Rounds of SIGKILLing one of two `edge-central serve` processes on one PostgreSQL while gates
scan and changes flow; for tests/integration/test_central_failover.py and bench/failover.py.

Every gate names both processes (`[sync] urls`, half of them in the other order, so both carry
gates), takes no inbound pushes and pulls only once in ten minutes: what reaches it within a
round came through its channel or the pull a reconnect starts. A round kills the process that
round number picks (the two alternate), sells and revokes while it is down, lets every gate scan
tickets before, across and after the kill (so uploads are in flight when it dies), then waits
until every gate holds the head and has uploaded everything, and restarts the killed process
on its port for the next round. Afterwards it counts, in PostgreSQL, the journal rows of every
gate: lost (a row the gate has that the central lacks), duplicated (a row held twice, or a
passage published twice), and checks that every revocation is enforced at every gate.
"""

from __future__ import annotations

import base64
import collections
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from integration.sync_harness import CentralProcess, GateProcess, free_port, wait_for
from sync.central.catalogue import Sold
from sync.protocol import Passage, change_from_wire

PULL_INTERVAL = 600.0  # no pull on the timer can explain a converged gate
CONVERGE_WAIT = 60.0  # seconds a round may take to converge before it counts as failed
SCANS_BEFORE = 3  # per gate, before the kill
SCANS_AFTER = 4  # per gate, while the process is down
GATE_SYNC = "push_listen = false\nkeepalive_seconds = 1.0"


@dataclass(frozen=True, slots=True)
class Round:
    """What one round found."""

    number: int
    killed: str  # the URL of the process killed
    converge_seconds: float  # from the kill until every gate holds the head, all uploaded
    journal_rows: int  # rows of every gate in PostgreSQL after the round
    lost: int
    duplicated: int
    unenforced: int  # (gate, revoked code) scans that did not answer "revoked"
    moved: int  # gates whose channel opened on the other process during the round


class FailoverVenue:
    """Two central processes on one database, and gates that know both."""

    def __init__(self, directory: Path, dsn: str, gates: int) -> None:
        self.centrals = [CentralProcess(directory / f"c{i}", dsn) for i in (1, 2)]
        self.db = self.centrals[0].db
        key_id = self.db.keys.add()
        public = base64.b64encode(self.db.keys.public_keys()[0][1]).decode()
        event = self.db.catalogue.add_event("Match")
        self._product = self.db.catalogue.add_product("Ticket")
        self._event = event
        self.gates = [
            GateProcess(directory / f"g{i}", f"gate-{i}", key_id, public) for i in range(gates)
        ]
        for gate in self.gates:
            self.db.devices.add(gate.name, gate.public_key)
            gate.sync_extra = GATE_SYNC
        self.ports = [free_port(), free_port()]
        self.urls: list[str] = []
        self.revoked: list[str] = []
        self._passages: collections.Counter[tuple[str, int]] = collections.Counter()
        self._seen = 0  # change log revisions counted into _passages
        self._random = random.Random(14)

    def start(self) -> float:
        """Start both processes and every gate; seconds until each gate holds the head."""
        self.urls = [c.start(port) for c, port in zip(self.centrals, self.ports, strict=True)]
        for i, gate in enumerate(self.gates):
            gate.start(self.urls if i % 2 == 0 else self.urls[::-1], pull_interval=PULL_INTERVAL)
        took = self._converge("bootstrap")
        wait_for(lambda: all(self._opened(g) for g in self.gates), CONVERGE_WAIT, "channels")
        return took

    def close(self) -> None:
        """Stop every process (gates first) and close the databases."""
        for gate in self.gates:
            gate.kill()
        for central in self.centrals:
            central.close()

    def _sell(self, count: int) -> list[Sold]:
        return self.db.sales.sell(self._product, event_id=self._event, count=count)[1]

    def _opened(self, gate: GateProcess, url: str = "") -> int:
        return gate.log.read_text(errors="replace").count(f"push channel open to {url}")

    def _converge(self, what: str) -> float:
        """Seconds until every gate holds the head and has no unsent journal row."""

        def done() -> bool:
            head = self.db.log.head()
            return all((g.revision() or 0) >= head and g.unsent() == 0 for g in self.gates)

        return wait_for(done, CONVERGE_WAIT, what)

    def _scan_at(self, gate: GateProcess, tickets: list[Sold], pause: float) -> None:
        for ticket in tickets:
            gate.scan(ticket.code)
            time.sleep(pause)

    def round(self, number: int) -> Round:
        """Kill one process amid scans and changes; wait for convergence; restart it."""
        index = number % 2
        victim, survivor_url = self.centrals[index], self.urls[1 - index]
        moved_before = {g.name: self._opened(g, survivor_url) for g in self.gates}
        before = self._sell(len(self.gates) * SCANS_BEFORE)
        during = self._sell(len(self.gates) * SCANS_AFTER)
        revoke = self._sell(2)
        self.db.workflows.revoke_code(revoke[0].code)  # pushed by both, before the kill
        self.revoked.append(revoke[0].code)
        scanners = self._scan_threads(before, 0.02)
        time.sleep(self._random.uniform(0.0, 0.1))  # the kill lands amid scans and uploads
        killed = time.monotonic()
        victim.kill()
        self.db.workflows.revoke_code(revoke[1].code)  # made while one process is dead
        self.revoked.append(revoke[1].code)
        for thread in scanners:
            thread.join()
        for thread in self._scan_threads(during, 0.01):
            thread.join()
        self._converge(f"round {number}: convergence")
        took = time.monotonic() - killed
        unenforced = sum(
            gate.scan(item.code) != "revoked" for gate in self.gates for item in revoke
        )
        self._converge(f"round {number}: the revoked scans uploaded")
        victim.start(self.ports[index])
        moved = sum(self._opened(g, survivor_url) > moved_before[g.name] for g in self.gates)
        rows, lost, duplicated = self.count()
        return Round(number, self.urls[index], took, rows, lost, duplicated, unenforced, moved)

    def _scan_threads(self, tickets: list[Sold], pause: float) -> list[threading.Thread]:
        """One thread per gate, scanning its share of `tickets`: the gates scan at once."""
        threads = [
            threading.Thread(
                target=self._scan_at,
                args=(gate, tickets[i :: len(self.gates)], pause),
                daemon=True,
                name=gate.name,
            )
            for i, gate in enumerate(self.gates)
        ]
        for thread in threads:
            thread.start()
        return threads

    def uploads_cut(self) -> int:
        """Upload attempts whose connection a kill dropped (in flight, or pooled to the dead
        process), from the gates' own logs."""
        cut = ("sync upload: Server disconnected", "sync upload: Connection reset")
        return sum(
            line.count(text)
            for gate in self.gates
            for line in [gate.log.read_text(errors="replace")]
            for text in cut
        )

    def count(self) -> tuple[int, int, int]:
        """(rows, lost, duplicated) of every gate's journal in PostgreSQL."""
        while True:
            first, changes, head = self.db.log.changes_since(self._seen, 5_000)
            for wire in changes:
                change = change_from_wire(wire, "change")
                if isinstance(change, Passage):
                    self._passages[change.device, change.seq] += 1
            self._seen = first + len(changes)
            if not changes or self._seen >= head:
                break
        rows = lost = duplicated = 0
        for gate in self.gates:
            seqs = self.db.journals.seqs(gate.name)
            held = set(seqs)
            rows += len(seqs)
            lost += sum(seq not in held for seq in range(1, gate.last_seq() + 1))
            duplicated += len(seqs) - len(held)
        duplicated += sum(n - 1 for n in self._passages.values() if n > 1)
        return rows, lost, duplicated
