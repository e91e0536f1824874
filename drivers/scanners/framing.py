"""Serial scanner framing: bytes in arbitrary chunks to one code per line (pure, no I/O).

Scanners in serial mode send each code followed by CR, LF or CR LF, optionally between a
prefix and a suffix (readers often use STX ... ETX). Lines arrive in pieces; a line longer than
the limit, a line without the configured prefix/suffix and a line with bytes outside printable
ASCII are bad input. Bursts of pure line noise (no printable byte at all, as a port picks up
when a device powers on) are counted and dropped rather than shown as a rejected scan.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from drivers.protocols import MAX_SCAN_BYTES, UNREADABLE

OVERFLOW = b"\x00" * (MAX_SCAN_BYTES + 1)  # over every limit: the core rejects it as malformed
_PRINTABLE = re.compile(rb"[\x20-\x7e]")
_ALL_PRINTABLE = re.compile(rb"[\x20-\x7e]*\Z")


class LineEnd(enum.Enum):
    """What ends a line."""

    ANY = "any"  # CR, LF or CR LF
    CR = "cr"
    LF = "lf"
    CRLF = "crlf"


_SPLIT = {
    LineEnd.ANY: re.compile(rb"\r\n|\r|\n"),
    LineEnd.CR: re.compile(rb"\r"),
    LineEnd.LF: re.compile(rb"\n"),
    LineEnd.CRLF: re.compile(rb"\r\n"),
}


@dataclass(frozen=True, slots=True)
class Framing:
    """How a serial scanner frames its codes."""

    end: LineEnd = LineEnd.ANY
    prefix: bytes = b""
    suffix: bytes = b""
    max_length: int = 512


class LineFramer:
    """Feed it received bytes; it returns complete lines as codes (or bad-input markers)."""

    def __init__(self, framing: Framing) -> None:
        self.framing = framing
        self._split = _SPLIT[framing.end]
        self._buffer = bytearray()
        self._overflow = False
        self._after_cr = False  # the last read ended in CR (LINE END any): skip a leading LF
        self.noise = 0  # lines of pure noise dropped
        self.bad = 0  # lines passed on as bad input

    @property
    def pending(self) -> bool:
        """A line has begun and not ended."""
        return bool(self._buffer) or self._overflow

    def reset(self) -> None:
        """Drop a partial line (the device went away or went quiet mid-line)."""
        self._buffer.clear()
        self._overflow = False

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines `chunk` completes."""
        if self._after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the LF of a CR LF split across reads
        self._after_cr = False
        self._buffer += chunk
        out: list[bytes] = []
        start = 0
        limit = self.framing.max_length + len(self.framing.prefix) + len(self.framing.suffix)
        view = bytes(self._buffer)
        for match in self._split.finditer(view):
            line = view[start : match.start()]
            start = match.end()
            if self._overflow:
                self._overflow = False
                out.append(OVERFLOW)
                continue
            code = self._line(line, limit)
            if code is not None:
                out.append(code)
        del self._buffer[:start]
        self._after_cr = self.framing.end is LineEnd.ANY and view.endswith(b"\r")
        if len(self._buffer) > limit + 1:
            self._buffer.clear()
            self._overflow = True  # reported when the line finally ends
        return out

    def _line(self, line: bytes, limit: int) -> bytes | None:
        if not line:
            return None
        if not _PRINTABLE.search(line):
            self.noise += 1
            return None
        if len(line) > limit:
            return OVERFLOW
        prefix, suffix = self.framing.prefix, self.framing.suffix
        # Noise before the prefix (a port picking up a glitch) is dropped with it.
        if prefix:
            at = line.rfind(prefix)
            if at < 0:
                self.bad += 1
                return UNREADABLE
            line = line[at + len(prefix) :]
        if suffix:
            if not line.endswith(suffix):
                self.bad += 1
                return UNREADABLE
            line = line[: -len(suffix)]
        if not _ALL_PRINTABLE.match(line):
            self.bad += 1
            return UNREADABLE
        return line or None
