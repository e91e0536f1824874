"""The venue's terms: wrapped into ticket pages the FGL interpreter prints, in letters the
printer's fonts have."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.printers import fgl
from drivers.printers.fglrender import render
from edge.core.errors import ConfigError
from edge.counter import terms


def test_letters_the_fonts_lack_are_spelled_out_or_lose_their_accent() -> None:
    assert terms.printable("Müller, Straße, café, Łódź, \u201eAGB\u201c \u2013 5 €") == (
        'Mueller, Strasse, cafe, Lodz, "AGB" - 5 EUR'
    )
    assert terms.printable("a<b 中") == "a(b ?"


def test_the_terms_font_prints_german_letters_as_they_are() -> None:
    font = fgl.FONTS[terms.FONT]
    assert terms.printable("Müller, Straße, café, Łódź", font.characters) == (
        "Müller, Straße, cafe, Lodz"
    )
    printed = terms.pages("Hausordnung für Besucher: Taschen über 30 cm")[0].render({})
    assert "Hausordnung für Besucher".encode(fgl.ENCODING) in printed


@given(st.text(max_size=200))
def test_printable_text_has_only_the_fonts_characters(text: str) -> None:
    assert set(terms.printable(text.replace("\n", " "))) <= fgl.TEXT_CHARACTERS


def test_long_terms_fill_several_tickets_and_print_every_word() -> None:
    words = [f"Wort{i:03d}" for i in range(400)]
    text = "AGB {Hausordnung}\n\n" + " ".join(words)
    pages = terms.pages(text)
    assert len(pages) > 1
    assert all(page.fields == () for page in pages)
    printed = b"".join(page.render({}) for page in pages)
    assert len(render(printed, 384, 1100)) == len(pages)
    assert b"AGB {Hausordnung}" in printed  # braces print as themselves
    for word in words:
        assert word.encode() in printed


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the terms are empty"),
        (b"\n  \n", "the terms are empty"),
        (b"\xff\xfe not utf-8", "is not UTF-8 text"),
        (("word " * 20000).encode(), "larger than"),
    ],
)
def test_bad_terms_files_are_refused_naming_the_key(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "terms.txt"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as caught:
        terms.load(path)
    assert caught.value.key == "counter.terms_file"


def test_a_missing_terms_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the terms"):
        terms.load(tmp_path / "nothing.txt")


def test_the_shipped_terms_load() -> None:
    pages = terms.load(Path(__file__).parents[2] / "config" / "terms.txt")
    assert pages
