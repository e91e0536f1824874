"""An FGL interpreter: parses the bytes a BOCA printer would receive and draws the tickets.

It reads FGL independently of the generator in fgl.py (its own parser, its own drawing), so
tests check what would be on the ticket, not strings; `edge print preview` uses it too, so the
preview shows what the bytes say. It understands the subset docs/fgl.md lists and rejects
anything else, which keeps the generator honest. Text is decoded from code page 850 and checked
against the selected resident font's character set. Glyphs are DejaVu Sans Mono on one
baseline, scaled to each resident font's cell: positions, cell sizes and proportions are the
printer's, letter shapes are not exactly BOCA's.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

import segno
from PIL import Image, ImageChops, ImageDraw, ImageFont

from drivers.printers import code128, fonts
from drivers.printers.fgl import ENCODING, FONTS, QrLevel
from edge.core.errors import PrinterError

ESC = 0x1B
BARCODE_MODULE_DOTS = 2  # narrow bar width the interpreter assumes for <OP>/<OL> (docs/fgl.md)
READABLE_GAP = 4  # dots between bars and their <BI> text
_ROTATIONS = {"NR": 0, "RR": 270, "RU": 180, "RL": 90}  # Pillow rotates counter-clockwise
_QR_LEVELS = {level.value: level.name for level in QrLevel}
_COMMAND = re.compile(rb"<([A-Za-z]+)([0-9,]*)>")


@dataclass
class _State:
    row: int = 0
    column: int = 0
    rotation: str = "NR"
    font: str = "F3"
    height: int = 1
    width: int = 1
    thickness: int = 2
    readable: bool = False
    logo_id: int = 0
    logos: dict[int, Image.Image] = field(default_factory=dict)


# The resident fonts are bitmaps in the printer; here each is drawn with DejaVu Sans Mono sized
# so that ascender to descender fills the font's cell height and one advance fits its width: all
# glyphs of a font share one baseline and one scale, so capitals are one size, lower case sits
# lower, a hyphen at mid height, as on the printed ticket.
_BOLD = frozenset({"F3", "F6", "F9", "F12"})  # OCR-B and Orator print with heavy strokes


@functools.lru_cache(maxsize=32)
def _face(font: str) -> tuple[ImageFont.FreeTypeFont, int, float]:
    """The face drawing resident `font`: the TrueType font, its baseline and its advance."""
    spec = FONTS[font]
    path = fonts.MONO_BOLD if font in _BOLD else fonts.MONO
    probe = ImageFont.truetype(path, 100)
    ascent, descent = probe.getmetrics()
    size = max(4, min(spec.height * 100 // (ascent + descent), int(spec.width * 100 / 61)))
    face = ImageFont.truetype(path, size)
    return face, face.getmetrics()[0], face.getlength("M")


@functools.lru_cache(maxsize=4096)
def _glyph(char: str, font: str) -> Image.Image:
    """One character of resident `font` in its cell, black and white (0 or 255)."""
    spec = FONTS[font]
    cell = Image.new("L", (spec.width, spec.height), 255)
    if char != " ":
        face, baseline, advance = _face(font)
        ImageDraw.Draw(cell).text(
            ((spec.width - advance) / 2, baseline), char, font=face, fill=0, anchor="ls"
        )
    return cell.point(lambda v: 0 if v < 128 else 255)


def text_image(text: str, font: str, height: int, width: int) -> Image.Image:
    """A run of text in a resident font's cells, each dot multiplied by the <HW> factors."""
    spec = FONTS[font]
    strip = Image.new("L", (max(1, spec.width * len(text)), spec.height), 255)
    for i, char in enumerate(text):
        strip.paste(_glyph(char, font), (i * spec.width, 0))
    if (height, width) != (1, 1):
        strip = strip.resize((strip.width * width, strip.height * height), Image.Resampling.NEAREST)
    return strip


def _qr_image(data: str, module: int, level: str) -> Image.Image:
    qr = segno.make(data, error=level.lower(), mode="byte", micro=False, boost_error=False)
    matrix = qr.matrix
    size = len(matrix)
    image = Image.new("L", (size * module, size * module), 255)
    draw = ImageDraw.Draw(image)
    for y, line in enumerate(matrix):
        for x, dark in enumerate(line):
            if dark:
                draw.rectangle(
                    (x * module, y * module, (x + 1) * module - 1, (y + 1) * module - 1), fill=0
                )
    return image


def _barcode_image(data: str, height: int, readable: bool) -> Image.Image:
    bars = code128.modules(data)
    width = len(bars) * BARCODE_MODULE_DOTS
    label = text_image(data, "F2", 1, 1) if readable else None
    total = height + (READABLE_GAP + label.height if label else 0)
    image = Image.new("L", (width, total), 255)
    draw = ImageDraw.Draw(image)
    for i, bar in enumerate(bars):
        if bar:
            x = i * BARCODE_MODULE_DOTS
            draw.rectangle((x, 0, x + BARCODE_MODULE_DOTS - 1, height - 1), fill=0)
    if label:
        image.paste(label, (max(0, (width - label.width) // 2), height + READABLE_GAP))
    return image


class Renderer:
    """Feeds FGL bytes; collects one image per printed ticket."""

    def __init__(self, rows: int, columns: int) -> None:
        self.rows = rows
        self.columns = columns
        self.tickets: list[Image.Image] = []
        self._state = _State()
        self._page = self._blank()

    def _blank(self) -> Image.Image:
        return Image.new("L", (self.columns, self.rows), 255)

    def _paste(self, image: Image.Image, *, rotate: bool = True) -> None:
        if rotate and self._state.rotation != "NR":
            image = image.rotate(_ROTATIONS[self._state.rotation], expand=True, fillcolor=255)
        # Black wins where elements overlap, as on thermal paper.
        box = (self._state.column, self._state.row)
        region = self._page.crop((*box, box[0] + image.width, box[1] + image.height))
        self._page.paste(ImageChops.darker(region, image.crop((0, 0, *region.size))), box)

    def feed(self, data: bytes) -> None:
        """Interpret a run of FGL bytes (whole commands)."""
        i = 0
        while i < len(data):
            byte = data[i]
            if byte == ESC:
                i = self._download(data, i + 1)
            elif byte == ord("<"):
                match = _COMMAND.match(data, i)
                if match is None:
                    raise PrinterError(f"FGL: malformed command at byte {i}: {data[i : i + 12]!r}")
                i = self._command(
                    match.group(1).decode(), match.group(2).decode(), data, match.end()
                )
            elif byte in (0x0D, 0x0A):
                i += 1
            else:
                end = data.find(b"<", i)
                end = len(data) if end < 0 else end
                self._text(data[i:end].decode(ENCODING))
                i = end

    def _numbers(self, name: str, args: str, count: int) -> list[int]:
        parts = args.split(",") if args else []
        if len(parts) != count or not all(p.isdigit() for p in parts):
            raise PrinterError(f"FGL: <{name}> takes {count} numbers, got {args!r}")
        return [int(p) for p in parts]

    def _command(  # noqa: PLR0915 - one branch per command
        self, name: str, args: str, data: bytes, end: int
    ) -> int:
        state = self._state
        if name in {"RC", "SP"}:
            state.row, state.column = self._numbers(name, args, 2)
        elif name in _ROTATIONS and not args:
            state.rotation = name
        elif name == "F":
            if f"F{args}" not in FONTS:
                raise PrinterError(f"FGL: no resident font F{args}")
            state.font = f"F{args}"
        elif name == "HW":
            state.height, state.width = self._numbers(name, args, 2)
        elif name == "LT":
            (state.thickness,) = self._numbers(name, args, 1)
        elif name == "BX":
            rows, columns = self._numbers(name, args, 2)
            draw = ImageDraw.Draw(self._page)
            r, c = state.row, state.column
            draw.rectangle((c, r, c + columns - 1, r + rows - 1), outline=0, width=state.thickness)
        elif name in ("HX", "VX"):
            (length,) = self._numbers(name, args, 1)
            r, c, t = state.row, state.column, state.thickness
            box = (
                (c, r, c + length - 1, r + t - 1)
                if name == "HX"
                else (c, r, c + t - 1, r + length - 1)
            )
            ImageDraw.Draw(self._page).rectangle(box, fill=0)
        elif name == "QR":
            module, tilde, mode, level = self._numbers(name, args, 4)
            if tilde or mode:
                raise PrinterError("FGL: this interpreter reads byte-mode QR without tilde only")
            if data[end : end + 1] != b"{":
                raise PrinterError("FGL: <QR> data must follow in braces")
            close = data.find(b"}", end)
            if close < 0:
                raise PrinterError("FGL: QR data has no closing brace")
            self._paste(_qr_image(data[end + 1 : close].decode("ascii"), module, _QR_LEVELS[level]))
            return close + 1
        elif name == "BI" and not args:
            state.readable = True
        elif name in ("OP", "OL"):
            (height8,) = self._numbers(name, args, 1)
            stop = data.find(b"<", end)
            stop = len(data) if stop < 0 else stop
            image = _barcode_image(data[end:stop].decode("ascii"), height8 * 8, state.readable)
            state.readable = False
            if name == "OL":
                image = image.rotate(90, expand=True, fillcolor=255)
            self._paste(image, rotate=False)
            return stop
        elif name == "LD":
            (number,) = self._numbers(name, args, 1)
            if number not in state.logos:
                raise PrinterError(f"FGL: logo {number} was not downloaded")
            self._paste(state.logos[number], rotate=False)
        elif name == "ID":
            (state.logo_id,) = self._numbers(name, args, 1)
        elif name in ("p", "q") and not args:
            self.tickets.append(self._page)
            self._page = self._blank()
        elif name in ("S", "PP") and args in ("1", ""):
            pass  # status request and purge mode: the printer's business, nothing to draw
        else:
            raise PrinterError(f"FGL: command <{name}{args}> is not in the supported subset")
        return end

    def _text(self, text: str) -> None:
        state = self._state
        spec = FONTS[state.font]
        for char in text:
            if char not in spec.characters:
                raise PrinterError(
                    f"FGL: resident font {state.font} has no character {char!r} "
                    f"(U+{ord(char):04X}); the printer would print another one"
                )
        self._paste(text_image(text, state.font, state.height, state.width))

    def _download(self, data: bytes, i: int) -> int:
        """An ESC-bracketed logo download; returns the index after the closing ESC."""
        bands: list[tuple[int, bytes]] = []
        while True:
            if i >= len(data):
                raise PrinterError("FGL: logo download has no closing ESC")
            if data[i] == ESC:
                break
            match = _COMMAND.match(data, i)
            if match is None or match.group(1) != b"RC":
                raise PrinterError(f"FGL: logo download expects <RCr,c><G#>, at byte {i}")
            row, _ = self._numbers("RC", match.group(2).decode(), 2)
            graphic = _COMMAND.match(data, match.end())
            if graphic is None or graphic.group(1) != b"G":
                raise PrinterError("FGL: logo download expects <G#> after <RC>")
            (count,) = self._numbers("G", graphic.group(2).decode(), 1)
            start = graphic.end()
            bands.append((row, data[start : start + count]))
            i = start + count
        height = max((row + 8 for row, _ in bands), default=8)
        width = max((len(line) for _, line in bands), default=1)
        logo = Image.new("L", (width, height), 255)
        for row, line in bands:
            for x, byte in enumerate(line):
                for bit in range(8):
                    if byte & (0x80 >> bit):
                        logo.putpixel((x, row + bit), 0)
        self._state.logos[self._state.logo_id] = logo
        return i + 1


def render(data: bytes, rows: int, columns: int) -> list[Image.Image]:
    """Every ticket the FGL bytes print, as grey images (0 black, 255 white)."""
    renderer = Renderer(rows, columns)
    renderer.feed(data)
    return renderer.tickets
