"""Templates: layouts in data, their validation, and what they render to (read back)."""

from __future__ import annotations

import dataclasses
import io
import tomllib
from pathlib import Path
from typing import Any

import pytest
import zxingcpp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from edge.core.errors import ConfigError, PrinterError
from edge.counter.templates import Kind, Template

TICKET = """
name = "day"
kind = "ticket"
fields = ["event", "date", "code"]
max_chars = { code = 24 }  # legacy codes: short enough for Code 128
[[items]]
type = "logo"
x = 20
y = 20
path = "logo.png"
[[items]]
type = "text"
x = 150
y = 24
text = "{event}"
font = "F6"
max_width = 620
[[items]]
type = "text"
x = 150
y = 90
text = "Valid {date}"
font = "F9"
[[items]]
type = "box"
x = 4
y = 4
width = 1092
height = 376
[[items]]
type = "qr"
x = 820
y = 120
data = "{code}"
module = 6
[[items]]
type = "code128"
x = 30
y = 250
data = "{code}"
height = 64
readable = true
"""

CARD = """
name = "pass"
kind = "card"
fields = ["holder", "number", "valid", "code"]
max_chars = { code = 14 }
[[items]]
type = "text"
x = 40
y = 40
text = "{holder}"
size = 56
max_width = 600
[[items]]
type = "text"
x = 40
y = 120
text = "Pass {number} - valid until {valid}"
size = 32
[[items]]
type = "photo"
x = 720
y = 40
field = "photo"
width = 250
height = 320
[[items]]
type = "qr"
x = 40
y = 240
data = "{code}"
module = 8
[[items]]
type = "code128"
x = 330
y = 480
data = "{code}"
height = 100
module = 3
"""


def load(text: str, tmp_path: Path, **override: Any) -> Template:
    table = tomllib.loads(text)
    table.update(override)
    logo = Image.new("L", (100, 50), 255)
    logo.paste(0, (10, 10, 90, 40))
    logo.save(tmp_path / "logo.png")
    return Template.from_table(table, "templates[0]", str(tmp_path / "edge.toml"))


def read(image: Image.Image) -> list[str]:
    return sorted(r.text for r in zxingcpp.read_barcodes(image))


def photo(width: int = 300, height: int = 400) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height), 90).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_ticket_renders_fgl_whose_codes_read_back(tmp_path: Path) -> None:
    template = load(TICKET, tmp_path)
    assert template.kind is Kind.TICKET
    document = template.render({"event": "CITY MUSEUM", "date": "2026-11-23", "code": "EDGE:T1"})
    assert document.startswith(b"<ID1>\x1b")  # the logo is downloaded first
    assert document.endswith(b"<p>")
    preview = template.preview({"event": "CITY MUSEUM", "date": "2026-11-23", "code": "EDGE:T1"})
    assert read(preview) == ["EDGE:T1", "EDGE:T1"]
    assert preview.getpixel((50, 40)) == 0  # the logo's black bar


def test_a_card_renders_an_image_whose_codes_read_back(tmp_path: Path) -> None:
    template = load(CARD, tmp_path)
    values = {"holder": "Ann Smith", "number": "4711", "valid": "2027-11-22", "code": "EDGE:C9"}
    image = template.preview(values, {"photo": photo()})
    assert image.size == (1016, 648)
    assert read(image) == ["EDGE:C9", "EDGE:C9"]
    assert image.getpixel((800, 100)) == 90  # the photo
    without = template.preview(values)  # the photo is optional
    assert without.getpixel((800, 100)) == 255


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"colour": "red"}, "unknown key 'colour'"),
        ({"kind": "poster"}, "kind must be 'ticket' or 'card'"),
        ({"fields": ["event", "code"]}, r"placeholder \{date\} is not in fields"),
        ({"items": [{"type": "banner", "x": 1, "y": 1}]}, "type 'banner' is unknown"),
        ({"items": [{"type": "text", "x": 1, "y": 1, "txt": "a"}]}, "unknown key 'txt'"),
        (
            {"items": [{"type": "text", "x": "1", "y": 1, "text": "a"}]},
            "x: must be integer, not str '1'",
        ),
        ({"items": [{"type": "text", "x": 1, "y": 1, "text": "{a.b}"}]}, "plain"),
        ({"items": [{"type": "text", "x": 1, "y": 1, "text": "a", "font": "F99"}]}, "font"),
        ({"items": [{"type": "text", "x": 5000, "y": 1, "text": "a"}]}, "does not fit"),
        ({"items": [{"type": "logo", "x": 1050, "y": 1, "path": "logo.png"}]}, "does not fit"),
        ({"items": [{"type": "logo", "x": 1, "y": 1, "path": "nope.png"}]}, "cannot read"),
        (
            {"items": [{"type": "photo", "x": 1, "y": 1, "field": "p", "width": 9, "height": 9}]},
            "cards only",
        ),
    ],
)
def test_bad_templates_name_the_key(tmp_path: Path, override: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load(TICKET, tmp_path, **override)
    assert "templates[0]" in str(caught.value)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"event": "X", "date": "d", "code": "c", "seat": "1"}, "has no field 'seat'"),
        ({"event": "X", "code": "c"}, "needs field 'date'"),
        ({"event": "X" * 40, "date": "d", "code": "c"}, "more than its max_width"),
        ({"event": "Łódź", "date": "d", "code": "c"}, r"'Ł' \(U\+0141\) is not in resident font"),
        ({"event": "a<b", "date": "d", "code": "c"}, "'<'"),
        ({"event": "X", "date": "d" * 80, "code": "c"}, "does not fit"),
        ({"event": "X", "date": "d", "code": "c" * 300}, "longer than 200"),
    ],
)
def test_bad_ticket_jobs_fail_before_any_byte(
    tmp_path: Path, fields: dict[str, str], message: str
) -> None:
    template = load(TICKET, tmp_path)
    with pytest.raises(PrinterError, match=message):
        template.render(fields)


def test_bad_card_jobs_fail_before_any_byte(tmp_path: Path) -> None:
    template = load(CARD, tmp_path)
    good = {"holder": "Ann", "number": "1", "valid": "2027", "code": "EDGE:1"}
    with pytest.raises(PrinterError, match=r"no character '漢' \(U\+6F22\)"):
        template.render({**good, "holder": "漢字"})
    with pytest.raises(PrinterError, match="dots wide at size 56, more than its max_width 600"):
        template.render({**good, "holder": "W" * 60})
    with pytest.raises(PrinterError, match="larger than"):
        template.render(good, {"photo": photo(5000, 5000)})
    with pytest.raises(PrinterError, match="not a readable image"):
        template.render(good, {"photo": b"GIF89a-but-not-really"})
    with pytest.raises(PrinterError, match="no image field 'selfie'"):
        template.render(good, {"selfie": photo()})


def test_a_logo_without_its_bitmap_is_a_printer_error(tmp_path: Path) -> None:
    """A Template built without from_table's loaded logos fails with a reason, not an assert."""
    template = load(TICKET, tmp_path)
    bare = dataclasses.replace(template, logos=(None,) * len(template.items))
    values = {"event": "X", "date": "d", "code": "c"}
    with pytest.raises(PrinterError, match=r"items\[0\]: the template has no bitmap"):
        bare.render(values)
    card = dataclasses.replace(bare, kind=Kind.CARD, width=1000, height=600)
    with pytest.raises(PrinterError, match=r"items\[0\]: the template has no bitmap"):
        card.render(values)


def code_text(longest: int) -> st.SearchStrategy[str]:
    """Codes in the characters both symbologies and the FGL take, short enough to fit."""
    alphabet = st.characters(min_codepoint=0x21, max_codepoint=0x7C, exclude_characters="<")
    return st.text(alphabet=alphabet, min_size=1, max_size=longest)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(code=code_text(24))
def test_any_code_printed_on_a_ticket_reads_back(tmp_path: Path, code: str) -> None:
    template = load(TICKET, tmp_path)
    preview = template.preview({"event": "X", "date": "d", "code": code})
    assert read(preview) == [code, code]


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(code=code_text(14))
def test_any_code_printed_on_a_card_reads_back(tmp_path: Path, code: str) -> None:
    template = load(CARD, tmp_path)
    image = template.preview({"holder": "A", "number": "1", "valid": "v", "code": code})
    assert read(image) == [code, code]


def test_a_signed_code_bound_to_code128_is_a_config_check_error(tmp_path: Path) -> None:
    """`edge config check` names the item, the field and what to use instead."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    config = tmp_path / "edge.toml"
    config.write_text(
        '[device]\nname = "box-office-1"\nstore = "edge.db"\n\n'
        '[[templates]]\nname = "day"\nkind = "ticket"\nfields = ["code"]\n'
        '[[templates.items]]\ntype = "code128"\nx = 30\ny = 240\ndata = "{code}"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "edge.cli", "config", "check", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 78, result.stdout
    assert "templates[0]: items[0]: Code 128 cannot hold {code}" in result.stderr
    assert "a signed code, up to 175 characters" in result.stderr
    assert "Print signed codes as a qr item" in result.stderr


@pytest.mark.parametrize(
    ("item", "message"),
    [
        # A pass number fits Code 128 from the left edge, not from x 900.
        ({"type": "code128", "x": 900, "y": 200, "data": "{number}"}, r"\{number\} \(up to 19"),
        # An undeclared field may be 200 characters: too long for any QR here.
        ({"type": "qr", "x": 800, "y": 20, "data": "{price}"}, "declare shorter values"),
        # The largest signed code at module 8 does not fit a 384-dot ticket.
        ({"type": "qr", "x": 700, "y": 20, "data": "{code}", "module": 8}, "up to 424 dots"),
    ],
)
def test_codes_are_checked_for_their_fields_longest_values(
    tmp_path: Path, item: dict[str, Any], message: str
) -> None:
    table: dict[str, Any] = {
        "name": "t",
        "kind": "ticket",
        "fields": ["code", "number", "price"],
        "items": [item],
    }
    with pytest.raises(ConfigError, match=message):
        Template.from_table(table, "templates[0]", str(tmp_path / "edge.toml"))
    # Declared short, the same field fits.
    if item["data"] == "{price}":
        table["max_chars"] = {"price": 12}
        Template.from_table(table, "templates[0]", str(tmp_path / "edge.toml"))


@pytest.mark.parametrize(
    ("max_chars", "message"),
    [
        ({"price": 0}, "1..200 characters"),
        ({"price": "12"}, "1..200 characters"),
        ({"seat": 4}, "'seat' is not in fields"),
    ],
)
def test_bad_max_chars_name_the_key(
    tmp_path: Path, max_chars: dict[str, Any], message: str
) -> None:
    table = {
        "name": "t",
        "kind": "ticket",
        "fields": ["price"],
        "max_chars": max_chars,
        "items": [{"type": "text", "x": 1, "y": 1, "text": "{price}"}],
    }
    with pytest.raises(ConfigError, match=message) as caught:
        Template.from_table(table, "templates[0]", str(tmp_path / "edge.toml"))
    assert "templates[0].max_chars" in str(caught.value)


def test_a_value_longer_than_its_declared_limit_is_refused(tmp_path: Path) -> None:
    template = load(TICKET, tmp_path)
    with pytest.raises(PrinterError, match="has 25 characters, more than the 24"):
        template.render({"event": "X", "date": "d", "code": "C" * 25})


GRAPHIC = """
name = "names"
kind = "ticket"
fields = ["holder"]
[[items]]
type = "text"
x = 30
y = 30
text = "{holder}"
font = "sans-bold"
size = 40
max_width = 500
[[items]]
type = "text"
x = 1000
y = 30
text = "{holder}"
font = "sans"
size = 30
rotation = "right"
max_width = 340
"""


def test_graphic_text_prints_any_latin_name_as_a_downloaded_logo(tmp_path: Path) -> None:
    template = load(GRAPHIC, tmp_path)
    document = template.render({"holder": "Łucja Dvořák"})
    assert document.count(b"\x1b") == 4  # two logos, each between two ESCs
    assert b"<SP30,30><LD1>" in document
    assert b"<SP30,1000><LD2>" in document
    image = template.preview({"holder": "Łucja Dvořák"})
    assert image.crop((30, 30, 530, 80)).getextrema()[0] == 0  # the name is drawn
    rotated = image.crop((1000, 30, 1045, 384))
    assert rotated.getextrema()[0] == 0  # the rotated copy runs down the stub
    assert image.crop((530, 0, 990, 384)).getextrema() == (255, 255)  # nothing between


def test_graphic_text_shrinks_to_fit_then_is_refused(tmp_path: Path) -> None:
    template = load(GRAPHIC, tmp_path)
    long = template.preview({"holder": "Maximilian Alexander von Łęczycki"})
    assert long.crop((531, 0, 990, 384)).getextrema() == (255, 255)  # shrunk into 500 dots
    with pytest.raises(PrinterError, match="more than its max_width 500 even at 24"):
        template.render({"holder": "Maximilian Alexander Friedrich von Łęczycki-Dvořák"})
    with pytest.raises(PrinterError, match=r"the font has no character '漢' \(U\+6F22\)"):
        template.render({"holder": "漢字"})


def test_resident_fonts_take_their_own_character_sets(tmp_path: Path) -> None:
    template = load(TICKET, tmp_path)
    table = tomllib.loads(TICKET)
    table["items"][1]["font"] = "F8"  # Courier: the whole of code page 850
    courier = Template.from_table(table, "templates[0]", str(tmp_path / "edge.toml"))
    document = courier.render({"event": "Élodie Øre", "date": "d", "code": "c"})
    assert "Élodie Øre".encode("cp850") in document
    with pytest.raises(PrinterError, match=r"'É' \(U\+00C9\) is not in resident font F6"):
        template.render({"event": "Élodie", "date": "d", "code": "c"})
    assert template.render({"event": "Müller", "date": "d", "code": "c"})  # F6 has umlauts


def test_card_text_defaults_to_a_font_with_every_latin_letter(tmp_path: Path) -> None:
    template = load(CARD, tmp_path)
    values = {"holder": "ÄÖÜäöüßéèçłŁčř", "number": "1", "valid": "2027", "code": "EDGE:1"}
    image = template.preview(values)
    assert read(image) == ["EDGE:1", "EDGE:1"]
    assert image.crop((40, 40, 640, 110)).getextrema()[0] == 0


MATRIX = """
name = "matrix"
kind = "card"
fields = ["holder", "code"]
[[items]]
type = "text"
x = 40
y = 40
text = "{holder}"
size = 48
[[items]]
type = "aztec"
x = 40
y = 150
data = "{code}"
module = 6
[[items]]
type = "pdf417"
x = 400
y = 150
data = "{code}"
module = 3
"""


def test_cards_print_signed_codes_as_aztec_and_pdf417(tmp_path: Path) -> None:
    template = load(MATRIX, tmp_path)
    code = "EDGE:" + "CUAACAQAAABAEBLLBTU6U3HODVU367C7EXZC7BT4GGW3I26CZOCIYEUBEYDCU2VXN3CU" * 2
    image = template.preview({"holder": "Łucja Dvořák", "code": code[:175]})
    found = sorted((r.format.name, r.text) for r in zxingcpp.read_barcodes(image))
    assert found == [("Aztec", code[:175]), ("PDF417", code[:175])]


def test_aztec_on_a_ticket_and_an_oversized_pdf417_are_config_errors(tmp_path: Path) -> None:
    ticket = tomllib.loads(MATRIX)
    ticket["kind"] = "ticket"
    ticket["items"] = ticket["items"][1:2]
    with pytest.raises(ConfigError, match="Aztec prints on cards only"):
        Template.from_table(ticket, "templates[0]", str(tmp_path / "edge.toml"))
    card = tomllib.loads(MATRIX)
    card["items"][2]["module"] = 6
    with pytest.raises(ConfigError, match=r"items\[2\]: the code of \{code\} \(a signed code"):
        Template.from_table(card, "templates[0]", str(tmp_path / "edge.toml"))


LATIN = st.text(
    alphabet=st.characters(min_codepoint=0xC0, max_codepoint=0x17F, categories=["Lu", "Ll"]),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=LATIN)
def test_any_latin_name_prints_as_graphic_text_and_on_cards(tmp_path: Path, name: str) -> None:
    """Latin-1 and Latin Extended-A letters: every one is in the shipped font, on both media."""
    ticket = load(GRAPHIC, tmp_path)
    ticket.render({"holder": name})
    card = load(CARD, tmp_path)
    card.render({"holder": name, "number": "1", "valid": "2027", "code": "EDGE:1"})
