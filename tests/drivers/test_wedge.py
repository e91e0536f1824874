"""drivers.scanners.wedge and keymap: key events to text in every layout (pure)."""

from __future__ import annotations

import pytest
from evdev import InputEvent
from evdev import ecodes as e
from hypothesis import given
from hypothesis import strategies as st
from keyboards import keystrokes, recorded

from drivers.scanners.keymap import CH, DE, FR, LAYOUTS, US, Layout
from drivers.scanners.wedge import OVERFLOW, UNKNOWN, Terminator, WedgeDecoder, WedgeSettings

# A scan of "Ab-/zy" by a scanner set to US English, key by key as evtest lists a scan (keys 1
# ms apart). Written by hand from the layout, not captured from a device on this machine.
US_SCAN = [
    (0, e.KEY_LEFTSHIFT, 1), (1, e.KEY_A, 1), (2, e.KEY_A, 0), (3, e.KEY_LEFTSHIFT, 0),
    (4, e.KEY_B, 1), (5, e.KEY_B, 0),
    (6, e.KEY_MINUS, 1), (7, e.KEY_MINUS, 0),  # -
    (8, e.KEY_SLASH, 1), (9, e.KEY_SLASH, 0),  # /
    (10, e.KEY_Z, 1), (11, e.KEY_Z, 0),
    (12, e.KEY_Y, 1), (13, e.KEY_Y, 0),
    (14, e.KEY_ENTER, 1), (15, e.KEY_ENTER, 0),
]  # fmt: skip
# The same label, "Ab-/zyß", from a scanner set to German (QWERTZ): z and y swap keys, "-" is
# where US has "/", "/" is Shift+7 and ß is where US has "-".
DE_SCAN = [
    (0, e.KEY_LEFTSHIFT, 1), (1, e.KEY_A, 1), (2, e.KEY_A, 0), (3, e.KEY_LEFTSHIFT, 0),
    (4, e.KEY_B, 1), (5, e.KEY_B, 0),
    (6, e.KEY_SLASH, 1), (7, e.KEY_SLASH, 0),  # -
    (8, e.KEY_LEFTSHIFT, 1), (9, e.KEY_7, 1), (10, e.KEY_7, 0), (11, e.KEY_LEFTSHIFT, 0),  # /
    (12, e.KEY_Y, 1), (13, e.KEY_Y, 0),  # z
    (14, e.KEY_Z, 1), (15, e.KEY_Z, 0),  # y
    (16, e.KEY_MINUS, 1), (17, e.KEY_MINUS, 0),  # ß
    (18, e.KEY_KPENTER, 1), (19, e.KEY_KPENTER, 0),
]  # fmt: skip


def decode(layout: Layout, events: list[InputEvent], **settings: object) -> list[bytes]:
    decoder = WedgeDecoder(layout, WedgeSettings(**settings))  # type: ignore[arg-type]
    out = []
    for ev in events:
        done = decoder.feed(ev.type, ev.code, ev.value, ev.timestamp())
        if done is not None:
            out.append(done)
    return out


def test_recorded_us_scan() -> None:
    assert decode(US, recorded(US_SCAN)) == [b"Ab-/zy"]


def test_recorded_german_scan() -> None:
    assert decode(DE, recorded(DE_SCAN)) == ["Ab-/zyß".encode()]


def test_german_scan_read_as_us_is_wrong_text() -> None:
    """Why the layout is configured: the same keys mean other characters."""
    assert decode(US, recorded(DE_SCAN)) == [b"Ab/&yz-"]


@pytest.mark.parametrize(
    ("layout", "text"),
    [
        (US, "EDGE:ABC-123/x_y@#~"),
        (DE, "zyß-/@€{[]}\\~|<>§°^´`äöüÄÖÜ"),  # noqa: RUF001
        (CH, "zy-/@#|¢[]{}\\~^`´¨!éàèç$£<>§°"),  # noqa: RUF001
        (FR, "azqwm,;:!&é\"'(-è_çà)=@#{[|`\\^]}~ù*µ$£¤<>"),
    ],
)
def test_layout_specials(layout: Layout, text: str) -> None:
    assert decode(layout, keystrokes(layout, text)) == [text.encode()]


ASCII_CODE = st.text(
    alphabet=st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-:./"),
    min_size=1,
    max_size=80,
)


@given(layout=st.sampled_from(sorted(LAYOUTS)), text=ASCII_CODE)
def test_every_layout_reads_codes_exactly(layout: str, text: str) -> None:
    assert decode(LAYOUTS[layout], keystrokes(LAYOUTS[layout], text)) == [text.encode()]


def test_tab_terminator_and_enter_ignored() -> None:
    events = keystrokes(US, "AB", end=e.KEY_ENTER) + keystrokes(
        US, "CD", start=1000.02, end=e.KEY_TAB
    )
    assert decode(US, events, terminator=Terminator.TAB) == [b"ABCD"]


def test_bare_terminators_are_not_scans() -> None:
    assert decode(US, keystrokes(US, "", end=e.KEY_ENTER) * 3) == []


def test_aim_identifier_stripped_or_kept() -> None:
    events = keystrokes(US, "]Q1EDGE:ABC")
    assert decode(US, events) == [b"EDGE:ABC"]
    assert decode(US, events, strip_aim=False) == [b"]Q1EDGE:ABC"]
    assert decode(US, keystrokes(US, "]C0123456")) == [b"123456"]
    assert decode(US, keystrokes(US, "]")) == [b"]"]


def test_too_long_scan_is_overflow_and_next_scan_is_clean() -> None:
    events = keystrokes(US, "A" * 20) + keystrokes(US, "OK", start=1000.1)
    assert decode(US, events, max_length=10) == [OVERFLOW, b"OK"]


def test_unknown_key_and_ctrl_make_scan_unreadable() -> None:
    rows = [
        (0, e.KEY_A, 1),
        (1, e.KEY_F1, 1),
        (2, e.KEY_F1, 0),
        (3, e.KEY_B, 1),
        (4, e.KEY_ENTER, 1),
    ]
    assert decode(US, recorded(rows)) == [f"a{UNKNOWN}b".encode()]
    ctrl = recorded(
        [(0, e.KEY_LEFTCTRL, 1), (1, e.KEY_J, 1), (2, e.KEY_J, 0), (3, e.KEY_LEFTCTRL, 0)]
    )
    assert decode(US, ctrl + keystrokes(US, "X", start=1_700_000_000.01)) == [
        f"{UNKNOWN}X".encode()
    ]


def test_caps_lock_inverts_letters_only() -> None:
    caps = recorded([(0, e.KEY_CAPSLOCK, 1), (1, e.KEY_CAPSLOCK, 0)])
    assert decode(US, caps + keystrokes(US, "aB1!", start=1_700_000_000.01)) == [b"Ab1!"]


def test_alt_codes() -> None:
    """Alt + keypad digits: 0223 is ß in Windows-1252, 225 is ß in code page 437."""
    rows = [(0, e.KEY_LEFTALT, 1)]
    rows += [
        (1 + i, k, v)
        for i, k in enumerate([e.KEY_KP0, e.KEY_KP2, e.KEY_KP2, e.KEY_KP3])
        for v in (1, 0)
    ]
    rows += [(10, e.KEY_LEFTALT, 0), (11, e.KEY_LEFTALT, 1)]
    rows += [
        (12 + i, k, v) for i, k in enumerate([e.KEY_KP2, e.KEY_KP2, e.KEY_KP5]) for v in (1, 0)
    ]
    rows += [(20, e.KEY_LEFTALT, 0), (21, e.KEY_ENTER, 1), (22, e.KEY_ENTER, 0)]
    assert decode(US, recorded(rows)) == ["ßß".encode()]


def test_dead_key_then_letter_types_both() -> None:
    rows = [(0, e.KEY_GRAVE, 1), (1, e.KEY_GRAVE, 0), (2, e.KEY_A, 1), (3, e.KEY_A, 0)]
    rows += [(4, e.KEY_GRAVE, 1), (5, e.KEY_ENTER, 1)]
    assert decode(DE, recorded(rows)) == [b"^a^"]


def test_timeout_terminator_and_interrupted_scan() -> None:
    decoder = WedgeDecoder(US, WedgeSettings(Terminator.TIMEOUT, timeout=0.05))
    for ev in keystrokes(US, "AB", end=0, start=10.0):
        assert decoder.feed(ev.type, ev.code, ev.value, ev.timestamp()) is None
    assert decoder.expire(decoder.last_key + 0.01) is None
    assert decoder.expire(decoder.last_key + 0.05) == b"AB"
    # Enter terminator: a partial scan that times out is dropped, not glued to the next one.
    decoder = WedgeDecoder(US, WedgeSettings(Terminator.ENTER, timeout=0.05))
    for ev in keystrokes(US, "PARTIAL", end=0, start=10.0):
        decoder.feed(ev.type, ev.code, ev.value, ev.timestamp())
    out = [
        decoder.feed(ev.type, ev.code, ev.value, ev.timestamp())
        for ev in keystrokes(US, "WHOLE", start=11.0)
    ]
    assert [o for o in out if o] == [b"WHOLE"]


def test_strokes_refuses_untypable() -> None:
    with pytest.raises(ValueError, match="cannot type"):
        US.strokes("ß")
