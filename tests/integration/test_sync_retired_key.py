"""A leaked, retired signing key against a running gate: real processes on loopback.

The central system rotates 1 -> 2 -> 3 and retires key 2 (it leaked). The attacker holds key
2's private half and the genuine endorsement by key 1 that once vouched for it. Pushes and
`edge import` bundles built on key 2, directly or as a link of a chain, must be refused
with a clear error and change nothing; a code minted with a key of the attacker's choosing
never admits.
"""

from __future__ import annotations

import base64
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.core.codes import Claims, Kind, mint
from integration.sync_harness import CentralProcess, GateProcess, free_port, wait_for
from sync import protocol
from sync.protocol import CancelEvent, EnvelopeKind, KeyChange

ATTACKER_ID = 66
ATTACKER = Ed25519PrivateKey.from_private_bytes(bytes([66]) * 32)


def _leaked(central: CentralProcess, key_id: int) -> tuple[Ed25519PrivateKey, protocol.Endorsement]:
    """What leaked: a key's private half and the endorsement that introduced it."""
    conn = sqlite3.connect(central.db_path)
    try:
        private, public, by, signature = conn.execute(
            "SELECT private, public, endorsed_by, endorsement FROM signing_keys WHERE key_id = ?",
            (key_id,),
        ).fetchone()
    finally:
        conn.close()
    link = protocol.Endorsement(key_id, bytes(public), int(by), bytes(signature))
    return Ed25519PrivateKey.from_private_bytes(bytes(private)), link


def _push(url: str, body: bytes) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, protocol.unpack(response.read(), "answer", 1 << 16)
    except urllib.error.HTTPError as err:
        return err.code, protocol.unpack(err.read(), "answer", 1 << 16)


@pytest.mark.slow
def test_a_leaked_retired_key_authorizes_nothing_on_a_running_gate(tmp_path: Path) -> None:
    central = CentralProcess(tmp_path / "central")
    db = central.db
    first = db.keys.add()
    (_, public, _) = db.keys.public_keys()[0]
    gate = GateProcess(tmp_path / "gate", "gate-1", first, base64.b64encode(public).decode())
    db.devices.add(gate.name, gate.public_key)
    event = db.catalogue.add_event("Gala")
    product = db.catalogue.add_product("Ticket")
    push_port = free_port()
    push_url = f"http://127.0.0.1:{push_port}/v1/push"
    try:
        gate.start(central.start(), pull_interval=3600, push_port=push_port, push_url=push_url)
        leaked_id = db.keys.add()  # 2, endorsed by 1
        newest = db.keys.add()  # 3, endorsed by 2
        _, (sold,) = db.sales.sell(product, event_id=event)
        db.keys.retire(leaked_id)
        head = db.log.head()
        wait_for(lambda: (gate.revision() or 0) >= head, 30, "the gate at the central's head")
        assert gate.count("keys WHERE retired = 1") == 1
        assert gate.scan(sold.code) == "admitted"  # signed by key 3, which the gate follows
        assert newest == 3

        leaked, old_link = _leaked(central, leaked_id)
        attacker_public = protocol.public_bytes(ATTACKER)
        changes: list[protocol.Change] = [
            KeyChange(ATTACKER_ID, attacker_public, retired=False),
            CancelEvent(event),
        ]
        revision = gate.revision() or 0
        attacks = {
            "signed by the retired key": protocol.seal(
                EnvelopeKind.CHANGES, leaked_id, leaked, first=revision,
                last=revision + 2, at_ms=1, changes=changes, chain=[old_link],
            ),
            "endorsed by the retired key (1 -> 2 -> 66)": protocol.seal(
                EnvelopeKind.CHANGES, ATTACKER_ID, ATTACKER, first=revision,
                last=revision + 2, at_ms=1, changes=changes,
                chain=[old_link, protocol.endorse(leaked, leaked_id, ATTACKER_ID,
                                                  attacker_public)],
            ),
        }  # fmt: skip
        attacker_code = mint(
            Claims(key_id=ATTACKER_ID, credential_id=sold.credential_id + 100,
                   kind=Kind.TICKET, event_id=event, product_id=product),
            ATTACKER,
        )  # fmt: skip
        for name, body in attacks.items():
            status, answer = _push(push_url, body)
            print(f"{name}: {status} {answer}")
            assert status == 403, name
            assert answer["error"] == "untrusted", name
            assert "retired" in str(answer["message"]), name
            bundle = tmp_path / "forged.bundle"
            bundle.write_bytes(body)
            imported = subprocess.run(
                [sys.executable, "-m", "edge.cli", "import", str(bundle), "--config",
                 str(gate.directory / "gate.toml")],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert imported.returncode != 0, imported.stdout
            assert "retired" in imported.stderr
            assert "Traceback" not in imported.stderr
            assert (gate.revision() or 0) <= db.log.head()  # never the forged revisions
            assert gate.count(f"keys WHERE key_id = {ATTACKER_ID}") == 0
            assert gate.count("cancelled_events") == 0
            assert gate.scan(attacker_code) == "unknown-key"
        _, (later,) = db.sales.sell(product, event_id=event)
        assert gate.scan(later.code) == "admitted"  # genuine codes still admit
    finally:
        gate.kill()
        central.close()
