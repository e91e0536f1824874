"""The pass desk's own checks and texts: errors in the device's language without internal
terms, names the card cannot print refused before anything prints, the terms printed once per
request on the ticket printer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest

from drivers.printers.boca import BocaPrinter
from drivers.printers.fglrender import render
from drivers.printers.transports import FileTransport
from drivers.protocols import Printer
from edge.counter import terms
from edge.counter.desk import Desk, DeskError, Holder, IssueForm
from edge.counter.printqueue import JobState, PrintQueue
from edge.counter.templates import Template
from edge.store.database import Store

CARD = {
    "name": "annual-pass",
    "kind": "card",
    "fields": ["holder", "valid_until", "code"],
    "items": [
        {"type": "text", "x": 40, "y": 40, "text": "{holder}", "size": 40},
        {"type": "text", "x": 40, "y": 120, "text": "valid until {valid_until}", "size": 30},
        {"type": "qr", "x": 40, "y": 220, "data": "{code}", "module": 8},
    ],
}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(tmp_path / "edge.db")
    try:
        yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def desk_with(
    store: Store, out: Path, pages: tuple[Template, ...] = ()
) -> AsyncIterator[tuple[Desk, PrintQueue]]:
    card = Template.from_table(CARD, "templates[0]", "test.toml")
    printers: dict[str, Printer] = {"tickets": BocaPrinter("tickets", FileTransport(out))}
    queue = PrintQueue(store, printers, {card.name: card}, retry_delay=0.01)
    desk = Desk(store, queue, card_template=card, central=None, language="de", terms=pages)
    task = asyncio.create_task(queue.run())
    try:
        yield desk, queue
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_desk_errors_speak_the_device_s_language_with_kinds_and_states_translated() -> None:
    err = DeskError("voucher_state", field="voucher", state="redeemed")
    assert str(err) == "This voucher is redeemed already"
    assert err.text("de") == "Dieser Gutschein ist bereits eingelöst"
    assert err.text("fr") == "Ce bon est déjà utilisé"
    assert err.title("de") == err.text("de")  # no detail: the whole text is the headline
    failed = DeskError("card_failed", detail="cards: lp: card jam in the feeder")
    assert failed.title("de") == "Karte nicht gedruckt: nicht ausgegeben"
    assert failed.detail == "cards: lp: card jam in the feeder"
    assert "card jam" in failed.text("de")


@pytest.mark.parametrize(
    ("form", "field", "german"),
    [
        ({"surname": " "}, "surname", "Nachname fehlt"),
        ({"first_name": "x" * 201}, "first_name", "Vorname: höchstens 200 druckbare Zeichen"),
        ({"address": None}, "address", "Adresse fehlt"),
        ({"valid_from": "31.02.2027"}, "valid_from", "Gültig-ab-Datum fehlt"),
        ({"shipping": "drone"}, "shipping", "Versand: Post oder Übergabe wählen"),
        ({"voucher": ""}, "voucher", "Zuerst einen Gutschein scannen"),
    ],
)
def test_a_bad_form_names_its_field_in_words_a_clerk_knows(
    form: dict[str, object], field: str, german: str
) -> None:
    good = {
        "voucher": "EDGE:X",
        "surname": "Jones",
        "first_name": "Bo",
        "address": "n.a.",
        "valid_from": "2027-03-01",
        "shipping": "pickup",
    }
    with pytest.raises(DeskError) as caught:
        IssueForm.parse({**good, **form})
    assert caught.value.field == field
    assert caught.value.text("de") == german
    assert "items[" not in str(caught.value)


async def test_a_name_the_card_font_cannot_draw_is_refused_before_anything_prints(
    store: Store, tmp_path: Path
) -> None:
    async with desk_with(store, tmp_path / "tickets.fgl") as (desk, queue):
        form = IssueForm("EDGE:X", Holder("中村", "Bo", "n.a."), date(2027, 3, 1), "pickup")
        with pytest.raises(DeskError) as caught:
            await desk.issue(form)
        assert caught.value.field == "surname"
        assert caught.value.text("de") == "Nachname: der Kartendrucker kann „中“ nicht drucken"
        assert sum(queue.pending().values()) == 0
        assert store.desk_operations(10) == []


async def test_the_terms_print_once_per_request_on_the_ticket_printer(
    store: Store, tmp_path: Path
) -> None:
    out = tmp_path / "tickets.fgl"
    pages = terms.pages("Allgemeine Geschäftsbedingungen\n\n" + "Wort " * 400)
    async with desk_with(store, out, pages) as (desk, queue):
        assert desk.prints_terms
        answer = await desk.print_terms("k1")
        assert answer == {"key": "k1", "printer": "tickets", "pages": len(pages)}
        again = await desk.print_terms("k1")  # a double click prints nothing new
        assert again["pages"] == len(pages)
        for page in pages:
            record = await queue.wait(f"desk-{page.name}-k1")
            assert record is not None
            assert record.state is JobState.DONE
        with pytest.raises(DeskError, match="key"):
            await desk.print_terms("../x")
    printed = out.read_bytes()
    assert len(render(printed, 384, 1100)) == len(pages) > 1
    assert "Allgemeine Geschäftsbedingungen".encode("cp850") in printed


async def test_a_desk_without_terms_says_so(store: Store, tmp_path: Path) -> None:
    async with desk_with(store, tmp_path / "tickets.fgl") as (desk, _):
        assert not desk.prints_terms
        with pytest.raises(DeskError) as caught:
            await desk.print_terms()
        assert caught.value.text("de") == "Für diesen Platz sind keine AGB eingerichtet"
