"""A counter running `edge run` with [counter] on loopback: its device API, a card printer
behind a fake `lp` (CUPS) that keeps each card's PNG, and a `lines` scanner on a FIFO.

The central system and gates come from sync_harness; the venue here sells annual-pass
vouchers (365 days, unlimited re-entry without passback).
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import zxingcpp
from PIL import Image

from drivers.printers.fglrender import render
from edge.core.codes import EntryPolicy, Kind
from edge.ops import identity
from integration.sync_harness import STARTUP_TIMEOUT, CentralProcess, GateProcess, wait_for
from sync.central.desk import Person

BUYER = Person("Smith", "Ann", "1 High St, Bath")

CARD_TEMPLATE = """
[[templates]]
name = "annual-pass"
kind = "card"
fields = ["holder", "number", "valid_until", "code"]

[[templates.items]]
type = "text"
x = 40
y = 40
text = "{holder}"
size = 48

[[templates.items]]
type = "text"
x = 40
y = 120
text = "valid until {valid_until}"
size = 30

[[templates.items]]
type = "qr"
x = 40
y = 220
data = "{code}"
module = 8
"""

TICKET_TEMPLATE = """
[[templates]]
name = "voucher-ticket"
kind = "ticket"
fields = ["product", "code"]

[[templates.items]]
type = "text"
x = 30
y = 30
text = "{product}"
font = "F3"

[[templates.items]]
type = "qr"
x = 800
y = 50
data = "{code}"
module = 5
"""


class GateWithPages(GateProcess):
    """A gate that also serves the status page ([counter] without a desk)."""

    def config(
        self,
        central_url: str | Sequence[str],
        pull_interval: float,
        push_port: int = 0,
        push_url: str = "",
    ) -> Path:
        """The gate's configuration with a [counter] section."""
        path = super().config(central_url, pull_interval, push_port, push_url)
        with path.open("a", encoding="utf-8") as file:
            file.write('\n[counter]\nport = 0\ntoken_file = "api.token"\n')
        return path

    @property
    def url(self) -> str:
        """Where its pages are (from its log)."""
        match = re.search(r"device API and pages on (\S+)", self.log.read_text())
        assert match, self.log.read_text()[-2000:]
        return match.group(1)

    @property
    def token(self) -> str:
        """Its API token."""
        return (self.directory / "api.token").read_text().strip()


class Venue:
    """The central system with an annual pass, its voucher, and a gate."""

    def __init__(self, directory: Path) -> None:
        self.central = CentralProcess(directory / "central")
        db = self.central.db
        db.keys.add()
        self.annual = db.catalogue.add_product(
            "Annual pass", kind=Kind.PASS, policy=EntryPolicy.unlimited(0), days=365
        )
        self.voucher_product = db.desk.add_voucher_product("Annual pass voucher", self.annual)
        key_id, public, _ = db.keys.public_keys()[0]
        self.key_id, self.public_b64 = key_id, base64.b64encode(public).decode()
        self.gate = GateWithPages(directory / "gate", "gate-1", key_id, self.public_b64)
        db.devices.add("gate-1", self.gate.public_key)

    def sell_voucher(self) -> str:
        """A voucher sold at the till; its code."""
        return self.central.db.desk.sell_voucher(self.voucher_product, BUYER).code

    def gate_current(self, timeout: float = 20.0) -> None:
        """Wait until the gate holds the central system's head."""
        head = self.central.db.log.head()
        wait_for(lambda: (self.gate.revision() or 0) >= head, timeout, "the gate to catch up")

    def close(self) -> None:
        """Stop the gate and the central system."""
        self.gate.kill(signal.SIGTERM)
        self.central.close()


class CounterProcess:
    """`edge run` for the pass desk, with its token, printer output and scanner FIFO."""

    def __init__(self, directory: Path, venue: Venue, name: str = "desk-1") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.name = name
        self.cards = directory / "cards"
        self.cards.mkdir()
        self.fail_flag = directory / "printer-jammed"
        self.tickets = directory / "tickets.fgl"
        self.fifo = directory / "scans"
        os.mkfifo(self.fifo)
        self.store_path = directory / "edge.db"
        self.log = directory / "counter.log"
        self.token_file = directory / "api.token"
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self._writer: int | None = None
        lp = directory / "lp"
        lp.write_text(
            "#!/bin/sh\n"
            "for a; do f=$a; done\n"
            f'if [ -e {self.fail_flag} ]; then echo "lp: card jam in the feeder" >&2; exit 1; fi\n'
            f'cp "$f" {self.cards}/card-$(date +%s%N).png\n'
            'echo "request id is cards-1"\n'
        )
        lp.chmod(0o755)
        self.lp = lp
        ident = identity.ensure(identity.path_for(self.store_path))
        venue.central.db.devices.add(name, base64.b64decode(ident.public_b64))
        self.venue = venue
        self.allowed_origins: list[str] = []  # [counter] allowed_origins
        self.language = "en"  # [device] language
        self.timezone = ""  # [device] timezone
        self.terms = ""  # the venue's terms; empty: no [counter] terms_file
        self.counter_keys = ""  # more [counter] keys (TOML lines)
        self.more_toml = ""  # more tables, e.g. [[scanners]]

    def config(self, central_url: str) -> Path:
        """Write the counter's configuration."""
        path = self.directory / "counter.toml"
        terms = ""
        if self.terms:
            (self.directory / "terms.txt").write_text(self.terms, encoding="utf-8")
            terms = 'terms_file = "terms.txt"'
        path.write_text(
            f"""
[device]
name = "{self.name}"
store = "edge.db"
language = "{self.language}"
timezone = "{self.timezone}"

[[keys]]
id = {self.venue.key_id}
public = "{self.venue.public_b64}"

[[scanners]]
name = "desk-scanner"
type = "lines"
path = "{self.fifo}"

[[printers]]
name = "tickets"
type = "boca"
connection = "file:{self.tickets}"

[[printers]]
name = "cards"
type = "cups"
queue = "Evolis"
command = "{self.lp}"

[metrics]
enabled = false

[sync]
url = "{central_url}"
push_port = 0
pull_interval_seconds = 1.0
timeout_seconds = 2.0

[counter]
port = 0
token_file = "api.token"
card_template = "annual-pass"
ticket_template = "voucher-ticket"
allowed_origins = {json.dumps(self.allowed_origins)}
{terms}
{self.counter_keys}
{self.more_toml}
{CARD_TEMPLATE}{TICKET_TEMPLATE}""",
            encoding="utf-8",
        )
        return path

    def start(self, central_url: str) -> None:
        """Start the daemon; wait for its device API and open the scanner FIFO."""
        config = self.config(central_url)
        before = self.log.read_text() if self.log.exists() else ""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        found: list[str] = []

        def listening() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"counter died: {self.log.read_text()[-3000:]}")
            match = re.search(r"device API and pages on (\S+)", self.log.read_text()[len(before) :])
            if match:
                found.append(match.group(1))
            return bool(found)

        wait_for(listening, STARTUP_TIMEOUT, "the counter's device API")
        self.url = found[0]
        self._writer = os.open(self.fifo, os.O_WRONLY)

    @property
    def token(self) -> str:
        """The API token the counter created."""
        return self.token_file.read_text().strip()

    def scan(self, code: str) -> None:
        """A code read by the desk's scanner."""
        assert self._writer is not None
        os.write(self._writer, code.encode() + b"\n")

    def call(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        """An authenticated API call: (status, JSON answer)."""
        request = urllib.request.Request(
            self.url + path,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            method="GET" if body is None else "POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=90) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def printed(self) -> list[Path]:
        """Card images printed so far, oldest first."""
        return sorted(self.cards.glob("card-*.png"))

    def desk_operations(self) -> list[tuple[str, str]]:
        """(operation, state) of every desk operation in the counter's store."""
        conn = sqlite3.connect(f"file:{self.store_path}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute(
                "SELECT operation, state FROM desk_operations ORDER BY seq"
            ).fetchall()
        finally:
            conn.close()

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self._writer is not None:
            os.close(self._writer)
            self._writer = None
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(20)
        self.process = None


def read_tickets(path: Path) -> list[str]:
    """The QR codes on every BOCA ticket printed to `path`."""
    tickets = render(path.read_bytes(), 384, 1100) if path.exists() else []
    return [r.text for image in tickets for r in zxingcpp.read_barcodes(image)]


def read_card(path: Path) -> str:
    """The code in a printed card's QR code."""
    (found,) = zxingcpp.read_barcodes(Image.open(path))
    return str(found.text)
