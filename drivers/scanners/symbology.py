"""AIM symbology identifiers (ISO/IEC 15424): the "]Q1" a scanner may put before each code."""

from __future__ import annotations

import re

# "]" + code character (the symbology: Q QR, C Code 128, d Data Matrix, ...) + modifier.
_AIM = re.compile(rb"\][A-Za-z][0-9A-Za-z]")


def strip_aim(data: bytes) -> bytes:
    """`data` without a leading AIM symbology identifier; unchanged when it has none."""
    if _AIM.match(data):
        return data[3:]
    return data
