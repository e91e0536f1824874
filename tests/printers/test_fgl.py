"""FGL codec: exact bytes for each command, status folding, and what the interpreter draws."""

from __future__ import annotations

import pytest
import zxingcpp
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from drivers.printers import code128, fgl
from drivers.printers.fglrender import render
from drivers.protocols import PrinterState
from edge.core.errors import PrinterError
from printers.sim import BocaSimulator


def codes(image: Image.Image) -> list[tuple[str, str]]:
    """(format, text) of every barcode zxing-cpp finds."""
    return sorted((r.format.name, r.text) for r in zxingcpp.read_barcodes(image))


def test_commands_are_the_guides_syntax() -> None:
    assert fgl.Text(10, 20, "HI", "F3").to_bytes() == b"<RC10,20><NR><F3><HW1,1>HI"
    assert (
        fgl.Text(5, 6, "X", "F6", 2, 3, fgl.Rotation.RIGHT).to_bytes() == b"<RC5,6><RR><F6><HW2,3>X"
    )
    assert fgl.Box(1, 2, 30, 40, 3).to_bytes() == b"<RC1,2><LT3><BX30,40>"
    assert fgl.Line(1, 2, 50).to_bytes() == b"<RC1,2><LT2><HX50>"
    assert fgl.Line(1, 2, 50, vertical=True, thickness=4).to_bytes() == b"<RC1,2><LT4><VX50>"
    assert fgl.QrCode(7, 8, "ABC", 5, fgl.QrLevel.H).to_bytes() == b"<RC7,8><NR><QR5,0,0,2>{ABC}"
    assert fgl.Code128(9, 10, "A1", 6, readable=True).to_bytes() == b"<RC9,10><BI><OP6>A1"
    assert fgl.Code128(9, 10, "A1", rotation=fgl.Rotation.LEFT).to_bytes() == b"<RC9,10><OL8>A1"
    assert fgl.Logo(3, 4, 2).to_bytes() == b"<SP3,4><LD2>"
    assert fgl.ticket([fgl.Logo(0, 0, 1)]) == b"<SP0,0><LD1><p>"
    assert fgl.ticket([fgl.Logo(0, 0, 1)], cut=False) == b"<SP0,0><LD1><q>"


def test_logo_download_is_bands_of_eight_rows_msb_on_top() -> None:
    rows = [[x == y for x in range(3)] for y in range(9)]  # a diagonal, 3 wide, 9 high
    assert fgl.logo_download(4, rows) == bytes.fromhex(
        "3c 49 44 34 3e"  # <ID4>
        "1b"  # ESC: download begins
        "3c 52 43 30 2c 30 3e 3c 47 33 3e"  # <RC0,0><G3>
        "80 40 20"  # column 0 top dot, column 1 second, column 2 third
        "1b"  # ESC: download ends (band 2 is all white and not sent)
    )


@pytest.mark.parametrize(
    ("element", "message"),
    [
        (fgl.Text(0, 0, "a<b"), "'<'"),
        (fgl.Text(0, 0, "Grüße", font="F7"), r"U\+00FC\) is not in resident font F7"),
        (fgl.Text(0, 0, "Łódź", font="F13"), r"U\+0141\) is not in resident font F13"),
        (fgl.Text(0, 0, "x", font="F5"), "unknown font"),
        (fgl.QrCode(0, 0, "a}b"), "'}'"),
        (fgl.QrCode(0, 0, "x", module=2), "3..16"),
        (fgl.Text(-1, 0, "x"), "outside"),
        (fgl.Code128(0, 0, ""), "needs data"),
    ],
)
def test_bad_elements_are_refused_with_the_reason(element: fgl.Element, message: str) -> None:
    with pytest.raises(PrinterError, match=message):
        element.to_bytes()


@pytest.mark.parametrize(
    ("raw", "state", "printed"),
    [
        (bytes.fromhex("11"), PrinterState.READY, 0),  # X-ON: ready
        (bytes.fromhex("12 11"), PrinterState.READY, 0),  # power on, then ready
        (bytes.fromhex("06 06 11"), PrinterState.READY, 2),  # two tickets acknowledged
        (bytes.fromhex("18 13"), PrinterState.PAPER_OUT, 0),  # out of tickets, X-OFF
        (bytes.fromhex("19 13"), PrinterState.JAM, 0),  # paper jam, X-OFF
        (bytes.fromhex("1c"), PrinterState.HEAD_OPEN, 0),  # head up
        (bytes.fromhex("18 13 11"), PrinterState.READY, 0),  # refilled: X-ON again
        (bytes.fromhex("13"), PrinterState.BUSY, 0),  # X-OFF alone: busy
    ],
)
def test_status_bytes_fold_into_a_state(raw: bytes, state: PrinterState, printed: int) -> None:
    status = fgl.parse_status(raw)
    assert (status.state, status.printed) == (state, printed)


def test_the_interpreter_draws_text_lines_boxes_and_readable_codes() -> None:
    data = fgl.ticket(
        [
            fgl.Box(2, 2, 380, 1090, 3),
            fgl.Line(100, 10, 600),
            fgl.Text(20, 20, "CITY MUSEUM", "F6"),
            fgl.QrCode(120, 760, "EDGE:QR-1234", 6, fgl.QrLevel.Q),
            fgl.Code128(200, 30, "EDGE:C128-42", 8, readable=True),
        ]
    )
    (ticket,) = render(data, 384, 1100)
    assert codes(ticket) == [("Code128", "EDGE:C128-42"), ("QRCode", "EDGE:QR-1234")]
    assert ticket.getpixel((500, 100)) == 0  # the line
    assert ticket.getpixel((2, 200)) == 0  # the box's left edge
    text_area = ticket.crop((20, 20, 20 + 11 * 30, 20 + 52))
    assert text_area.getextrema()[0] == 0  # something is printed where the title goes
    assert ticket.crop((700, 20, 1080, 90)).getextrema() == (255, 255)  # and nothing beside it


def test_rotated_codes_still_read() -> None:
    data = fgl.ticket(
        [
            fgl.QrCode(20, 40, "ROT-RIGHT", 5, rotation=fgl.Rotation.RIGHT),
            fgl.Code128(20, 400, "LADDER-7", 8, rotation=fgl.Rotation.LEFT),
        ]
    )
    (ticket,) = render(data, 384, 1100)
    assert codes(ticket) == [("Code128", "LADDER-7"), ("QRCode", "ROT-RIGHT")]


def test_downloaded_logo_prints_where_placed() -> None:
    rows = [[True] * 40 for _ in range(16)]
    data = fgl.logo_download(1, rows) + fgl.ticket([fgl.Logo(50, 60, 1)])
    (ticket,) = render(data, 384, 1100)
    assert ticket.getpixel((60, 50)) == 0
    assert ticket.getpixel((99, 65)) == 0
    assert ticket.getpixel((100, 50)) == 255
    assert ticket.getpixel((60, 66)) == 255


def test_the_interpreter_refuses_commands_outside_the_subset() -> None:
    with pytest.raises(PrinterError, match="not in the supported subset"):
        render(b"<RC1,1><ZZ9>x<p>", 100, 100)


@settings(max_examples=25, deadline=None)
@given(
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=24)
)
def test_code128_encodes_any_printable_ascii(text: str) -> None:
    bars = code128.modules(text)
    image = Image.new("L", (len(bars) * 2, 40), 255)
    for i, bar in enumerate(bars):
        if bar:
            image.paste(0, (i * 2, 0, i * 2 + 2, 40))
    assert codes(image) == [("Code128", text)]


def test_every_emitted_command_is_documented_with_its_source() -> None:
    import re  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    doc = (Path(__file__).parents[2] / "docs" / "fgl.md").read_text()
    emitted = b"".join(
        [
            fgl.ticket(
                [
                    fgl.Text(1, 1, "A", "F3", 2, 2, fgl.Rotation.LEFT),
                    fgl.Box(1, 1, 5, 5),
                    fgl.Line(1, 1, 5),
                    fgl.Line(1, 1, 5, vertical=True),
                    fgl.QrCode(1, 1, "Q"),
                    fgl.Code128(1, 1, "C", readable=True),
                    fgl.Code128(1, 1, "C", rotation=fgl.Rotation.RIGHT),
                    fgl.Logo(1, 1, 1),
                ]
            ),
            fgl.ticket([], cut=False),
            fgl.logo_download(1, [[True]]),
            fgl.STATUS_REQUEST,
            fgl.PURGE_ON_PAPER_OUT,
        ]
    )
    names = set(re.findall(rb"<([A-Za-z]+)", emitted))
    assert names >= {b"RC", b"QR", b"OP", b"OL", b"ID", b"G", b"p", b"q", b"S", b"PP"}
    for name in sorted(names):
        assert f"`<{name.decode()}" in doc, name


@given(st.binary(max_size=64))
def test_any_status_bytes_fold_into_a_known_state(raw: bytes) -> None:
    status = fgl.parse_status(raw)
    assert isinstance(status.state, PrinterState)
    assert status.printed == raw.count(fgl.ACK)


_TEXT = st.text(alphabet=sorted(fgl.TEXT_CHARACTERS), min_size=1, max_size=12)
_ELEMENTS = st.one_of(
    st.builds(
        fgl.Text,
        st.integers(0, 300),
        st.integers(0, 900),
        _TEXT,
        st.sampled_from(sorted(fgl.FONTS)),
        st.integers(1, 2),
        st.integers(1, 2),
        st.sampled_from(list(fgl.Rotation)),
    ),
    st.builds(
        fgl.Box, st.integers(0, 300), st.integers(0, 900), st.integers(1, 80), st.integers(1, 80)
    ),
    st.builds(
        fgl.Line, st.integers(0, 300), st.integers(0, 900), st.integers(1, 200), st.booleans()
    ),
)


@settings(max_examples=30, deadline=None)
@given(st.lists(_ELEMENTS, max_size=6), st.booleans())
def test_the_interpreter_reads_whatever_the_generator_writes(
    elements: list[fgl.Element], cut: bool
) -> None:
    tickets = render(fgl.ticket(elements, cut=cut), 384, 1100)
    assert len(tickets) == 1
    assert tickets[0].size == (1100, 384)


def _ink_rows(cell: Image.Image) -> tuple[int, int]:
    """First and last row of a cell with any black dot."""
    box = cell.point(lambda v: 255 if v < 128 else 0).getbbox()
    assert box is not None, "an empty cell"
    return box[1], box[3]


def test_resident_font_capitals_share_one_size_and_hyphens_sit_at_mid_height() -> None:
    """The proof an operator rejected: "CITY MUSEUM" as "cITY mUSEuM", hyphens as overlines."""
    data = fgl.ticket(
        [fgl.Text(20, 20, "CITY MUSEUM", "F6"), fgl.Text(100, 20, "2026-11-23", "F3")]
    )
    (ticket,) = render(data, 384, 1100)
    wide = fgl.FONTS["F6"]
    rows = {
        _ink_rows(ticket.crop((20 + i * wide.width, 20, 20 + (i + 1) * wide.width, 72)))
        for i, char in enumerate("CITY MUSEUM")
        if char != " "
    }
    tops, bottoms = {top for top, _ in rows}, {bottom for _, bottom in rows}
    assert max(tops) - min(tops) <= 1, rows  # C, I, M, U: one cap height
    assert max(bottoms) - min(bottoms) <= 1, rows  # on one baseline
    ocr = fgl.FONTS["F3"]

    def cell(i: int) -> tuple[int, int]:
        return _ink_rows(ticket.crop((20 + i * ocr.width, 100, 20 + (i + 1) * ocr.width, 131)))

    digit_top, digit_bottom = cell(0)
    hyphen_top, hyphen_bottom = cell(4)
    middle = (digit_top + digit_bottom) / 2
    assert digit_top < hyphen_top <= middle <= hyphen_bottom < digit_bottom


def test_text_goes_out_in_code_page_850_and_the_interpreter_checks_the_font() -> None:
    assert fgl.Text(1, 2, "Müller", "F3").to_bytes() == b"<RC1,2><NR><F3><HW1,1>M\x81ller"
    assert fgl.Text(1, 2, "Élodie", "F8").to_bytes().endswith(b"\x90lodie")
    (ticket,) = render(fgl.ticket([fgl.Text(20, 20, "Grüße Élodie", "F13")]), 384, 1100)
    assert ticket.crop((20, 20, 260, 60)).getextrema()[0] == 0
    with pytest.raises(PrinterError, match=r"resident font F3 has no character 'é'"):
        render(b"<RC1,1><F3>\x82<p>", 384, 1100)


@settings(max_examples=30, deadline=None)
@given(st.text(alphabet=sorted(fgl.CP850_CHARACTERS), min_size=1, max_size=20))
def test_any_code_page_850_text_in_courier_reaches_the_interpreter_intact(text: str) -> None:
    element = fgl.Text(10, 10, text, "F13")
    data = element.to_bytes()
    assert data.removeprefix(b"<RC10,10><NR><F13><HW1,1>").decode(fgl.ENCODING) == text
    (ticket,) = render(fgl.ticket([element]), 384, 1100)
    assert ticket.size == (1100, 384)


def test_logo_bytes_that_look_like_esc_or_a_command_are_dots() -> None:
    """A column of dots can be 0x1B (ESC) or 0x3C ('<'): the <G#> count says they are data."""
    columns = [0x1B, 0x3C, 0x70, 0x3E, 0xFF]  # ESC, then the bytes of "<p>", then a full column
    rows = [[bool(byte & (0x80 >> bit)) for byte in columns] for bit in range(8)]
    download = fgl.logo_download(1, rows)
    assert bytes(columns) in download
    data = download + fgl.ticket([fgl.Logo(10, 20, 1)])
    sim = BocaSimulator()
    sim.feed(data)
    (ticket,) = sim.tickets
    drawn = [
        sum(0x80 >> bit for bit in range(8) if ticket.getpixel((20 + x, 10 + bit)) == 0)
        for x in range(len(columns))
    ]
    assert drawn == columns
