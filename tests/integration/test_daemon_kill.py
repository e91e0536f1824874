"""SIGKILL the daemon while it admits a stream of scans: every reported admit is journaled."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge import keys
from edge.core.codes import Claims, Kind, mint, parse
from edge.core.ed25519 import PrivateKey
from edge.store.database import Store

IN_FLIGHT = 8  # scans written ahead of the reports: below the lane's queue, so none is dropped
ROUNDS = 3


def _config(tmp: Path, key: keys.SigningKey, fifo: Path) -> Path:
    path = tmp / "gate.toml"
    path.write_text(
        f"""
[device]
name = "kill-test"
store = "edge.db"

[[keys]]
id = {key.key_id}
public = "{key.public_b64}"

[[scanners]]
name = "fifo"
type = "lines"
path = "{fifo}"

[[actuators]]
name = "turnstile"
type = "console"
color = "never"

[[lanes]]
name = "lane-1"
actuator = "turnstile"
entry = ["fifo"]
""",
        encoding="utf-8",
    )
    return path


def _codes(key: keys.SigningKey, start: int) -> Iterator[str]:
    for credential_id in range(start, start + 100_000):
        yield mint(Claims(key.key_id, credential_id, Kind.TICKET, event_id=1), key.private)


def _run_until_killed(
    config: Path, fifo: Path, codes: Iterator[str], kill_after: int, log: Path
) -> list[str]:
    """Start the daemon, stream codes, SIGKILL it after `kill_after` reports; the admitted."""
    with log.open("ab") as stderr:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    assert daemon.stdout is not None
    admitted: list[str] = []
    in_flight: list[str] = []
    writer = os.open(fifo, os.O_WRONLY)  # waits for the daemon to open its end
    try:
        while len(admitted) < kill_after:
            while len(in_flight) < IN_FLIGHT:
                code = next(codes)
                os.write(writer, code.encode() + b"\n")
                in_flight.append(code)
            line = daemon.stdout.readline().decode()
            assert line.startswith("ADMIT  turnstile"), line or "daemon ended early"
            admitted.append(in_flight.pop(0))
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
    finally:
        os.close(writer)
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    return admitted


@pytest.mark.slow
def test_every_reported_admit_survives_sigkill(tmp_path: Path) -> None:
    key = keys.SigningKey(1, PrivateKey.generate())
    fifo = tmp_path / "scans"
    os.mkfifo(fifo)
    config = _config(tmp_path, key, fifo)
    codes = _codes(key, 1)
    rng = random.Random(os.getpid())
    reported: list[str] = []
    for _ in range(ROUNDS):
        reported += _run_until_killed(
            config, fifo, codes, rng.randint(20, 200), tmp_path / "daemon.log"
        )

    async def journaled() -> set[bytes]:
        store = await Store.open(tmp_path / "edge.db")
        try:
            return store.admitted_hashes()
        finally:
            await store.close()

    in_journal = asyncio.run(journaled())
    missing = [code for code in reported if parse(code.encode()).hash not in in_journal]
    assert not missing, f"{len(missing)} of {len(reported)} reported admits are not journaled"
    assert len(reported) >= ROUNDS * 20
