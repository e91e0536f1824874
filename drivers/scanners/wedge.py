"""Keyboard-wedge decoding: evdev key events in, scanned texts out (pure, no I/O, no asyncio).

A scanner in keyboard mode types each code as key presses and ends it with Enter or Tab, or
just stops typing. `WedgeDecoder` follows the modifier keys, turns presses into characters
through a `Layout`, and returns each finished scan. Alt held while typing keypad digits is the
Windows "Alt code" some scanners use for characters a layout lacks; it is decoded too.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from evdev import ecodes as e

from drivers.protocols import MAX_SCAN_BYTES
from drivers.scanners.keymap import Layout
from drivers.scanners.symbology import strip_aim

# A key the layout does not know becomes this, so the scan reaches the core as malformed.
UNKNOWN = "\ufffd"
OVERFLOW = b"\x00" * (MAX_SCAN_BYTES + 1)  # over every limit: the core rejects it as malformed

_SHIFT = frozenset({e.KEY_LEFTSHIFT, e.KEY_RIGHTSHIFT})
_CTRL = frozenset({e.KEY_LEFTCTRL, e.KEY_RIGHTCTRL})
_KEYPAD_DIGITS = {getattr(e, f"KEY_KP{d}"): int(d) for d in range(10)}
_IGNORED = frozenset({e.KEY_NUMLOCK, e.KEY_SCROLLLOCK, e.KEY_LEFTMETA, e.KEY_RIGHTMETA, e.KEY_ESC})


class Terminator(enum.Enum):
    """What ends a scan."""

    ENTER = "enter"  # Enter or keypad Enter (the factory default of most scanners)
    TAB = "tab"
    TIMEOUT = "timeout"  # no key for the inter-key timeout


@dataclass(frozen=True, slots=True)
class WedgeSettings:
    """How a wedge decoder turns keys into scans."""

    terminator: Terminator = Terminator.ENTER
    timeout: float = 0.05  # seconds without a key that end (TIMEOUT) or discard a partial scan
    max_length: int = 512  # characters; longer scans become OVERFLOW
    strip_aim: bool = True


class WedgeDecoder:
    """Feed it key events; it returns finished scans as UTF-8 bytes."""

    def __init__(self, layout: Layout, settings: WedgeSettings) -> None:
        self.layout = layout
        self.settings = settings
        self._chars: list[str] = []
        self._overflow = False
        self._shift: set[int] = set()
        self._altgr = False
        self._alt = False
        self._ctrl: set[int] = set()
        self._caps = False
        self._dead: str | None = None
        self._alt_code: list[int] = []
        self.last_key = 0.0  # event time of the last key press, seconds

    @property
    def pending(self) -> bool:
        """A scan has begun and not ended."""
        return bool(self._chars) or self._overflow or self._dead is not None

    def reset(self) -> None:
        """Forget a partial scan and all held keys (the device went away)."""
        self._chars.clear()
        self._overflow = False
        self._shift.clear()
        self._ctrl.clear()
        self._altgr = self._alt = False
        self._dead = None
        self._alt_code.clear()

    def feed(self, kind: int, code: int, value: int, at: float) -> bytes | None:
        """One input event (type, code, value, time); the finished scan it completes, if any."""
        if kind != e.EV_KEY:
            return None  # EV_SYN, EV_MSC scan codes, LEDs: the key events say everything
        pressed = value != 0  # 1 press, 2 autorepeat, 0 release
        if code in _SHIFT:
            (self._shift.add if pressed else self._shift.discard)(code)
            return None
        if code in _CTRL:
            (self._ctrl.add if pressed else self._ctrl.discard)(code)
            return None
        if code == e.KEY_RIGHTALT:
            self._altgr = pressed
            return None
        if code == e.KEY_LEFTALT:
            self._alt = pressed
            if not pressed and self._alt_code:
                self._append(_alt_char(self._alt_code))
                self._alt_code.clear()
            return None
        if not pressed or code in _IGNORED:
            return None
        if code == e.KEY_CAPSLOCK:
            if value == 1:
                self._caps = not self._caps
            return None
        done = self._key(code, at)
        self.last_key = at
        return done

    def expire(self, now: float) -> bytes | None:
        """Called when no key came for `timeout`: the scan it ends (TIMEOUT), else None."""
        if not self.pending or now - self.last_key < self.settings.timeout:
            return None
        if self.settings.terminator is Terminator.TIMEOUT:
            return self._finish()
        self.reset()  # a partial scan without its terminator: the scanner was interrupted
        return None

    def _key(self, code: int, at: float) -> bytes | None:
        if self.pending and at - self.last_key >= self.settings.timeout:
            # Leftovers of an interrupted scan must not become the start of this one.
            early = self._finish() if self.settings.terminator is Terminator.TIMEOUT else None
            self._chars.clear()
            self._overflow = False
            self._dead = None
            if early is not None:
                self._key(code, at)
                return early
        terminator = self.settings.terminator
        if code in (e.KEY_ENTER, e.KEY_KPENTER):
            if terminator is Terminator.ENTER:
                return self._finish()
            return None
        if code == e.KEY_TAB:
            if terminator is Terminator.TAB:
                return self._finish()
            return None
        if self._alt and code in _KEYPAD_DIGITS:
            self._alt_code.append(_KEYPAD_DIGITS[code])
            return None
        if self._ctrl:
            self._append(UNKNOWN)  # control characters are never part of a code
            return None
        shift = bool(self._shift)
        if self._caps and code in self.layout.keys and self.layout.keys[code][0].isalpha():
            shift = not shift
        char = self.layout.char(code, shift=shift, altgr=self._altgr)
        if char is None or (self._alt and not self._altgr):
            self._append(UNKNOWN)
            return None
        if not char:
            return None  # a key that types nothing at this level
        level = self.layout.level(shift=shift, altgr=self._altgr)
        if self._dead is None and (code, level) in self.layout.dead:
            self._dead = char
            return None
        if self._dead is not None:
            dead, self._dead = self._dead, None
            # A dead key then space types the accent itself; anything else types both.
            self._append(dead if char == " " else dead + char)
            return None
        self._append(char)
        return None

    def _append(self, text: str) -> None:
        if self._overflow:
            return
        self._chars.append(text)
        if sum(len(c) for c in self._chars) > self.settings.max_length:
            self._chars.clear()
            self._overflow = True

    def _finish(self) -> bytes | None:
        if self._dead is not None:
            self._append(self._dead)
            self._dead = None
        overflow, text = self._overflow, "".join(self._chars)
        self._chars.clear()
        self._overflow = False
        if overflow:
            return OVERFLOW
        if not text:
            return None  # a bare terminator (e.g. the scanner's wake-up Enter)
        data = text.encode("utf-8")
        return strip_aim(data) if self.settings.strip_aim else data


def _alt_char(digits: list[int]) -> str:
    """The character an Alt code types: with a leading 0 Windows-1252, else code page 437."""
    value = int("".join(map(str, digits)))
    if value > 255:
        return UNKNOWN
    codec = "cp1252" if digits[0] == 0 else "cp437"
    return bytes([value]).decode(codec, "replace")
