"""Card printers: the Evolis command stream over pyusb, and CUPS through an `lp` on PATH."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import pytest
import zxingcpp

from drivers.printers.card import CupsPrinter, EvolisPrinter, command, evolis_job
from drivers.printers.transports import UsbTransport
from edge.core.errors import PrinterError
from edge.counter.templates import Template
from printers.sim import EvolisSimulator, UsbPrinterBackend

EVOLIS_VENDOR = 0x0F49
PRIMACY = 0x1001

CARD = tomllib.loads(
    """
name = "pass"
kind = "card"
fields = ["holder", "number", "code"]
[[items]]
type = "text"
x = 40
y = 40
text = "{holder}"
size = 56
[[items]]
type = "text"
x = 40
y = 120
text = "Annual pass {number}"
size = 32
[[items]]
type = "qr"
x = 40
y = 220
data = "{code}"
module = 7
[[items]]
type = "code128"
x = 480
y = 480
data = "{number}"
height = 110
module = 3
"""
)


def card_png(code: str) -> bytes:
    template = Template.from_table(CARD, "templates[0]", "edge.toml")
    return template.render({"holder": "Ann Smith", "number": "4711", "code": code})


def test_commands_are_esc_text_cr() -> None:
    assert command("Ss") == bytes.fromhex("1b 53 73 0d")  # ESC S s CR: sequence start


async def test_an_evolis_card_over_usb_reads_back() -> None:
    sim = EvolisSimulator()
    backend = UsbPrinterBackend(sim, EVOLIS_VENDOR, PRIMACY)
    printer = EvolisPrinter("cards", UsbTransport(EVOLIS_VENDOR, PRIMACY, backend=backend))
    await printer.print(card_png("EDGE:PASS-4711"))
    await printer.close()
    assert sim.commands == ["Pr;k", "Pmi;F;s", "Pc;k;=;10", "Ss", "Sr", "Db;k;2", "Se"]
    (printed,) = sim.cards
    assert printed.size == (1016, 648)
    found = sorted((r.format.name, r.text) for r in zxingcpp.read_barcodes(printed))
    assert found == [("Code128", "4711"), ("QRCode", "EDGE:PASS-4711")]


def test_a_card_image_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(PrinterError, match="1016x648"):
        evolis_job(Template.from_table(
            {**CARD, "height": 640}, "t", "edge.toml"
        ).render({"holder": "A", "number": "1", "code": "C"}))  # fmt: skip


def fake_lp(tmp_path: Path, script: str) -> str:
    path = tmp_path / "lp"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


async def test_cups_hands_the_png_to_lp(tmp_path: Path) -> None:
    log = tmp_path / "lp.log"
    script = [
        f'echo "$@" > {log}',
        "for a; do f=$a; done",
        f'cp "$f" {tmp_path}/got.png',
        'echo "request id is cards-7"',
    ]
    lp = fake_lp(tmp_path, "\n".join(script))
    printer = CupsPrinter("cards", "Evolis_Primacy", command=lp)
    document = card_png("EDGE:CUPS-1")
    await printer.print(document)
    args = log.read_text().split()
    assert args[:4] == ["-d", "Evolis_Primacy", "-t", "edge"]
    assert (tmp_path / "got.png").read_bytes() == document


async def test_cups_refusal_is_a_printer_error(tmp_path: Path) -> None:
    lp = fake_lp(tmp_path, 'echo "lp: The printer or class does not exist." >&2; exit 1')
    printer = CupsPrinter("cards", "nope", command=lp)
    with pytest.raises(PrinterError, match="does not exist"):
        await printer.print(card_png("EDGE:X"))


async def test_missing_lp_is_a_printer_error(tmp_path: Path) -> None:
    printer = CupsPrinter("cards", "q", command=os.fspath(tmp_path / "no-lp"))
    with pytest.raises(PrinterError, match="cups-client"):
        await printer.print(card_png("EDGE:X"))
