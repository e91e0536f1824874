"""Offline bundles through the real commands, and a central system restored from a backup."""

from __future__ import annotations

import base64
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from integration.sync_harness import CentralProcess, GateProcess, free_port, wait_for


def _command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.slow
def test_a_gate_without_network_imports_bundles_from_a_usb_stick(tmp_path: Path) -> None:
    db_path = tmp_path / "central.db"
    central = CentralProcess(tmp_path)  # administered only: no server, no network
    central.db.keys.add()
    public = base64.b64encode(central.db.keys.public_keys()[0][1]).decode()
    event = central.db.catalogue.add_event("Gala")
    product = central.db.catalogue.add_product("Ticket")
    _, (revoked, kept) = central.db.sales.sell(product, event_id=event, count=2)
    central.db.workflows.revoke_code(revoked.code)
    gate = tmp_path / "gate.toml"
    gate.write_text(
        f'[device]\nname = "offline-gate"\nstore = "gate.db"\n'
        f'[[keys]]\nid = 1\npublic = "{public}"\n'
        '[[scanners]]\nname = "s"\ntype = "lines"\npath = "-"\n'
        '[[actuators]]\nname = "a"\ntype = "console"\n'
        '[[lanes]]\nname = "L"\nactuator = "a"\nentry = ["s"]\n',
        encoding="utf-8",
    )
    stick = tmp_path / "stick"
    stick.mkdir()
    first = _command("sync.central.cli", "--db", str(db_path), "bundle", "--out",
                     str(stick / "all.bundle"))  # fmt: skip
    assert first.returncode == 0, first.stderr
    head = central.db.log.head()

    imported = _command("edge.cli", "import", str(stick / "all.bundle"), "--config", str(gate))
    assert imported.returncode == 0, imported.stderr
    assert f"applied revisions 1..{head}" in imported.stdout
    check = _command("edge.cli", "check", revoked.code, "--config", str(gate))
    assert (check.returncode, check.stdout.split()[:2]) == (1, ["REJECT", "revoked"])

    # A damaged copy is refused with a clear message and changes nothing.
    data = (stick / "all.bundle").read_bytes()
    (stick / "damaged.bundle").write_bytes(data[: len(data) // 2])
    damaged = _command("edge.cli", "import", str(stick / "damaged.bundle"), "--config", str(gate))
    assert damaged.returncode == 1
    assert "not valid msgpack" in damaged.stderr

    # Later: only what changed since, and the event is cancelled everywhere it arrives.
    central.db.workflows.cancel_event(event)
    later = _command("sync.central.cli", "--db", str(db_path), "bundle", "--since", str(head),
                     "--out", str(stick / "later.bundle"))  # fmt: skip
    assert later.returncode == 0, later.stderr
    imported = _command("edge.cli", "import", str(stick / "later.bundle"), "--config", str(gate))
    assert f"applied revisions {head + 1}..{head + 1}" in imported.stdout
    check = _command("edge.cli", "check", kept.code, "--config", str(gate))
    assert check.stdout.split()[:2] == ["REJECT", "event-cancelled"]
    again = _command("edge.cli", "import", str(stick / "all.bundle"), "--config", str(gate))
    assert f"ends at revision {head}, the store is at {head + 1}; nothing applied" in again.stdout
    # What `bundle --since HEAD` writes when nothing is new: the revision stays where it is.
    empty = _command("sync.central.cli", "--db", str(db_path), "bundle", "--since",
                     str(head + 1), "--out", str(stick / "empty.bundle"))  # fmt: skip
    assert empty.returncode == 0, empty.stderr
    imported = _command("edge.cli", "import", str(stick / "empty.bundle"), "--config", str(gate))
    assert f"nothing new, the store is at revision {head + 1}" in imported.stdout
    check = _command("edge.cli", "check", kept.code, "--config", str(gate))
    assert check.stdout.split()[:2] == ["REJECT", "event-cancelled"]
    central.db.close()


@pytest.mark.slow
def test_a_central_system_restored_from_a_backup_makes_gates_bootstrap_again(
    tmp_path: Path,
) -> None:
    central = CentralProcess(tmp_path / "central")
    key_id = central.db.keys.add()
    public = base64.b64encode(central.db.keys.public_keys()[0][1]).decode()
    gate = GateProcess(tmp_path / "gate", "gate-0", key_id, public)
    central.db.devices.add(gate.name, gate.public_key)
    product = central.db.catalogue.add_product("Ticket")
    central.db.sales.sell(product, count=2)
    backup_head = central.db.log.head()
    backup = tmp_path / "backup.db"
    with sqlite3.connect(backup) as target:
        sqlite3.connect(central.db_path).backup(target)
    port = free_port()
    url = central.start(port)
    try:
        gate.start(url, pull_interval=0.5)
        central.db.sales.sell(product, count=3)
        head = central.db.log.head()
        wait_for(lambda: gate.revision() == head, 20, f"gate at revision {head}")

        central.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{central.db_path}{suffix}").unlink(missing_ok=True)
        shutil.copy(backup, central.db_path)
        central = CentralProcess(tmp_path / "central")
        central.start(port)
        wait_for(lambda: gate.revision() == backup_head, 30, "the gate bootstrapped again")
        assert "bootstrapping again" in gate.log.read_text()
        # It holds what the restored central holds: the 3 credentials sold after the backup
        # went with the bootstrap that replaced the store's facts.
        assert gate.count("credentials") == 2
    finally:
        gate.kill()
        central.close()


@pytest.mark.slow
def test_gates_cut_off_from_each_other_admit_twice_and_the_central_reports_it(
    tmp_path: Path,
) -> None:
    central = CentralProcess(tmp_path / "central")
    key_id = central.db.keys.add()
    public = base64.b64encode(central.db.keys.public_keys()[0][1]).decode()
    gates = [GateProcess(tmp_path / f"g{i}", f"gate-{i}", key_id, public) for i in range(2)]
    for gate in gates:
        central.db.devices.add(gate.name, gate.public_key)
    product = central.db.catalogue.add_product("Ticket")
    _, (sold,) = central.db.sales.sell(product)
    port = free_port()
    url = central.start(port)
    try:
        for gate in gates:
            gate.start(url, pull_interval=0.5)
        head = central.db.log.head()
        wait_for(lambda: all(g.revision() == head for g in gates), 20, "bootstrap")
        central.kill()  # the network is gone: each gate decides alone
        assert [g.scan(sold.code) for g in gates] == ["admitted", "admitted"]
        central.start(port)
        wait_for(lambda: all(g.unsent() == 0 for g in gates), 60, "journals uploaded")
        (double,) = central.db.journals.double_entries()
        assert (double.credential_id, double.entries, double.allowed) == (
            sold.credential_id, 2, 1,
        )  # fmt: skip
        report = _command("sync.central.cli", "--db", str(central.db_path), "doubles")
        assert f"credential {sold.credential_id}: entry 2 of 1 allowed" in report.stdout
        # Each gate now knows both entries.
        wait_for(lambda: all(g.entries(sold.credential_id) == 2 for g in gates), 30, "entries")
    finally:
        for gate in gates:
            gate.kill()
        central.close()
