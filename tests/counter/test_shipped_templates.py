"""The shipped templates print real codes and full Latin names, end to end.

Codes come from `edge-central sell` (a real process and database), the largest possible signed
code from `mint`; each ticket goes through the BOCA driver to the simulated printer (the FGL
interpreter draws it), each card through the Evolis driver to the simulated card printer (the
raster it receives); zxing-cpp must read every code back. The images are written to
$EDGE_TEST_ARTIFACTS when it is set, for a person to look at.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import zxingcpp
from conftest import PRIVATE, mint_code
from PIL import Image
from printers.sim import BocaSimulator, EvolisSimulator, TcpPrinter, UsbPrinterBackend

from drivers.printers.boca import BocaPrinter
from drivers.printers.card import EvolisPrinter
from drivers.printers.transports import TcpTransport, UsbTransport
from edge import printcli
from edge.config import load
from edge.core.codes import MAX_CREDENTIAL_ID, MAX_ID, Claims, EntryPolicy, Kind, Validity
from edge.counter.templates import MAX_CODE_CHARS, Template

ROOT = Path(__file__).parents[2]
NAME = "ÄÖÜäöüßéèçłŁčř"
EVOLIS, PRIMACY = 0x0F49, 0x1001


def central(db: Path, *args: str) -> str:
    """Run edge-central and return what it printed."""
    result = subprocess.run(
        [sys.executable, "-m", "sync.central.cli", "--db", str(db), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def sold(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    """(credential id, code) of a day ticket and an annual pass sold by edge-central."""
    db = tmp_path_factory.mktemp("central") / "central.db"
    central(db, "key", "add")
    central(db, "event", "add", "City Museum")
    central(db, "product", "add", "Day ticket")
    central(
        db, "product", "add", "Annual pass", "--kind", "pass", "--unlimited", "5", "--days", "365"
    )
    out: dict[str, tuple[str, str]] = {}
    for kind, args in (("ticket", ("1", "--event", "1")), ("pass", ("2", "--holder", NAME))):
        number, code = central(db, "sell", *args).split()[-2:]
        assert code.startswith("EDGE:"), code
        out[kind] = (number, code)
    return out


def largest_code() -> str:
    """A signed code with every field at its maximum: the longest a template must hold."""
    claims = Claims(
        key_id=65535,
        credential_id=MAX_CREDENTIAL_ID,
        kind=Kind.PASS,
        event_id=MAX_ID,
        product_id=MAX_ID,
        policy=EntryPolicy.unlimited(65535),
        validity=Validity(
            datetime(2100, 1, 1, tzinfo=UTC), datetime(2106, 2, 7, 6, 28, 15, tzinfo=UTC)
        ),
        zones=2**32 - 1,
        reissue=65535,
    )
    return mint_code(claims, PRIVATE)


def values(template: Template, number: str, code: str) -> dict[str, str]:
    """Values a counter fills in: the name in every text field the template has."""
    sample = {
        "code": code,
        "number": number,
        "event": "Städtisches Muzeum Łódź",
        "holder": NAME,
        "first_name": "Łucja",
        "surname": NAME,
        "product": "Tageskarte",
        "date": "2026-11-23",
        "valid_from": "2026-11-23",
        "valid_until": "2027-11-22",
        "price": "EUR 12,50",
        "printer": "tickets",
        "when": "2026-11-23 10:15",
    }
    return {field: sample[field] for field in template.fields}


def artifact(image: Image.Image, name: str) -> None:
    folder = os.environ.get("EDGE_TEST_ARTIFACTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        image.save(Path(folder) / name)


def read(image: Image.Image) -> list[tuple[str, str]]:
    return sorted((r.format.name, r.text) for r in zxingcpp.read_barcodes(image))


def shipped() -> Iterator[Template]:
    yield from load(ROOT / "config" / "counter.toml").templates
    for table in (printcli.TEST_TICKET, printcli.TEST_CARD):
        yield Template.from_table(table, "test", str(ROOT / "config" / "counter.toml"))


async def print_ticket(document: bytes) -> Image.Image:
    """Print FGL through the BOCA driver to the simulated printer; the ticket it draws."""
    sim = BocaSimulator()
    server = TcpPrinter(sim)
    port = await server.start()
    printer = BocaPrinter("tickets", TcpTransport("127.0.0.1", port))
    try:
        await printer.print(document)
    finally:
        await printer.close()
        await server.stop()
    (ticket,) = sim.tickets
    return ticket


async def print_card(document: bytes) -> Image.Image:
    """Print a card image through the Evolis driver; the side the printer rebuilds."""
    sim = EvolisSimulator()
    backend = UsbPrinterBackend(sim, EVOLIS, PRIMACY)
    printer = EvolisPrinter("cards", UsbTransport(EVOLIS, PRIMACY, backend=backend))
    try:
        await printer.print(document)
    finally:
        await printer.close()
    (card,) = sim.cards
    return card


def test_the_largest_signed_code_is_the_one_templates_are_checked_for() -> None:
    assert len(largest_code()) == MAX_CODE_CHARS


@pytest.mark.parametrize("template", list(shipped()), ids=lambda t: t.name)
@pytest.mark.parametrize("which", ["ticket", "pass", "largest"])
async def test_every_shipped_template_prints_codes_that_read_back(
    template: Template, which: str, sold: dict[str, tuple[str, str]]
) -> None:
    number, code = (str(2**63 - 1), largest_code()) if which == "largest" else sold[which]
    fields = values(template, number, code)
    document = template.render(fields)
    if template.kind.value == "ticket":
        printed = await print_ticket(document)
    else:
        printed = await print_card(document)
    artifact(printed, f"{template.name}-{which}.png")
    preview = template.preview(fields)
    # What the operator previews is what comes out of the printer: the same dots on a ticket,
    # the same image dithered to the card printer's black and white on a card.
    if template.kind.value == "ticket":
        assert preview.tobytes() == printed.tobytes()
    else:
        dithered = preview.transpose(Image.Transpose.ROTATE_270).convert("1")
        assert (
            dithered.transpose(Image.Transpose.ROTATE_90).tobytes()
            == printed.convert("1").tobytes()
        )
    found = read(printed)
    wanted = {("QRCode", code)} if "{code}" in str(template.items) else set()
    if "{number}" in str(template.items):
        wanted.add(("Code128", number))
    assert wanted <= set(found), found
    assert {text for _, text in found} <= {code, number, "EDGE-TEST"} | {
        f"EDGE-TEST {fields.get('printer', '')}"
    }
    assert found, "no code on the printed page"


def test_the_name_prints_where_each_shipped_template_puts_it(
    sold: dict[str, tuple[str, str]],
) -> None:
    """Each name field draws the name: the text area is not blank and differs from ASCII."""
    config = load(ROOT / "config" / "counter.toml")
    for template in config.templates:
        number, code = sold["pass"]
        fields = values(template, number, code)
        with_name = template.preview(fields)
        ascii_name = template.preview(
            {k: v.replace(NAME, "AOUaousseeclLcr") for k, v in fields.items()}
        )
        assert with_name.tobytes() != ascii_name.tobytes(), template.name
        buffer = io.BytesIO()
        with_name.save(buffer, "PNG")
        assert buffer.tell() > 0


def test_a_voucher_ticket_without_a_holder_prints_without_the_name_line(
    sold: dict[str, tuple[str, str]],
) -> None:
    """The desk prints vouchers sold at the till: no holder yet, so that line stays empty."""
    (ticket,) = [
        t for t in load(ROOT / "config" / "counter.toml").templates if t.name == "day-ticket"
    ]
    number, code = sold["ticket"]
    fields = {**values(ticket, number, code), "holder": ""}
    image = ticket.preview(fields)
    assert image.crop((32, 100, 760, 145)).getextrema() == (255, 255)
    assert ("QRCode", code) in read(image)
