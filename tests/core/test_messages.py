"""edge.core.messages: a display text for every outcome in every language."""

from __future__ import annotations

import string
from collections.abc import Callable
from datetime import UTC, date, datetime

import pytest

from edge.core.decide import Decision, Reason
from edge.core.facts import Direction
from edge.core.messages import (
    LANGUAGES,
    TEXTS,
    UI,
    catalogue,
    format_day,
    reason_label,
    text,
    ui,
)

FIRST_ENTRY = datetime(2026, 6, 1, 9, 30, tzinfo=UTC)
UNTIL = datetime(2026, 12, 31, 23, 0, tzinfo=UTC)


def _full(reason: Reason) -> Decision:
    """A decision with every field a text may show."""
    return Decision(
        reason, Direction.ENTRY, 1001, at=FIRST_ENTRY, gate="North 1", until=UNTIL, remaining=3
    )


def _bare(reason: Reason) -> Decision:
    """A decision with none of the optional fields."""
    return Decision(reason)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("reason", list(Reason))
@pytest.mark.parametrize("build", [_full, _bare], ids=["full", "bare"])
def test_every_reason_has_a_filled_text_in_every_language(
    reason: Reason, language: str, build: Callable[[Reason], Decision]
) -> None:
    message = text(build(reason), language, UTC)
    assert message.strip()
    assert "{" not in message
    assert "}" not in message
    assert "None" not in message


def test_languages_are_en_de_fr_and_texts_cover_every_reason() -> None:
    assert set(LANGUAGES) == {"en", "de", "fr"}
    assert set(TEXTS) == set(Reason)
    for reason in Reason:
        assert set(TEXTS[reason]) == set(LANGUAGES), reason


def test_texts_differ_between_languages() -> None:
    for reason in Reason:
        assert len({TEXTS[reason][language] for language in LANGUAGES}) == 3, reason


def test_rejects_do_not_share_a_text() -> None:
    # A person at the gate must be able to tell the reasons apart.
    for language in LANGUAGES:
        texts = [TEXTS[reason][language] for reason in Reason]
        assert len(set(texts)) == len(texts), language


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "Already used at 01.06. 09:30, North 1"),
        ("de", "Bereits benutzt um 01.06. 09:30, North 1"),
        ("fr", "Déjà utilisé à 01.06. 09:30, North 1"),
    ],
)
def test_already_used_names_time_and_gate(language: str, expected: str) -> None:
    assert text(_full(Reason.ALREADY_USED), language, UTC) == expected


def test_times_are_shown_in_the_display_zone() -> None:
    from zoneinfo import ZoneInfo  # noqa: PLC0415 - only this test needs a named zone

    vienna = ZoneInfo("Europe/Vienna")  # UTC+2 in June
    assert "11:30" in text(_full(Reason.ALREADY_USED), "de", vienna)
    assert "01.01.2027 00:00" in text(_full(Reason.EXPIRED), "de", vienna)


@pytest.mark.parametrize("language", LANGUAGES)
def test_passback_names_time_and_gate(language: str) -> None:
    message = text(_full(Reason.PASSBACK), language, UTC)
    assert "09:30" in message
    assert "North 1" in message


@pytest.mark.parametrize(
    ("reason", "shown"), [(Reason.NOT_YET_VALID, UNTIL), (Reason.EXPIRED, UNTIL)]
)
@pytest.mark.parametrize("language", LANGUAGES)
def test_validity_bounds_show_the_date(reason: Reason, shown: datetime, language: str) -> None:
    assert "31.12.2026 23:00" in text(_full(reason), language, UTC)


@pytest.mark.parametrize(
    ("language", "unknown"), [("en", "unknown"), ("de", "unbekannt"), ("fr", "inconnu")]
)
def test_missing_time_and_gate_read_unknown(language: str, unknown: str) -> None:
    message = text(_bare(Reason.ALREADY_USED), language, UTC)
    assert message.count(unknown) == 2


@pytest.mark.parametrize(
    ("language", "suffix"),
    [("en", "3 entries left"), ("de", "noch 3 Eintritte"), ("fr", "encore 3 entrées")],
)
def test_admitted_counted_entry_shows_what_is_left(language: str, suffix: str) -> None:
    assert text(_full(Reason.ADMITTED), language, UTC).endswith(suffix)
    assert (
        text(Decision(Reason.ADMITTED, remaining=0), language, UTC)
        == TEXTS[Reason.ADMITTED][language]
    )
    assert suffix not in text(_full(Reason.EXIT), language, UTC)


def _placeholders(message: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(message) if name}


@pytest.mark.parametrize("key", sorted(UI))
def test_every_page_text_exists_in_every_language_with_the_same_placeholders(key: str) -> None:
    texts = UI[key]
    assert len(texts) == len(LANGUAGES)
    assert all(t.strip() for t in texts), key
    expected = _placeholders(texts[0])
    for language, message in zip(LANGUAGES, texts, strict=True):
        assert _placeholders(message) == expected, (key, language)


def test_a_page_text_is_filled_and_a_missing_key_is_an_error() -> None:
    assert (
        ui("done.extended", "de", until="31. Dezember 2027") == "Verlängert bis 31. Dezember 2027"
    )
    assert catalogue("fr")["form.surname"] == "Nom"
    with pytest.raises(KeyError):
        ui("no.such.text", "en")


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("reason", list(Reason))
def test_every_reason_has_a_short_label_without_placeholders(reason: Reason, language: str) -> None:
    label = reason_label(reason, language)
    assert label.strip()
    assert "{" not in label


@pytest.mark.parametrize(
    ("language", "expected"),
    [("en", "5 Mar 2027"), ("de", "05.03.2027"), ("fr", "05/03/2027")],
)
def test_a_day_is_written_the_language_s_way(language: str, expected: str) -> None:
    assert format_day(date(2027, 3, 5), language) == expected
