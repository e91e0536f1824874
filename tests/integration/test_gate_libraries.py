"""What a running gate has loaded: no OpenSSL binding of `cryptography` (about 6 MB resident).

A gate signs its requests and verifies codes, envelopes and key endorsements with libsodium
only (edge.core.ed25519); TLS goes through Python's own `ssl`. Checked on a real `edge run`
process that bootstrapped from a central system, admitted a code and pushed its journal:
every signing and verifying path ran, and its memory map must not hold the binding.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from integration.sync_harness import CentralProcess, GateProcess, wait_for


def _mapped(pid: int) -> set[str]:
    lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return {line.split(maxsplit=5)[5] for line in lines if len(line.split(maxsplit=5)) == 6}


@pytest.mark.slow
def test_a_syncing_gate_loads_libsodium_and_not_cryptography(tmp_path: Path) -> None:
    central = CentralProcess(tmp_path / "central")
    db = central.db
    key_id = db.keys.add()
    (_, public, _) = db.keys.public_keys()[0]
    gate = GateProcess(tmp_path / "gate", "gate-1", key_id, base64.b64encode(public).decode())
    db.devices.add(gate.name, gate.public_key)
    product = db.catalogue.add_product("Ticket")
    try:
        gate.start(central.start(), pull_interval=1.0)
        _, (sold,) = db.sales.sell(product)
        head = db.log.head()
        wait_for(lambda: (gate.revision() or 0) >= head, 30, "the gate at the central's head")
        assert gate.scan(sold.code) == "admitted"
        wait_for(lambda: gate.unsent() == 0, 30, "the journal uploaded")
        assert gate.process is not None
        mapped = _mapped(gate.process.pid)
        assert any("/nacl/" in path for path in mapped)  # the map is read and holds extensions
        assert [path for path in mapped if "/cryptography/" in path] == []
    finally:
        gate.kill()
        central.close()
