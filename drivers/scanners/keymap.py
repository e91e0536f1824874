"""Keyboard layouts for keyboard-wedge scanners: evdev key codes to text (pure, no I/O).

A scanner in keyboard mode types each character as the key that produces it on the layout it
is configured for; decoding with the same layout gives back the printed text. Each layout
maps a key code to what it types plain, with Shift and with AltGr. Dead keys (German ^ and
the acute accent, French ^ and ¨, ...) type their own character when followed by a space, as
on a real keyboard.
"""

from __future__ import annotations

from dataclasses import dataclass

from evdev import ecodes as e

# (plain, shift, altgr); "" where the key types nothing in that state.
Keys = dict[int, tuple[str, str, str]]

_LETTERS = {getattr(e, f"KEY_{c.upper()}"): c for c in "abcdefghijklmnopqrstuvwxyz"}
_DIGITS = {getattr(e, f"KEY_{d}"): d for d in "1234567890"}
_KEYPAD: Keys = {
    **{getattr(e, f"KEY_KP{d}"): (d, d, "") for d in "0123456789"},
    e.KEY_KPMINUS: ("-", "-", ""),
    e.KEY_KPPLUS: ("+", "+", ""),
    e.KEY_KPASTERISK: ("*", "*", ""),
    e.KEY_KPSLASH: ("/", "/", ""),
    e.KEY_KPDOT: (".", ".", ""),
    e.KEY_SPACE: (" ", " ", " "),
}


def _letters(swap: dict[int, str] | None = None) -> Keys:
    keys = dict(_LETTERS)
    keys.update(swap or {})
    return {k: (c, c.upper(), "") for k, c in keys.items()}


def _row(keys: list[int], plain: str, shift: str, altgr: str = "") -> Keys:
    """One entry per key from three strings; a space means the key types nothing there."""
    altgr = altgr.ljust(len(keys))
    return {
        k: (p.strip(), s.strip(), a.strip())
        for k, p, s, a in zip(keys, plain, shift, altgr, strict=True)
    }


_NUMBER_ROW = [*_DIGITS, e.KEY_MINUS, e.KEY_EQUAL]
_PUNCT = [
    e.KEY_LEFTBRACE,
    e.KEY_RIGHTBRACE,
    e.KEY_SEMICOLON,
    e.KEY_APOSTROPHE,
    e.KEY_GRAVE,
    e.KEY_BACKSLASH,
    e.KEY_102ND,
    e.KEY_COMMA,
    e.KEY_DOT,
    e.KEY_SLASH,
]


@dataclass(frozen=True, slots=True)
class Layout:
    """A keyboard layout: what each key types, and which characters are dead keys."""

    name: str
    keys: Keys
    dead: frozenset[tuple[int, int]] = frozenset()  # (key, level) that waits for the next key

    def level(self, *, shift: bool, altgr: bool) -> int:
        """0 plain, 1 Shift, 2 AltGr."""
        return 2 if altgr else 1 if shift else 0

    def char(self, code: int, *, shift: bool, altgr: bool) -> str | None:
        """The character a key types, "" for a key that types nothing, None if unknown."""
        entry = self.keys.get(code)
        if entry is None:
            return None
        if altgr:
            return entry[2]
        return entry[1] if shift else entry[0]

    def strokes(self, text: str) -> list[tuple[int, bool, bool]]:
        """(key, shift, altgr) per keystroke that types `text` (the scanner's side: simulators)."""
        reverse: dict[str, tuple[int, int]] = {}
        # Highest key and level first, so the lowest plain key wins for a character.
        for code, entry in sorted(self.keys.items(), reverse=True):
            for level in (2, 1, 0):
                if entry[level]:
                    reverse[entry[level]] = (code, level)
        out: list[tuple[int, bool, bool]] = []
        for char in text:
            if char not in reverse:
                raise ValueError(f"layout {self.name} cannot type {char!r}")
            code, level = reverse[char]
            out.append((code, level == 1, level == 2))
            if (code, level) in self.dead:
                out.append((e.KEY_SPACE, False, False))
        return out


US = Layout(
    "us",
    {
        **_letters(),
        **_KEYPAD,
        **_row(_NUMBER_ROW, "1234567890-=", "!@#$%^&*()_+"),
        **_row(_PUNCT, "[];'`\\\\,./", '{}:"~||<>?'),
    },
)

DE = Layout(
    "de",
    {
        **_letters({e.KEY_Y: "z", e.KEY_Z: "y"}),
        e.KEY_Q: ("q", "Q", "@"),
        e.KEY_E: ("e", "E", "€"),
        e.KEY_M: ("m", "M", "µ"),
        **_KEYPAD,
        **_row(_NUMBER_ROW, "1234567890ß´", '!"§$%&/()=?`', " ²³   {[]}\\ "),  # noqa: RUF001
        **_row(_PUNCT, "ü+öä^#<,.-", "Ü*ÖÄ°'>;:_", " ~    |   "),
    },
    dead=frozenset({(e.KEY_EQUAL, 0), (e.KEY_EQUAL, 1), (e.KEY_GRAVE, 0)}),
)

CH = Layout(
    "ch",
    {
        **_letters({e.KEY_Y: "z", e.KEY_Z: "y"}),
        e.KEY_E: ("e", "E", "€"),
        **_KEYPAD,
        **_row(_NUMBER_ROW, "1234567890'^", '+"*ç%&/()=?`', "¦@#°§¬|¢  ´~"),  # noqa: RUF001
        **_row(_PUNCT, "ü¨öä§$<,.-", "è!éà°£>;:_", "[] { }\\   "),
    },
    dead=frozenset(
        {
            (e.KEY_EQUAL, 0),
            (e.KEY_EQUAL, 1),
            (e.KEY_EQUAL, 2),
            (e.KEY_MINUS, 2),
            (e.KEY_RIGHTBRACE, 0),
        }
    ),
)

FR = Layout(
    "fr",
    {
        **_letters(
            {
                e.KEY_Q: "a",
                e.KEY_A: "q",
                e.KEY_W: "z",
                e.KEY_Z: "w",
                e.KEY_SEMICOLON: "m",
            }
        ),
        e.KEY_E: ("e", "E", "€"),
        **_KEYPAD,
        **_row(_NUMBER_ROW, "&é\"'(-è_çà)=", "1234567890°+", " ~#{[|`\\^@]}"),
        **_row(
            [
                e.KEY_LEFTBRACE,
                e.KEY_RIGHTBRACE,
                e.KEY_APOSTROPHE,
                e.KEY_GRAVE,
                e.KEY_BACKSLASH,
                e.KEY_102ND,
                e.KEY_M,
                e.KEY_COMMA,
                e.KEY_DOT,
                e.KEY_SLASH,
            ],
            "^$ù²*<,;:!",
            "¨£% µ>?./§",
            " ¤        ",
        ),
    },
    dead=frozenset({(e.KEY_LEFTBRACE, 0), (e.KEY_LEFTBRACE, 1), (e.KEY_2, 2), (e.KEY_7, 2)}),
)

LAYOUTS = {layout.name: layout for layout in (US, DE, CH, FR)}
