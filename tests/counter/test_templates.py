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
