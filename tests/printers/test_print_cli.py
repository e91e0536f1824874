"""`edge print ...` as an operator runs it, and the printing metrics."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import zxingcpp
from PIL import Image

from drivers.printers.boca import BocaPrinter
from drivers.printers.fglrender import render
from drivers.printers.transports import FileTransport
from edge.config import EXIT_CONFIG, load
from edge.counter.printqueue import PrintJob, PrintQueue
from edge.ops.health import Operations
from edge.store.database import Store

CONFIG = """
[device]
name = "box-office-1"
store = "edge.db"

[[printers]]
name = "tickets"
type = "boca"
connection = "file:{out}"

[[templates]]
name = "day"
kind = "ticket"
fields = ["event", "code"]

[[templates.items]]
type = "text"
x = 20
y = 20
text = "{{event}}"
font = "F6"

[[templates.items]]
type = "qr"
x = 40
y = 90
data = "{{code}}"
module = 5
"""


def edge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def config(tmp_path: Path) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(CONFIG.format(out=tmp_path / "printer.fgl"))
    return path


def test_preview_writes_a_png_with_the_code_and_prints_nothing(tmp_path: Path) -> None:
    path = config(tmp_path)
    out = tmp_path / "preview.png"
    result = edge(
        "print", "preview", "--config", str(path), "--template", "day",
        "--field", "event=CITY MUSEUM", "--field", "code=EDGE:PV1", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [r.text for r in zxingcpp.read_barcodes(Image.open(out))] == ["EDGE:PV1"]
    assert not (tmp_path / "printer.fgl").exists()


def test_bad_fields_are_an_error_naming_the_field(tmp_path: Path) -> None:
    result = edge(
        "print", "preview", "--config", str(path := config(tmp_path)), "--template", "day",
        "--field", "event=X", "--field", "code=C", "--field", "seat=4", "--out", "x.png",
    )  # fmt: skip
    assert result.returncode == 1
    assert "has no field 'seat'" in result.stderr
    assert edge("print", "status", "--config", str(path)).returncode == 0


def test_submit_queues_once_and_status_lists_it(tmp_path: Path) -> None:
    path = config(tmp_path)
    args = ("print", "submit", "--config", str(path), "--template", "day", "--job-id", "A-1")
    fields = ("--field", "event=CITY MUSEUM", "--field", "code=EDGE:S1")
    first = edge(*args, *fields)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "job A-1: queued on tickets"
    again = edge(*args, *fields)
    assert "nothing new queued" in again.stdout
    status = edge("print", "status", "--config", str(path))
    assert status.returncode == 0, status.stderr
    assert "printer tickets" in status.stdout
    assert "queued for tickets: 1" in status.stdout
    assert "A-1" in status.stdout


def test_test_page_goes_straight_to_the_printer(tmp_path: Path) -> None:
    path = config(tmp_path)
    result = edge("print", "test", "--config", str(path), "--printer", "tickets")
    assert result.returncode == 0, result.stderr
    (ticket,) = render((tmp_path / "printer.fgl").read_bytes(), 384, 1100)
    found = sorted(r.text for r in zxingcpp.read_barcodes(ticket))
    assert found == ["EDGE-TEST", "EDGE-TEST tickets"]
    missing = edge("print", "test", "--config", str(path), "--printer", "cards")
    assert missing.returncode == EXIT_CONFIG
    assert "no printer 'cards'" in missing.stderr


def test_config_errors_in_printers_and_templates_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(CONFIG.format(out="x").replace('connection = "file:x"', 'connection = "lpt1"'))
    result = edge("config", "check", str(path))
    assert result.returncode == EXIT_CONFIG
    assert "printers[0]" in result.stderr
    assert "connection must be usb:VENDOR:PRODUCT" in result.stderr
    path.write_text(CONFIG.format(out="x").replace('font = "F6"', 'font = "Arial"'))
    result = edge("config", "check", str(path))
    assert result.returncode == EXIT_CONFIG
    assert "templates[0]" in result.stderr
    assert "unknown font 'Arial'" in result.stderr


async def test_metrics_show_printer_state_and_queue_length(tmp_path: Path) -> None:
    cfg = load(config(tmp_path))
    store = await Store.open(tmp_path / "edge.db")
    try:
        printer = BocaPrinter("tickets", FileTransport(tmp_path / "printer.fgl"))
        queue = PrintQueue(store, {"tickets": printer}, {t.name: t for t in cfg.templates})
        await queue.submit(PrintJob("m-1", "day", {"event": "X", "code": "EDGE:M"}))
        operations = Operations(cfg.metrics, store, device=cfg.device.name, environ={})
        operations.watch_printing(queue)
        text = operations.registry.render()
    finally:
        await store.close()
    assert 'edge_printer_state{printer="tickets",state="unknown"} 1' in text
    assert 'edge_print_queue_length{printer="tickets"} 1' in text
    assert 'edge_printer_paused{printer="tickets"} 0' in text
    assert "# TYPE edge_print_jobs_total counter" in text


def test_preview_into_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    result = edge(
        "print", "preview", "--config", str(config(tmp_path)), "--template", "day",
        "--field", "event=X", "--field", "code=C", "--out", "/missing/x.png",
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == "edge: error: /missing/x.png: cannot write: No such file or directory\n"


def test_status_columns_hold_long_job_ids(tmp_path: Path) -> None:
    path = config(tmp_path)
    long_id = "till-7-2026-11-30-evening-show-block-C-row-12-seat-0042"
    for job_id in ("A-1", long_id):
        submitted = edge(
            "print", "submit", "--config", str(path), "--template", "day", "--job-id", job_id,
            "--field", "event=X", "--field", "code=C",
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr
    rows = edge("print", "status", "--config", str(path)).stdout.splitlines()
    jobs = [line for line in rows if "A-1" in line or long_id in line]
    assert len(jobs) == 2
    # The printer column starts at the same place on every row, after the whole id.
    assert len({line.index("tickets") for line in jobs}) == 1
    assert f"{long_id}  tickets" in "\n".join(jobs)
