"""Code 128 (ISO/IEC 15417) symbols as bar/space module widths, for raster rendering.

Written from the symbology's table rather than taken from a library: the encoder is ~100 lines,
the pure-Python candidates (python-barcode, reportlab) pull in far more than they give here,
and zxing-cpp (a test dependency) checks every symbol this module draws.
"""

from __future__ import annotations

from edge.core.errors import PrinterError

# Bar/space widths of symbol values 0..106 (103..105 start A/B/C, 106 stop with its final bar).
_PATTERNS = (
    "212222",
    "222122",
    "222221",
    "121223",
    "121322",
    "131222",
    "122213",
    "122312",
    "132212",
    "221213",
    "221312",
    "231212",
    "112232",
    "122132",
    "122231",
    "113222",
    "123122",
    "123221",
    "223211",
    "221132",
    "221231",
    "213212",
    "223112",
    "312131",
    "311222",
    "321122",
    "321221",
    "312212",
    "322112",
    "322211",
    "212123",
    "212321",
    "232121",
    "111323",
    "131123",
    "131321",
    "112313",
    "132113",
    "132311",
    "211313",
    "231113",
    "231311",
    "112133",
    "112331",
    "132131",
    "113123",
    "113321",
    "133121",
    "313121",
    "211331",
    "231131",
    "213113",
    "213311",
    "213131",
    "311123",
    "311321",
    "331121",
    "312113",
    "312311",
    "332111",
    "314111",
    "221411",
    "431111",
    "111224",
    "111422",
    "121124",
    "121421",
    "141122",
    "141221",
    "112214",
    "112412",
    "122114",
    "122411",
    "142112",
    "142211",
    "241211",
    "221114",
    "413111",
    "241112",
    "134111",
    "111242",
    "121142",
    "121241",
    "114212",
    "124112",
    "124211",
    "411212",
    "421112",
    "421211",
    "212141",
    "214121",
    "412121",
    "111143",
    "111341",
    "131141",
    "114113",
    "114311",
    "411113",
    "411311",
    "113141",
    "114131",
    "311141",
    "411131",
    "211412",
    "211214",
    "211232",
    "2331112",
)

START_B = 104
START_C = 105
CODE_B = 100  # switch to code set B (in code set C)
CODE_C = 99  # switch to code set C (in code set B)
STOP = 106
QUIET_MODULES = 10  # the standard's minimum quiet zone on each side
MAX_LENGTH = 80  # characters; longer data does not belong on a ticket or card


def _digit_run(text: str, start: int) -> int:
    end = start
    while end < len(text) and text[end].isdigit():
        end += 1
    return end - start


def symbol_values(text: str) -> list[int]:
    """Symbol values (start, data, checksum, stop) encoding printable ASCII `text`."""
    if not text:
        raise PrinterError("a Code 128 barcode needs at least one character")
    if len(text) > MAX_LENGTH:
        raise PrinterError(f"Code 128 data is limited to {MAX_LENGTH} characters here")
    for char in text:
        if not " " <= char <= "~":
            raise PrinterError(
                f"Code 128 data takes printable ASCII only, not {char!r} (U+{ord(char):04X})"
            )
    values: list[int] = []
    i = 0
    lead = _digit_run(text, 0)
    code_c = (lead >= 4 and lead % 2 == 0) or (lead == len(text) and lead % 2 == 0)
    values.append(START_C if code_c else START_B)
    while i < len(text):
        if code_c:
            if _digit_run(text, i) >= 2:
                values.append(int(text[i : i + 2]))
                i += 2
                continue
            values.append(CODE_B)
            code_c = False
            continue
        run = _digit_run(text, i)
        # Switch to C for long digit runs: 6+ in the middle, 4+ at the end.
        if run >= 6 or (run >= 4 and i + run == len(text)):
            if run % 2:
                values.append(ord(text[i]) - 32)
                i += 1
            values.append(CODE_C)
            code_c = True
            continue
        values.append(ord(text[i]) - 32)
        i += 1
    checksum = values[0] + sum(
        position * value for position, value in enumerate(values) if position
    )
    values.append(checksum % 103)
    values.append(STOP)
    return values


def modules(text: str) -> list[bool]:
    """The symbol as modules left to right (True = bar), with quiet zones on both sides."""
    out = [False] * QUIET_MODULES
    for value in symbol_values(text):
        bar = True
        for width in _PATTERNS[value]:
            out.extend([bar] * int(width))
            bar = not bar
    out.extend([False] * QUIET_MODULES)
    return out
