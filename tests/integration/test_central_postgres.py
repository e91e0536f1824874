"""Several `edge-central serve` processes on one PostgreSQL: a change made through any of them
reaches gates connected to the others, pushed at once (LISTEN/NOTIFY), not at the next pull."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest
from pgcluster import Cluster

from integration.sync_harness import CentralProcess, GateProcess, free_port, wait_for

PULL = 600.0  # seconds: no gate pulls during the test, so only a push can bring a change
PUSH_WITHIN = 10.0  # seconds a push may take here (2 shared cores); a missed one takes PULL


@pytest.mark.slow
def test_changes_through_either_central_process_reach_gates_of_the_other(
    tmp_path: Path, postgres: Cluster
) -> None:
    dsn = postgres.database()
    a = CentralProcess(tmp_path / "a", dsn)
    b = CentralProcess(tmp_path / "b", dsn)
    key_id = a.db.keys.add()
    public = base64.b64encode(a.db.keys.public_keys()[0][1]).decode()
    product = a.db.catalogue.add_product("Ticket")
    _, (revoked, scanned) = a.db.sales.sell(product, count=2)
    on_a = GateProcess(tmp_path / "ga", "gate-a", key_id, public)
    on_b = GateProcess(tmp_path / "gb", "gate-b", key_id, public)
    for gate in (on_a, on_b):
        a.db.devices.add(gate.name, gate.public_key)
    url_a, url_b = a.start(), b.start()
    try:
        for gate, url in ((on_a, url_a), (on_b, url_b)):
            port = free_port()
            gate.start(url, pull_interval=PULL, push_port=port,
                       push_url=f"http://127.0.0.1:{port}/v1/push")  # fmt: skip
        head = b.db.log.head()
        wait_for(lambda: on_a.revision() == head and on_b.revision() == head, 30, "bootstrap")

        # Revoked by the admin command (a third process) on the shared database.
        revoke = subprocess.run(
            [sys.executable, "-m", "sync.central.cli", "--db", dsn, "revoke", revoked.code],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert revoke.returncode == 0, revoke.stderr
        head = a.db.log.head()
        wait_for(lambda: on_b.revision() == head, PUSH_WITHIN, "the revocation at gate-b")
        assert on_b.scan(revoked.code) == "revoked"

        # A passage uploaded to process A (the gate's journal) is pushed by B to gate-b.
        assert on_a.scan(scanned.code) == "admitted"
        wait_for(lambda: on_b.entries(scanned.credential_id) == 1, PUSH_WITHIN, "the passage")
        assert on_b.scan(scanned.code) == "already-used"
    finally:
        for gate in (on_a, on_b):
            gate.kill()
        a.close()
        b.close()
