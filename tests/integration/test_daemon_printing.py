"""The daemon prints jobs queued before it started and jobs submitted while it runs."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zxingcpp

from drivers.printers.fglrender import render

CONFIG = """
[device]
name = "box-office-1"
store = "edge.db"

[metrics]
enabled = false

[[printers]]
name = "tickets"
type = "boca"
connection = "file:{fifo}"

[[templates]]
name = "day"
kind = "ticket"
fields = ["code"]

[[templates.items]]
type = "qr"
x = 40
y = 40
data = "{{code}}"
"""
READ_TIMEOUT = 30.0


def edge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def submit(config: Path, job_id: str, code: str) -> None:
    result = edge(
        "print", "submit", "--config", str(config), "--template", "day",
        "--job-id", job_id, "--field", f"code={code}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def read_tickets(fd: int, count: int, buffer: bytearray) -> list[str]:
    """Read the FIFO until `count` more tickets arrived; the QR codes on them."""
    deadline = time.monotonic() + READ_TIMEOUT
    while buffer.count(b"<p>") < count:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(0.0, left))
        assert ready, f"no ticket within {READ_TIMEOUT} s; got {bytes(buffer)!r}"
        buffer += os.read(fd, 65536)
    end = 0
    for _ in range(count):
        end = buffer.index(b"<p>", end) + 3
    tickets = render(bytes(buffer[:end]), 384, 1100)
    del buffer[:end]
    return [r.text for image in tickets for r in zxingcpp.read_barcodes(image)]


@pytest.mark.slow
def test_queued_and_new_jobs_print_once_in_order(tmp_path: Path) -> None:
    fifo = tmp_path / "printer"
    os.mkfifo(fifo)
    config = tmp_path / "edge.toml"
    config.write_text(CONFIG.format(fifo=fifo))
    for n in range(1, 4):  # queued while no daemon runs
        submit(config, f"job-{n}", f"EDGE:{n}")
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    # Our own writer keeps the FIFO open between the daemon's writes (it opens the file per
    # ticket), so select() waits for data instead of reporting end-of-file.
    keep_open = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    with (tmp_path / "daemon.log").open("ab") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "run", "--config", str(config)], stderr=log
        )
    try:
        buffer = bytearray()
        assert read_tickets(fd, 3, buffer) == ["EDGE:1", "EDGE:2", "EDGE:3"]
        submit(config, "job-4", "EDGE:4")
        submit(config, "job-2", "EDGE:2")  # again: nothing new
        assert read_tickets(fd, 1, buffer) == ["EDGE:4"]
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        os.close(keep_open)
        os.close(fd)
    assert buffer == b""
    status = edge("print", "status", "--config", str(config))
    assert status.returncode == 0, status.stderr
    assert "queued for tickets: 0" in status.stdout
    assert status.stdout.count(" done") == 4
