"""Ticket and card layouts described in data, and the documents they render to.

A template comes from a `[[templates]]` table of the configuration: its kind (`ticket` for BOCA
FGL, `card` for a card printer's image), its size in dots, the fields a job must fill, and
items (text, box, line, qr, code128, logo, photo) placed by x (column) and y (row). Everything
that can be wrong with a template is found when it is loaded, including a code that could not
hold the longest value its field takes (a signed code in Code 128); everything that can be
wrong with a job's values is found by `render`, before a byte goes to a printer.

Text on a ticket is either in one of the printer's resident fonts (`F1`..`F13`, their cells and
character sets as BOCA documents them) or graphic text (`sans`, `sans-bold`): drawn here with
the shipped DejaVu fonts and sent as an FGL logo, which prints every Latin, Greek and Cyrillic
letter on any FGL printer. Card text is always TrueType (DejaVu Sans unless the template names
a font file).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import io
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import segno
import zxingcpp
from PIL import Image, ImageDraw, ImageFont

from drivers.printers import code128, fgl, fonts
from drivers.printers.fglrender import render as render_fgl
from drivers.printers.images import CARD_HEIGHT, CARD_WIDTH, open_image
from edge.core.errors import ConfigError, PrinterError
from edge.core.tables import build

MAX_FIELD_CHARS = 200
MAX_ITEMS = 100
# The longest text of a signed code: every payload field at its maximum is 106 bytes, 170
# base32 characters after "EDGE:" (docs/codes.md, "Text").
MAX_CODE_CHARS = 175
# The longest value of the fields whose meaning the counter fixes (config/README.md, [counter]);
# a template declares others with `max_chars` when a code carries them.
FIELD_CHARS = {"code": MAX_CODE_CHARS, "number": 19}  # number: a credential id, < 2**63
READABLE_GAP = 6  # dots between a barcode's bars and its text
MIN_FIT = 0.6  # TrueType text may shrink to 60 % of its size to fit its max_width


class Kind(enum.Enum):
    """What a template prints on."""

    TICKET = "ticket"  # a BOCA ticket, rendered to FGL
    CARD = "card"  # a plastic card side, rendered to an image


# -- items -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextItem:
    """Text, with {field} placeholders."""

    x: int
    y: int
    text: str
    font: str = ""  # ticket: F1..F13 (resident) or sans/sans-bold (graphic; default F3)
    size: int = 32  # TrueType text (cards, graphic ticket text): em height in dots
    height: int = 1  # resident font: height multiple
    width: int = 1  # resident font: width multiple
    rotation: str = "none"  # ticket: none, right, up, left
    max_width: int = 0  # dots the text may take; 0: up to the edge


@dataclass(frozen=True, slots=True)
class BoxItem:
    """A rectangle outline."""

    x: int
    y: int
    width: int
    height: int
    thickness: int = 2


@dataclass(frozen=True, slots=True)
class LineItem:
    """A horizontal or vertical line."""

    x: int
    y: int
    length: int
    vertical: bool = False
    thickness: int = 2


@dataclass(frozen=True, slots=True)
class QrItem:
    """A QR code of `data` (with placeholders); `module` dots per module."""

    x: int
    y: int
    data: str
    module: int = 6
    level: str = "M"
    rotation: str = "none"


@dataclass(frozen=True, slots=True)
class Code128Item:
    """A Code 128 barcode of `data`; bars `height` dots long."""

    x: int
    y: int
    data: str
    height: int = 64
    module: int = 3  # card: narrow bar width in pixels (tickets use the printer's)
    readable: bool = False  # print the data under the bars (ticket: in F3; card: sans)


@dataclass(frozen=True, slots=True)
class LogoItem:
    """An image file (path relative to the configuration), converted to black and white."""

    x: int
    y: int
    path: str
    threshold: int = 128


@dataclass(frozen=True, slots=True)
class AztecItem:
    """An Aztec code of `data` (cards); `module` pixels per module."""

    x: int
    y: int
    data: str
    module: int = 5


@dataclass(frozen=True, slots=True)
class Pdf417Item:
    """A PDF417 code of `data` (cards); `module` pixels per narrowest bar (rows are 3 high)."""

    x: int
    y: int
    data: str
    module: int = 2


@dataclass(frozen=True, slots=True)
class PhotoItem:
    """A card holder's photo from the job's images, fitted into width x height."""

    x: int
    y: int
    field: str
    width: int
    height: int


Item = (
    TextItem
    | BoxItem
    | LineItem
    | QrItem
    | Code128Item
    | AztecItem
    | Pdf417Item
    | LogoItem
    | PhotoItem
)
MatrixItem = AztecItem | Pdf417Item
_SYMBOLOGIES = {AztecItem: zxingcpp.BarcodeFormat.Aztec, Pdf417Item: zxingcpp.BarcodeFormat.PDF417}
ITEM_TYPES: dict[str, type[Any]] = {
    "text": TextItem,
    "box": BoxItem,
    "line": LineItem,
    "qr": QrItem,
    "code128": Code128Item,
    "aztec": AztecItem,
    "pdf417": Pdf417Item,
    "logo": LogoItem,
    "photo": PhotoItem,
}
_ROTATIONS = {
    "none": fgl.Rotation.NONE,
    "right": fgl.Rotation.RIGHT,
    "up": fgl.Rotation.UP,
    "left": fgl.Rotation.LEFT,
}


def _item(cls: type[Any], table: dict[str, Any], where: str, path: str) -> Any:
    """A template item from its table; coordinates and sizes must fit a page."""
    item = build(cls, table, where, path)
    for f in dataclasses.fields(item):
        value = getattr(item, f.name)
        if type(value) is int and not -fgl.MAX_DOTS <= value <= fgl.MAX_DOTS:
            raise ConfigError(f"{value} is out of range", path=path, key=f"{where}.{f.name}")
    return item


def _placeholders(text: str, where: str, path: str) -> set[str]:
    names = set()
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as err:
        raise ConfigError(f"bad placeholder in {text!r}: {err}", path=path, key=where) from err
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ConfigError(
                f"placeholders are plain {{field}} names, not {{{name}}}", path=path, key=where
            )
        names.add(name)
    return names


# -- fonts and images --------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def card_font(size: int, path: str = "") -> ImageFont.FreeTypeFont:
    """A TrueType font at `size` pixels: the file at `path`, or the shipped DejaVu Sans."""
    return ImageFont.truetype(path or fonts.SANS, size)


def _face_path(item: TextItem, default: str) -> str:
    """The TrueType file of a text item: a named shipped face, or `default`."""
    return fonts.FACES.get(item.font, default)


def fitted_font(
    text: str, size: int, path: str, max_width: int, what: str
) -> ImageFont.FreeTypeFont:
    """The font for `text`: at `size`, or smaller (down to MIN_FIT) to keep within max_width."""
    font = card_font(size, path)
    length = font.getlength(text)
    if not max_width or length <= max_width:
        return font
    smaller = int(size * max_width / length)
    while smaller >= size * MIN_FIT:
        font = card_font(smaller, path)
        if font.getlength(text) <= max_width:
            return font
        smaller -= 1
    raise PrinterError(
        f"{what}: text {text!r} is {int(length)} dots wide at size {size}, more than its "
        f"max_width {max_width} even at {int(size * MIN_FIT)}"
    )


@functools.lru_cache(maxsize=256)
def _graphic_text(text: str, size: int, path: str, rotation: str) -> Image.Image:
    """Text drawn in a TrueType font as a black-and-white image, line box high, rotated."""
    font = card_font(size, path)
    ascent, descent = font.getmetrics()
    image = Image.new("L", (max(1, int(font.getlength(text) + 0.999)), ascent + descent), 255)
    ImageDraw.Draw(image).text((0, 0), text, font=font, fill=0)
    turn = {"none": 0, "right": 270, "up": 180, "left": 90}[rotation]
    if turn:
        image = image.rotate(turn, expand=True, fillcolor=255)
    return image.point(lambda v: 255 if v >= 128 else 0).convert("1", dither=Image.Dither.NONE)


@functools.lru_cache(maxsize=64)
def _notdef(size: int, path: str) -> bytes:
    font = card_font(size, path)
    return bytes(font.getmask("\ue000"))  # a private-use character: no font draws it


def missing_glyph(text: str, size: int, font_path: str = "") -> str | None:
    """The first character of `text` the TrueType font has no glyph for, if any."""
    for char in dict.fromkeys(text):
        if not char.isspace() and not _has_glyph(char, size, font_path):
            return char
    return None


@functools.lru_cache(maxsize=4096)
def _has_glyph(char: str, size: int, font_path: str) -> bool:
    font = card_font(size, font_path)
    return char.isprintable() and bytes(font.getmask(char)) != _notdef(size, font_path)


def _bitmap(image: Image.Image, threshold: int) -> list[list[bool]]:
    dots = [value < threshold for value in image.tobytes()]
    return [dots[y * image.width : (y + 1) * image.width] for y in range(image.height)]


# -- templates ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Template:
    """A validated layout."""

    name: str
    kind: Kind
    width: int  # dots across (ticket columns, card pixels)
    height: int  # dots down (ticket rows, card pixels)
    fields: tuple[str, ...]  # text fields a job must fill, no more, no less
    images: tuple[str, ...]  # image fields (photos) a job may fill
    items: tuple[Item, ...]
    logos: tuple[tuple[tuple[bool, ...], ...] | None, ...]  # per item: a logo's bitmap
    cut: bool = True
    font_path: str = ""  # TrueType text font (cards, graphic ticket text); empty: DejaVu Sans
    max_chars: tuple[tuple[str, int], ...] = ()  # declared longest values of fields

    @classmethod
    def from_table(  # noqa: PLR0915 - flat checks, one per key
        cls, table: Any, where: str, path: str
    ) -> Template:
        """A template from its TOML table; ConfigError names the key of any problem."""
        if not isinstance(table, dict):
            raise ConfigError("must be a table", path=path, key=where)
        allowed = {"name", "kind", "width", "height", "fields", "items", "cut", "font", "max_chars"}
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise ConfigError(
                f"unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}",
                path=path,
                key=where,
            )
        name = table.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError("needs a name (a non-empty string)", path=path, key=f"{where}.name")
        try:
            kind = Kind(table.get("kind"))
        except ValueError:
            raise ConfigError(
                "kind must be 'ticket' or 'card'", path=path, key=f"{where}.kind"
            ) from None
        default = (CARD_WIDTH, CARD_HEIGHT) if kind is Kind.CARD else (1100, 384)
        width, height = table.get("width", default[0]), table.get("height", default[1])
        for key, value in (("width", width), ("height", height)):
            if type(value) is not int or not 8 <= value <= fgl.MAX_DOTS:
                raise ConfigError(
                    f"must be 8..{fgl.MAX_DOTS} dots", path=path, key=f"{where}.{key}"
                )
        fields = table.get("fields", [])
        if not isinstance(fields, list) or not all(
            isinstance(f, str) and f.isidentifier() for f in fields
        ):
            raise ConfigError(
                "must be a list of field names (letters, digits, _)",
                path=path,
                key=f"{where}.fields",
            )
        cut = table.get("cut", True)
        if type(cut) is not bool:
            raise ConfigError("must be a boolean", path=path, key=f"{where}.cut")
        font_path = table.get("font", "")
        if not isinstance(font_path, str):
            raise ConfigError("must be a path to a TrueType font", path=path, key=f"{where}.font")
        if font_path:
            font_path = str(Path(path).parent / font_path)
            try:
                card_font(20, font_path)
            except OSError as err:
                raise ConfigError(
                    f"cannot load font {font_path}: {err}", path=path, key=f"{where}.font"
                ) from err
        max_chars = table.get("max_chars", {})
        if not isinstance(max_chars, dict) or not all(
            type(v) is int and 1 <= v <= MAX_FIELD_CHARS for v in max_chars.values()
        ):
            raise ConfigError(
                f"must be a table of field = longest value (1..{MAX_FIELD_CHARS} characters), "
                "e.g. { price = 12 }",
                path=path,
                key=f"{where}.max_chars",
            )
        stray = sorted(set(max_chars) - set(fields))
        if stray:
            raise ConfigError(f"{stray[0]!r} is not in fields", path=path, key=f"{where}.max_chars")
        raw_items = table.get("items", [])
        if not isinstance(raw_items, list) or not raw_items or len(raw_items) > MAX_ITEMS:
            raise ConfigError(
                f"needs 1..{MAX_ITEMS} items ([[templates.items]])",
                path=path,
                key=f"{where}.items",
            )
        items: list[Item] = []
        logos: list[tuple[tuple[bool, ...], ...] | None] = []
        used: set[str] = set()
        images: list[str] = []
        for i, raw in enumerate(raw_items):
            key = f"{where}.items[{i}]"
            if not isinstance(raw, dict):
                raise ConfigError("must be a table", path=path, key=key)
            settings = dict(raw)
            kind_name = settings.pop("type", None)
            if kind_name not in ITEM_TYPES:
                raise ConfigError(
                    f"type {kind_name!r} is unknown; allowed: {', '.join(ITEM_TYPES)}",
                    path=path,
                    key=key,
                )
            item = _item(ITEM_TYPES[kind_name], settings, key, path)
            logos.append(None)
            if isinstance(item, TextItem):
                used |= _placeholders(item.text, f"{key}.text", path)
            elif isinstance(item, QrItem | Code128Item | AztecItem | Pdf417Item):
                used |= _placeholders(item.data, f"{key}.data", path)
            elif isinstance(item, PhotoItem):
                if kind is not Kind.CARD:
                    raise ConfigError("photos go on cards only", path=path, key=key)
                images.append(item.field)
            elif isinstance(item, LogoItem):
                logos[-1] = _load_logo(item, key, path, width, height)
            items.append(item)
        missing = sorted(used - set(fields))
        if missing:
            raise ConfigError(
                f"placeholder {{{missing[0]}}} is not in fields", path=path, key=f"{where}.fields"
            )
        template = cls(
            name,
            kind,
            width,
            height,
            tuple(fields),
            tuple(images),
            tuple(items),
            tuple(logos),
            cut,
            font_path,
            tuple(sorted(max_chars.items())),
        )
        # Render once with sample values: a layout that cannot print fails at load time.
        try:
            template.check_static()
        except PrinterError as err:
            raise ConfigError(str(err), path=path, key=where) from err
        return template

    def check_static(self) -> None:
        """Check what does not depend on a job's values: items inside the page, sizes, fonts."""
        for i, item in enumerate(self.items):
            what = f"items[{i}]"
            if isinstance(item, TextItem):
                faces = ", ".join(fonts.FACES)
                if self.kind is Kind.TICKET and item.font not in {"", *fgl.FONTS, *fonts.FACES}:
                    raise PrinterError(
                        f"{what}: unknown font {item.font!r}; resident fonts: "
                        f"{', '.join(fgl.FONTS)}; graphic text: {faces}"
                    )
                if self.kind is Kind.CARD and item.font and item.font not in fonts.FACES:
                    raise PrinterError(
                        f"{what}: card text is TrueType: font is one of {faces}, or leave it "
                        "out for the template's font"
                    )
                if item.rotation not in _ROTATIONS:
                    raise PrinterError(f"{what}: rotation is one of {', '.join(_ROTATIONS)}")
                if not 6 <= item.size <= 300:
                    raise PrinterError(f"{what}: size is 6..300 pixels")
                fixed = "".join(part for part, *_ in string.Formatter().parse(item.text))
                resident = self._resident(item)
                if resident is not None:
                    fgl.check_text(
                        fixed, resident.characters, f"{what} text", fgl.font_charset(resident)
                    )
                else:
                    lacking = missing_glyph(fixed, item.size, self._path(item))
                    if lacking is not None:
                        raise PrinterError(
                            f"{what}: the font has no character {lacking!r} "
                            f"(U+{ord(lacking):04X}); set the template's font to a TrueType "
                            "file that has it"
                        )
            elif isinstance(item, QrItem):
                if item.level not in ("L", "M", "Q", "H"):
                    raise PrinterError(f"{what}: level is one of L, M, Q, H")
                if item.rotation not in _ROTATIONS:
                    raise PrinterError(f"{what}: rotation is one of {', '.join(_ROTATIONS)}")
                if self.kind is Kind.TICKET and not 3 <= item.module <= 16:
                    raise PrinterError(f"{what}: module is 3..16 dots on a ticket")
                if not 1 <= item.module <= 40:
                    raise PrinterError(f"{what}: module is 1..40 pixels")
                self._longest_fits(what, item)
            elif isinstance(item, AztecItem | Pdf417Item):
                name = "Aztec" if isinstance(item, AztecItem) else "PDF417"
                if self.kind is Kind.TICKET:
                    raise PrinterError(
                        f"{what}: {name} prints on cards only; on tickets print signed codes as a "
                        "qr item (the FGL guide does not say how wide a PDF417 or Aztec module "
                        "prints, so no preview could show it)"
                    )
                if not 1 <= item.module <= 40:
                    raise PrinterError(f"{what}: module is 1..40 pixels")
                self._longest_fits(what, item)
            elif isinstance(item, Code128Item):
                if not 1 <= item.module <= 10:
                    raise PrinterError(f"{what}: module is 1..10 pixels")
                if not 8 <= item.height <= 320:
                    raise PrinterError(f"{what}: height is 8..320 dots")
                self._longest_fits(what, item)
            self._inside(what, item.x, item.y, 1, 1)

    def _resident(self, item: TextItem) -> fgl.Font | None:
        """The resident font a ticket's text item prints in; None for TrueType text."""
        if self.kind is not Kind.TICKET or item.font in fonts.FACES:
            return None
        return fgl.FONTS.get(item.font or "F3")

    def _path(self, item: TextItem) -> str:
        """The TrueType file a text item is drawn with."""
        return _face_path(item, self.font_path or fonts.SANS)

    def _limit(self, field: str) -> int:
        """The longest value `field` takes: declared, known, or MAX_FIELD_CHARS."""
        return dict(self.max_chars).get(field, FIELD_CHARS.get(field, MAX_FIELD_CHARS))

    def _signed(self, field: str) -> bool:
        """Whether `field` holds a signed code (the desk's `code`, not declared shorter)."""
        return field == "code" and field not in dict(self.max_chars)

    def _longest_fits(self, what: str, item: QrItem | Code128Item | MatrixItem) -> None:
        """Check that the code holds its fields' longest values and still fits the page."""
        names = [name for _, name, *_ in string.Formatter().parse(item.data) if name]
        longest = item.data.format_map(
            {n: ("9" if n == "number" else "W") * self._limit(n) for n in names}
        )
        bound = ", ".join(
            f"{{{n}}} ({'a signed code, ' if self._signed(n) else ''}up to {self._limit(n)} "
            "characters)"
            for n in names
        )
        hint = (
            "; declare shorter values with max_chars = { field = N }"
            if any(n not in FIELD_CHARS for n in names)
            else ""
        )
        if isinstance(item, AztecItem | Pdf417Item):
            width, height = _matrix(type(item), longest, item.module).size
            if item.x + width > self.width or item.y + height > self.height:
                raise PrinterError(
                    f"{what}: the code of {bound or repr(item.data)} is up to {width}x{height} "
                    f"pixels at module {item.module}, beyond the {self.width}x{self.height} card "
                    f"at x {item.x}, y {item.y}: make the module smaller or move it{hint}"
                )
            return
        if isinstance(item, QrItem):
            try:
                side = _qr_side(longest, item.level) * item.module
            except segno.DataOverflowError:
                side = self.width + self.height
            if item.x + side > self.width or item.y + side > self.height:
                raise PrinterError(
                    f"{what}: a QR code of {bound or repr(item.data)} is up to {side} dots "
                    f"square at module {item.module}, beyond the {self.width}x{self.height} "
                    f"{self.kind.value} at x {item.x}, y {item.y}: make the module smaller or "
                    f"move it{hint}"
                )
            return
        module = 2 if self.kind is Kind.TICKET else item.module
        room = (self.width - item.x) // module
        fitting = max(0, (room - 2 * code128.QUIET_MODULES - 35) // 11)
        try:
            length = len(code128.modules(longest)) * module
        except PrinterError:
            length = self.width + 1
        if item.x + length > self.width:
            raise PrinterError(
                f"{what}: Code 128 cannot hold {bound or repr(item.data)}: that takes up to "
                f"{length} dots, and {self.width - item.x} dots from x {item.x} hold about "
                f"{fitting} characters. Print signed codes as a qr item; Code 128 is for short "
                f"data such as a pass number ({{number}}){hint}"
            )

    def _inside(self, what: str, x: int, y: int, width: int, height: int) -> None:
        if x < 0 or y < 0 or x + width > self.width or y + height > self.height:
            raise PrinterError(
                f"{what} does not fit: it spans x {x}..{x + width}, y {y}..{y + height} on a "
                f"{self.width}x{self.height} {self.kind.value}"
            )

    # -- a job's values ------------------------------------------------------------------------

    def values(self, fields: Mapping[str, str], images: Mapping[str, bytes]) -> dict[str, str]:
        """The job's field values checked against the template."""
        unknown = sorted(set(fields) - set(self.fields))
        if unknown:
            raise PrinterError(
                f"template {self.name!r} has no field {unknown[0]!r}; its fields: "
                f"{', '.join(self.fields) or 'none'}"
            )
        missing = [f for f in self.fields if f not in fields]
        if missing:
            raise PrinterError(f"template {self.name!r} needs field {missing[0]!r}")
        unknown = sorted(set(images) - set(self.images))
        if unknown:
            raise PrinterError(f"template {self.name!r} has no image field {unknown[0]!r}")
        for name, data in images.items():
            if not isinstance(data, bytes):
                raise PrinterError(f"image {name!r} must be the bytes of an image file")
        for name, value in fields.items():
            if not isinstance(value, str):
                raise PrinterError(f"field {name!r} must be text")
            if len(value) > MAX_FIELD_CHARS:
                raise PrinterError(f"field {name!r} is longer than {MAX_FIELD_CHARS} characters")
            if len(value) > self._limit(name):
                raise PrinterError(
                    f"field {name!r} has {len(value)} characters, more than the "
                    f"{self._limit(name)} the template allows for it"
                )
        return dict(fields)

    def render(self, fields: Mapping[str, str], images: Mapping[str, bytes] | None = None) -> bytes:
        """The document to print: FGL for a ticket, a PNG for a card; PrinterError if bad."""
        images = images or {}
        values = self.values(fields, images)
        if self.kind is Kind.TICKET:
            return self._ticket(values)
        buffer = io.BytesIO()
        # Level 1: a card is mostly white and compresses well anyway; level 6 took 4 x longer.
        self._card(values, images).save(buffer, "PNG", compress_level=1)
        return buffer.getvalue()

    def preview(
        self, fields: Mapping[str, str], images: Mapping[str, bytes] | None = None
    ) -> Image.Image:
        """What the job would print, as an image (a ticket goes through the FGL interpreter)."""
        document = self.render(fields, images)
        if self.kind is Kind.TICKET:
            return render_fgl(document, self.height, self.width)[0]
        return Image.open(io.BytesIO(document))

    def _ticket(self, values: Mapping[str, str]) -> bytes:
        elements: list[fgl.Element] = []
        downloads: list[bytes] = []
        for i, item in enumerate(self.items):
            what = f"items[{i}]"
            if isinstance(item, TextItem):
                self._ticket_text(item, item.text.format_map(values), what, elements, downloads)
            elif isinstance(item, BoxItem):
                self._inside(what, item.x, item.y, item.width, item.height)
                elements.append(fgl.Box(item.y, item.x, item.height, item.width, item.thickness))
            elif isinstance(item, LineItem):
                w, h = (
                    (item.thickness, item.length)
                    if item.vertical
                    else (item.length, item.thickness)
                )
                self._inside(what, item.x, item.y, w, h)
                elements.append(
                    fgl.Line(item.y, item.x, item.length, item.vertical, item.thickness)
                )
            elif isinstance(item, QrItem):
                data = item.data.format_map(values)
                fgl.check_text(data, fgl.QR_CHARACTERS, f"{what} QR data")
                side = _qr_side(data, item.level) * item.module
                self._inside(f"{what} QR code", item.x, item.y, side, side)
                elements.append(
                    fgl.QrCode(
                        item.y,
                        item.x,
                        data,
                        item.module,
                        fgl.QrLevel[item.level],
                        _ROTATIONS[item.rotation],
                    )
                )
            elif isinstance(item, Code128Item):
                data = item.data.format_map(values)
                fgl.check_text(data, fgl.TEXT_CHARACTERS, f"{what} barcode data")
                length = len(code128.modules(data)) * 2  # the printer's 2-dot narrow bar
                height8 = max(1, -(-item.height // 8))
                self._inside(f"{what} barcode", item.x, item.y, length, height8 * 8)
                elements.append(fgl.Code128(item.y, item.x, data, height8))
                if item.readable:
                    # Our own text in F3, not <BI>: the guide does not say which font <BI> uses.
                    font = fgl.FONTS["F3"]
                    along = len(data) * font.width
                    column = max(0, item.x + (length - along) // 2)
                    row = item.y + height8 * 8 + READABLE_GAP
                    self._inside(f"{what} barcode text", column, row, along, font.height)
                    elements.append(fgl.Text(row, column, data, "F3"))
            elif isinstance(item, LogoItem):
                bitmap = self._logo(i, what)
                number = len(downloads) + 1
                downloads.append(fgl.logo_download(number, bitmap))
                elements.append(fgl.Logo(item.y, item.x, number))
        return b"".join(downloads) + fgl.ticket(elements, cut=self.cut)

    def _ticket_text(
        self,
        item: TextItem,
        text: str,
        what: str,
        elements: list[fgl.Element],
        downloads: list[bytes],
    ) -> None:
        """Add a text item: a resident-font <F#> run, or graphic text downloaded as a logo."""
        if not text.strip():
            return  # an empty field prints nothing
        font = self._resident(item)
        if font is None:
            image = self._graphic(item, text, what)
            self._inside(f"{what} text {text!r}", item.x, item.y, *image.size)
            number = len(downloads) + 1
            downloads.append(fgl.logo_download_image(number, image))
            elements.append(fgl.Logo(item.y, item.x, number))
            return
        fgl.check_text(text, font.characters, f"{what} text {text!r}", fgl.font_charset(font))
        along = len(text) * font.width * item.width
        across = font.height * item.height
        rotation = _ROTATIONS[item.rotation]
        if item.max_width and along > item.max_width:
            raise PrinterError(
                f"{what}: text {text!r} is {along} dots long, more than its max_width "
                f"{item.max_width}"
            )
        w, h = (
            (along, across) if rotation in (fgl.Rotation.NONE, fgl.Rotation.UP) else (across, along)
        )
        self._inside(f"{what} text {text!r}", item.x, item.y, w, h)
        elements.append(
            fgl.Text(item.y, item.x, text, f"F{font.number}", item.height, item.width, rotation)
        )

    def _card_barcode(
        self, draw: ImageDraw.ImageDraw, item: Code128Item, data: str, what: str
    ) -> None:
        """Draw a Code 128 barcode, and its text under it if asked."""
        bars = code128.modules(data)
        length = len(bars) * item.module
        self._inside(f"{what} barcode", item.x, item.y, length, item.height)
        for b, bar in enumerate(bars):
            if bar:
                x = item.x + b * item.module
                draw.rectangle((x, item.y, x + item.module - 1, item.y + item.height - 1), fill=0)
        if item.readable:
            font = card_font(max(12, item.module * 9), self.font_path or fonts.SANS)
            along = int(font.getlength(data))
            left = max(0, item.x + (length - along) // 2)
            top = item.y + item.height + READABLE_GAP
            self._inside(f"{what} barcode text", left, top, along, int(font.size))
            draw.text((left, top), data, font=font, fill=0)

    def _graphic(self, item: TextItem, text: str, what: str) -> Image.Image:
        """A ticket's graphic text as a bitmap; PrinterError if a glyph is missing or too wide."""
        path = self._path(item)
        lacking = missing_glyph(text, item.size, path)
        if lacking is not None:
            raise PrinterError(
                f"{what}: the font has no character {lacking!r} (U+{ord(lacking):04X}) in {text!r}"
            )
        font = fitted_font(text, item.size, path, item.max_width, what)
        return _graphic_text(text, int(font.size), path, item.rotation)

    def _logo(self, i: int, what: str) -> tuple[tuple[bool, ...], ...]:
        """The bitmap loaded for the logo at items[i]; PrinterError if there is none."""
        bitmap = self.logos[i] if i < len(self.logos) else None
        if bitmap is None:
            raise PrinterError(f"{what}: the template has no bitmap loaded for this logo")
        return bitmap

    def _card(self, values: Mapping[str, str], images: Mapping[str, bytes]) -> Image.Image:
        card = Image.new("L", (self.width, self.height), 255)
        draw = ImageDraw.Draw(card)
        for i, item in enumerate(self.items):
            what = f"items[{i}]"
            if isinstance(item, TextItem):
                text = item.text.format_map(values)
                path = self._path(item)
                lacking = missing_glyph(text, item.size, path)
                if lacking is not None:
                    raise PrinterError(
                        f"{what}: the card font has no character {lacking!r} "
                        f"(U+{ord(lacking):04X}) in {text!r}"
                    )
                font = fitted_font(text, item.size, path, item.max_width, what)
                length = int(font.getlength(text))
                self._inside(f"{what} text {text!r}", item.x, item.y, length, item.size)
                draw.text((item.x, item.y), text, font=font, fill=0)
            elif isinstance(item, BoxItem):
                self._inside(what, item.x, item.y, item.width, item.height)
                draw.rectangle(
                    (item.x, item.y, item.x + item.width - 1, item.y + item.height - 1),
                    outline=0,
                    width=item.thickness,
                )
            elif isinstance(item, LineItem):
                w, h = (
                    (item.thickness, item.length)
                    if item.vertical
                    else (item.length, item.thickness)
                )
                self._inside(what, item.x, item.y, w, h)
                draw.rectangle((item.x, item.y, item.x + w - 1, item.y + h - 1), fill=0)
            elif isinstance(item, QrItem):
                data = item.data.format_map(values)
                qr = segno.make(data, error=item.level.lower(), micro=False, boost_error=False)
                side = len(qr.matrix)
                modules = bytes(0 if dark else 255 for row in qr.matrix for dark in row)
                image = Image.frombytes("L", (side, side), modules).resize(
                    (side * item.module, side * item.module), Image.Resampling.NEAREST
                )
                self._inside(f"{what} QR code", item.x, item.y, image.width, image.height)
                card.paste(image, (item.x, item.y))
            elif isinstance(item, Code128Item):
                self._card_barcode(draw, item, item.data.format_map(values), what)
            elif isinstance(item, AztecItem | Pdf417Item):
                image = _matrix(type(item), item.data.format_map(values), item.module)
                self._inside(f"{what} code", item.x, item.y, *image.size)
                card.paste(image, (item.x, item.y))
            elif isinstance(item, LogoItem):
                bitmap = self._logo(i, what)
                logo = Image.new("L", (len(bitmap[0]), len(bitmap)), 255)
                logo.putdata([0 if dot else 255 for row in bitmap for dot in row])
                card.paste(logo, (item.x, item.y))
            elif isinstance(item, PhotoItem):
                self._inside(what, item.x, item.y, item.width, item.height)
                supplied = images.get(item.field)
                if supplied is None:
                    continue  # the photo is optional
                photo = open_image(supplied, f"image {item.field!r}")
                photo.thumbnail((item.width, item.height))
                card.paste(photo, (item.x, item.y))
        return card


def _matrix(kind: type[MatrixItem], data: str, module: int) -> Image.Image:
    """An Aztec or PDF417 symbol of `data`, `module` pixels per module, without quiet zone."""
    try:
        symbol = zxingcpp.create_barcode(data, _SYMBOLOGIES[kind])
    except ValueError as err:
        raise PrinterError(f"cannot encode {len(data)} characters: {err}") from err
    image = zxingcpp.write_barcode_to_image(symbol, scale=1, add_quiet_zones=False)
    dots = memoryview(cast(Any, image))  # a buffer of rows x columns bytes, 0 black
    rows, columns = cast(tuple[int, int], dots.shape)
    raw = Image.frombytes("L", (columns, rows), dots.tobytes())
    return raw.resize((columns * module, rows * module), Image.Resampling.NEAREST)


def _qr_side(data: str, level: str) -> int:
    """Modules across the byte-mode QR code of `data` (printable ASCII: one byte a character)."""
    return _qr_side_for(len(data), level)


@functools.lru_cache(maxsize=1024)
def _qr_side_for(length: int, level: str) -> int:
    # In byte mode the version depends on the byte count alone; a fixed mask skips segno's
    # search for the best one, which does not change the size.
    qr = segno.make(
        "W" * length, error=level.lower(), mode="byte", micro=False, boost_error=False, mask=0
    )
    return int(qr.symbol_size(border=0)[0])


def _load_logo(
    item: LogoItem, key: str, path: str, width: int, height: int
) -> tuple[tuple[bool, ...], ...]:
    file = Path(path).parent / item.path
    try:
        data = file.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read logo {file}: {err.strerror}", path=path, key=key) from err
    try:
        image = open_image(data, f"logo {file}")
    except PrinterError as err:
        raise ConfigError(str(err), path=path, key=key) from err
    if item.x + image.width > width or item.y + image.height > height:
        raise ConfigError(
            f"logo {file} is {image.width}x{image.height} dots and does not fit at "
            f"x {item.x}, y {item.y} on a {width}x{height} page",
            path=path,
            key=key,
        )
    return tuple(tuple(row) for row in _bitmap(image, item.threshold))
