"""BOCA's Friendly Ghost Language (FGL): ticket elements to bytes, status bytes to states.

Pure codec, no I/O (Pillow packs logo bitmaps). Every command emitted here, with the section of
BOCA's FGL programming guide it comes from, is listed in docs/fgl.md. Coordinates are dots:
`row` counts down from the top edge of the printable area, `column` across from its left edge
(the guide's <RCrow,col>).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from PIL import Image, ImageChops

from drivers.protocols import PrinterState
from edge.core.errors import PrinterError

ESC = b"\x1b"


class Rotation(enum.Enum):
    """Print orientation of text and barcodes (<NR>, <RR>, <RU>, <RL>)."""

    NONE = "NR"  # 0 degrees
    RIGHT = "RR"  # rotated right, +90 degrees
    UP = "RU"  # upside down, 180 degrees
    LEFT = "RL"  # rotated left, -90 degrees


# Characters every resident font prints: printable ASCII. '<' opens a command, so it cannot be
# text; the drivers reject it instead of escaping it.
TEXT_CHARACTERS = frozenset(chr(c) for c in range(0x20, 0x7F)) - {"<"}
# The resident fonts are stored in code page 850 [kb, "German characters not printing"]: fonts
# 1, 2, 3, 6, 9 and 10 add the German letters at their code page 850 positions, fonts 8 and 13
# have the whole of code page 850 (French, Spanish, Nordic, ... but no Polish or Czech letters:
# those print as graphic text, see docs/fgl.md), the others ASCII only.
ENCODING = "cp850"
GERMAN_CHARACTERS = TEXT_CHARACTERS | frozenset("ÄÖÜäöüß")
CP850_CHARACTERS = TEXT_CHARACTERS | frozenset(
    char for char in bytes(range(0x80, 0x100)).decode(ENCODING) if char.isprintable()
)


@dataclass(frozen=True, slots=True)
class Font:
    """A resident FGL font: its command number, character cell in dots and character set."""

    number: int
    name: str
    width: int  # dots from one character to the next
    height: int  # dots from the top of the cell to its bottom, descenders included
    characters: frozenset[str] = TEXT_CHARACTERS


# The resident fonts and cell sizes the guide lists (<F1> .. <F13>).
FONTS: dict[str, Font] = {
    f"F{font.number}": font
    for font in (
        Font(1, "font 1", 5, 7, GERMAN_CHARACTERS),
        Font(2, "font 2", 7, 10, GERMAN_CHARACTERS),
        Font(3, "OCR-B", 17, 31, GERMAN_CHARACTERS),
        Font(4, "OCR-A", 5, 9),
        Font(6, "large OCR-B", 30, 52, GERMAN_CHARACTERS),
        Font(7, "OCR-A", 15, 29),
        Font(8, "Courier", 18, 30, CP850_CHARACTERS),
        Font(9, "small OCR-B", 13, 20, GERMAN_CHARACTERS),
        Font(10, "Prestige", 25, 41, GERMAN_CHARACTERS),
        Font(11, "Script", 25, 49),
        Font(12, "Orator", 46, 91),
        Font(13, "Courier", 20, 40, CP850_CHARACTERS),
    )
}

# QR data sits in braces; '}' would end it early and '~' is the guide's escape prefix.
QR_CHARACTERS = frozenset(chr(c) for c in range(0x20, 0x7F)) - {"}", "~"}
MAX_MULTIPLE = 16  # <HWh,w> multiples beyond this are not on any ticket
MAX_DOTS = 8000  # a coordinate beyond this is a mistake (a 8.5" ticket at 600 dpi is 5100)


class QrLevel(enum.Enum):
    """QR error correction levels as the <QR> command numbers them (not in L-M-Q-H order)."""

    M = 0
    L = 1
    H = 2
    Q = 3


def _dots(value: int, what: str) -> int:
    if not 0 <= value <= MAX_DOTS:
        raise PrinterError(f"{what} {value} is outside 0..{MAX_DOTS} dots")
    return value


def check_text(text: str, allowed: frozenset[str], what: str, charset: str = "") -> None:
    """Raise PrinterError naming the first character of `text` outside `allowed`."""
    for char in text:
        if char not in allowed:
            raise PrinterError(
                f"{what}: character {char!r} (U+{ord(char):04X}) is not in "
                f"{charset or 'the character set of codes (printable ASCII)'}"
            )


def font_charset(font: Font) -> str:
    """A resident font's character set in words, for error messages."""
    if font.characters is CP850_CHARACTERS:
        known = "code page 850"
    elif font.characters is GERMAN_CHARACTERS:
        known = "ASCII and ÄÖÜäöüß"
    else:
        known = "ASCII only"
    return f"resident font F{font.number} ({known}, never '<')"


@dataclass(frozen=True, slots=True)
class Text:
    """Text in a resident font at a position."""

    row: int
    column: int
    text: str
    font: str = "F3"
    height: int = 1  # <HW> height multiple
    width: int = 1  # <HW> width multiple
    rotation: Rotation = Rotation.NONE

    def to_bytes(self) -> bytes:
        """<RC><rotation><F#><HW>text."""
        font = FONTS.get(self.font)
        if font is None:
            raise PrinterError(f"unknown font {self.font!r}; FGL fonts: {', '.join(FONTS)}")
        for value in (self.height, self.width):
            if not 1 <= value <= MAX_MULTIPLE:
                raise PrinterError(f"size multiples are 1..{MAX_MULTIPLE}, not {value}")
        check_text(self.text, font.characters, "text", font_charset(font))
        return (
            f"<RC{_dots(self.row, 'row')},{_dots(self.column, 'column')}>"
            f"<{self.rotation.value}><F{font.number}><HW{self.height},{self.width}>"
        ).encode("ascii") + self.text.encode(ENCODING)


@dataclass(frozen=True, slots=True)
class Box:
    """A rectangle outline `rows` high and `columns` wide, lines `thickness` dots."""

    row: int
    column: int
    rows: int
    columns: int
    thickness: int = 2

    def to_bytes(self) -> bytes:
        """<RC><LT#><BXr,c>."""
        return (
            f"<RC{_dots(self.row, 'row')},{_dots(self.column, 'column')}>"
            f"<LT{_dots(self.thickness, 'thickness')}>"
            f"<BX{_dots(self.rows, 'box rows')},{_dots(self.columns, 'box columns')}>"
        ).encode("ascii")


@dataclass(frozen=True, slots=True)
class Line:
    """A horizontal (`vertical=False`, `length` columns) or vertical (`length` rows) line."""

    row: int
    column: int
    length: int
    vertical: bool = False
    thickness: int = 2

    def to_bytes(self) -> bytes:
        """<RC><LT#><HXc> or <VXr>."""
        command = "VX" if self.vertical else "HX"
        return (
            f"<RC{_dots(self.row, 'row')},{_dots(self.column, 'column')}>"
            f"<LT{_dots(self.thickness, 'thickness')}><{command}{_dots(self.length, 'length')}>"
        ).encode("ascii")


@dataclass(frozen=True, slots=True)
class QrCode:
    """A QR code: `module` dots per module (the guide's point size 3..16)."""

    row: int
    column: int
    data: str
    module: int = 6
    level: QrLevel = QrLevel.M
    rotation: Rotation = Rotation.NONE

    def to_bytes(self) -> bytes:
        """<RC><rotation><QRsize,0,0,level>{data} (byte mode, no tilde escapes)."""
        if not 3 <= self.module <= 16:
            raise PrinterError(f"QR point size is 3..16 dots, not {self.module}")
        if not self.data:
            raise PrinterError("a QR code needs data")
        check_text(self.data, QR_CHARACTERS, "QR data")
        return (
            f"<RC{_dots(self.row, 'row')},{_dots(self.column, 'column')}><{self.rotation.value}>"
            f"<QR{self.module},0,0,{self.level.value}>{{{self.data}}}"
        ).encode("ascii")


@dataclass(frozen=True, slots=True)
class Code128:
    """A Code 128 barcode, bars `height8` x 8 dots long, human-readable text below if asked."""

    row: int
    column: int
    data: str
    height8: int = 8
    readable: bool = False
    rotation: Rotation = Rotation.NONE

    def to_bytes(self) -> bytes:
        """<RC>[<BI>]<OP#>data (picket fence) or <OL#>data (ladder, for rotated codes)."""
        if not 1 <= self.height8 <= 40:
            raise PrinterError(f"barcode height is 1..40 units of 8 dots, not {self.height8}")
        if not self.data:
            raise PrinterError("a barcode needs data")
        check_text(self.data, TEXT_CHARACTERS, "barcode data")
        shape = "OP" if self.rotation in (Rotation.NONE, Rotation.UP) else "OL"
        readable = "<BI>" if self.readable else ""
        return (
            f"<RC{_dots(self.row, 'row')},{_dots(self.column, 'column')}>"
            f"{readable}<{shape}{self.height8}>{self.data}"
        ).encode("ascii")


@dataclass(frozen=True, slots=True)
class Logo:
    """Print downloaded logo `number` with its top left corner at (row, column)."""

    row: int
    column: int
    number: int

    def to_bytes(self) -> bytes:
        """<SProw,col><LD#>."""
        return (
            f"<SP{_dots(self.row, 'row')},{_dots(self.column, 'column')}><LD{self.number}>"
        ).encode("ascii")


Element = Text | Box | Line | QrCode | Code128 | Logo


def logo_download(number: int, rows: Sequence[Sequence[bool]]) -> bytes:
    """Download a bitmap (rows of dots, True = black) as logo `number` in FGL image format."""
    height = len(rows)
    width = len(rows[0]) if rows else 0
    if not height or not width or any(len(r) != width for r in rows):
        raise PrinterError("a logo needs a non-empty rectangular bitmap")
    image = Image.frombytes(
        "L", (width, height), bytes(0 if dot else 255 for row in rows for dot in row)
    )
    return logo_download_image(number, image.convert("1", dither=Image.Dither.NONE))


def logo_download_image(number: int, image: Image.Image) -> bytes:
    """Download a black-and-white image (mode "1", black = 0) as logo `number`.

    The image goes out in bands of 8 dot rows: `<RCrow,0><G#>` and one byte per column, the
    top dot of the band in the most significant bit; the whole download sits between ESCs.
    """
    if not 1 <= number <= 99:
        raise PrinterError(f"logo numbers are 1..99, not {number}")
    width, height = image.size
    if not width or not height or image.mode != "1":
        raise PrinterError("a logo needs a non-empty black-and-white image")
    # Black as 1 bits, padded to whole bands; each band turned so that one column of 8 dots
    # is one row of the image, which Pillow packs into one byte, first dot in the top bit.
    dots = Image.new("1", (width, -(-height // 8) * 8), 0)
    dots.paste(ImageChops.invert(image), (0, 0))
    parts = [f"<ID{number}>".encode("ascii"), ESC]
    for band in range(0, dots.height, 8):
        columns = dots.crop((0, band, width, band + 8)).transpose(Image.Transpose.TRANSPOSE)
        # Trailing white columns need not be sent.
        line = columns.tobytes().rstrip(b"\x00")
        if line:
            parts.append(f"<RC{band},0><G{len(line)}>".encode("ascii") + line)
    parts.append(ESC)
    return b"".join(parts)


def ticket(elements: Iterable[Element], *, cut: bool = True) -> bytes:
    """One ticket: its elements, then <p> (print, cut and eject) or <q> (print, no cut)."""
    body = b"".join(element.to_bytes() for element in elements)
    return body + (b"<p>" if cut else b"<q>")


# -- status ------------------------------------------------------------------------------------

STATUS_REQUEST = b"<S1>"  # answered with READY (0x11) only when the printer is ready
PURGE_ON_PAPER_OUT = b"<PP>"  # drop unprinted tickets at paper out, until power off


# Unsolicited and solicited status bytes. ACK, X-ON, power-on, X-OFF and 0x16 are confirmed by
# BOCA's knowledge base (docs/fgl.md, "Status"); the fault bytes follow the guide's status
# table as recalled in docs/fgl.md and are the one place to correct them.
ACK = 0x06  # a ticket was printed
READY = 0x11  # X-ON
POWER_ON = 0x12
BUSY = 0x13  # X-OFF
RIBBON_LOW = 0x16  # also "ticket taken" with an exit sensor: not a fault
OUT_OF_TICKETS = 0x18
PAPER_JAM = 0x19
ILLEGAL_DATA = 0x1A
HEAD_UP = 0x1C
CUTTER_JAM = 0x1D

_FAULTS: dict[int, PrinterState] = {
    OUT_OF_TICKETS: PrinterState.PAPER_OUT,
    PAPER_JAM: PrinterState.JAM,
    CUTTER_JAM: PrinterState.JAM,
    HEAD_UP: PrinterState.HEAD_OPEN,
    ILLEGAL_DATA: PrinterState.ERROR,
}


@dataclass(frozen=True, slots=True)
class Status:
    """The printer's state after reading a run of status bytes."""

    state: PrinterState
    printed: int  # ACK bytes seen: tickets the printer reports as printed
    raw: bytes


def parse_status(data: bytes, previous: PrinterState = PrinterState.UNKNOWN) -> Status:
    """Fold status bytes, oldest first, into the state they leave the printer in."""
    state = previous
    printed = 0
    for byte in data:
        if byte == ACK:
            printed += 1
        elif byte in (READY, RIBBON_LOW):
            state = PrinterState.READY
        elif byte == BUSY:
            # X-OFF after a fault keeps the fault visible; on its own it means busy.
            if state not in _FAULTS.values():
                state = PrinterState.BUSY
        elif byte == POWER_ON:
            state = PrinterState.UNKNOWN
        elif byte in _FAULTS:
            state = _FAULTS[byte]
    return Status(state, printed, bytes(data))


# Bytes that answer a status request: X-ON (ready) or a fault.
ANSWERS = frozenset({READY, RIBBON_LOW, *_FAULTS})
