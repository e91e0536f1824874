"""The venue's terms (AGB), printed on the ticket printer when the clerk asks for them.

The text comes from `[counter] terms_file`, is wrapped into lines of a small resident FGL font
and laid out as as many ticket pages as it needs; each page is a ticket template without
fields, so the print queue prints it like any other ticket (once per job id). The font prints
ASCII and the German letters ÄÖÜäöüß as they are; other characters it lacks are spelled out
(æ → ae) or lose their accent (é → e), never dropped silently: what is left unprintable
becomes '?'.
"""

from __future__ import annotations

import textwrap
import unicodedata
from pathlib import Path

from drivers.printers import fgl
from edge.core.errors import ConfigError
from edge.counter.templates import Template

FONT = "F9"  # small OCR-B: about 80 characters a line on a 1100-dot ticket
MARGIN = 24  # dots on every side
LINE_GAP = 4  # dots between lines
TICKET = (1100, 384)  # dots: along the ticket, across it
MAX_BYTES = 64 << 10  # terms of a few pages; anything larger is a mistake
MAX_PAGES = 40  # tickets one request may print
TEMPLATE_PREFIX = "desk-terms-"

# Spelled out rather than stripped: "Müller" reads "Mueller", not "Muller".
_SPELLED = {
    "ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "ß": "ss",  # ASCII-only fonts
    "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O", "ł": "l", "Ł": "L",
    "\u201e": '"', "\u201c": '"', "\u201d": '"', "\u201a": "'", "\u2018": "'",
    "\u2019": "'", "\u00ab": '"', "\u00bb": '"', "\u2013": "-", "\u2014": "-", "\u2026": "...",
    "€": "EUR", "§": "Par.", "<": "(", ">": ")",
    "\t": " ", "\u00a0": " ",
}  # fmt: skip


def printable(text: str, allowed: frozenset[str] = fgl.TEXT_CHARACTERS) -> str:
    """`text` in the characters the printer's fonts have (see the module docstring)."""
    out = []
    for char in text:
        if char in allowed:
            out.append(char)
            continue
        spelled = _SPELLED.get(char)
        if spelled is None:
            base = "".join(
                c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c)
            )
            spelled = base if base and all(c in allowed for c in base) else "?"
        out.append("".join(c if c in allowed else "?" for c in spelled))
    return "".join(out)


def pages(text: str) -> tuple[Template, ...]:
    """The terms as ticket templates, one per ticket, named desk-terms-1, -2, ..."""
    font = fgl.FONTS[FONT]
    columns = (TICKET[0] - 2 * MARGIN) // font.width
    rows = (TICKET[1] - 2 * MARGIN) // (font.height + LINE_GAP)
    lines: list[str] = []
    for paragraph in text.replace("\r\n", "\n").split("\n"):
        plain = printable(paragraph.rstrip(), font.characters)
        lines.extend(textwrap.wrap(plain, columns, break_on_hyphens=False) or [""])
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    if not lines:
        raise ValueError("the terms are empty")
    chunks = [lines[i : i + rows] for i in range(0, len(lines), rows)]
    if len(chunks) > MAX_PAGES:
        raise ValueError(f"the terms need {len(chunks)} tickets; at most {MAX_PAGES} are printed")
    out = []
    for number, chunk in enumerate(chunks, 1):
        items = [
            {
                "type": "text",
                "x": MARGIN,
                "y": MARGIN + row * (font.height + LINE_GAP),
                # Braces are placeholders in a template: doubled, they print as themselves.
                "text": line.replace("{", "{{").replace("}", "}}"),
                "font": FONT,
            }
            for row, line in enumerate(chunk)
            if line.strip()
        ]
        table = {
            "name": f"{TEMPLATE_PREFIX}{number}",
            "kind": "ticket",
            "width": TICKET[0],
            "height": TICKET[1],
            "fields": [],
            "items": items,
        }
        out.append(Template.from_table(table, f"terms page {number}", "terms"))
    return tuple(out)


def load(path: Path) -> tuple[Template, ...]:
    """The terms file as ticket pages; ConfigError naming [counter] terms_file if it is bad."""
    key = "counter.terms_file"
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ConfigError(f"{path} is larger than {MAX_BYTES} bytes", key=key)
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read the terms {path}: {err.strerror}", key=key) from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path} is not UTF-8 text: {err}", key=key) from err
    try:
        return pages(text)
    except ValueError as err:
        raise ConfigError(f"{path}: {err}", key=key) from err
