"""The desk and status pages as a clerk sees them, in German and English, in real Chromium.

Every state of the desk is driven from the keyboard or the scanner and photographed at the
desk's 1280x800 touchscreen size (some also at 1920x1080). The screenshots are test
artifacts: they go to build/screenshots/<language>/ (or $EDGE_SCREENSHOTS) and the path is
printed, so a person reviews every screen after a change.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pytest

from drivers.printers.fglrender import render
from integration.counter_harness import CounterProcess, Venue, read_card
from integration.sync_harness import wait_for
from integration.test_counter_browser import CHROMIUM_FLAGS, TIMEOUT_MS, _chromium
from integration.test_counter_desk import FOREIGN

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

ROOT = Path(__file__).resolve().parents[2]
ZONE = "Europe/Berlin"  # the desk's zone; the browser runs in its own (UTC in CI)
DESK: ViewportSize = {"width": 1280, "height": 800}
WIDE: ViewportSize = {"width": 1920, "height": 1080}
TERMS = "Allgemeine Geschäftsbedingungen\n\n1. Die Jahreskarte ist persönlich. " + "Text " * 250

# What each language must say (and the other must not): a sample of the catalogue.
SAYS = {
    "de": {
        "idle": "Gutschein oder Jahreskarte scannen",
        "sign_in": "Zugangsschlüssel",
        "voucher": "Gutschein: bereit zur Ausgabe",
        "required": "Nachname fehlt",
        "issued": "Karte ausgegeben",
        "confirmed": "Von der Zentrale bestätigt",
        "redeemed": "Dieser Gutschein wurde bereits eingelöst",
        "foreign": "Nicht gefunden",
        "pass": "Jahreskarte",
        "replaced": "Neue Karte gedruckt",
        "terms": "AGB an Drucker tickets gesendet",
        "status": "Zentrale",
        "scanner": "Scanner bereit: desk-scanner",
        "wrong_token": "Dieser Schlüssel wird nicht angenommen",
        "month": (
            "Januar Februar März April Mai Juni Juli August September Oktober November Dezember"
        ),
    },
    "en": {
        "idle": "Scan a voucher or pass card",
        "sign_in": "Access token",
        "voucher": "Voucher: ready to issue",
        "required": "Surname is required",
        "issued": "Pass issued",
        "confirmed": "Confirmed by the central system",
        "redeemed": "This voucher has been redeemed already",
        "foreign": "Not found",
        "pass": "Annual pass",
        "replaced": "New card printed",
        "terms": "Terms sent to printer tickets",
        "status": "Central system",
        "scanner": "Scanner ready: desk-scanner",
        "wrong_token": "This token is not accepted",
        "month": (
            "January February March April May June July August September October November December"
        ),
    },
}

# Nothing a clerk should see: JSON, ISO timestamps, Python or template internals.
RAW = re.compile(r'\{"|"\w+":|\d{4}-\d\d-\d\dT\d|items\[\d+\]|None|undefined|NaN|\(\)|\[object')


def _long_day(day: datetime, language: str) -> str:
    month = SAYS[language]["month"].split()[day.month - 1]
    return f"{day.day}. {month} {day.year}" if language == "de" else f"{day.day} {month} {day.year}"


@pytest.fixture(scope="module")
def shots() -> Path:
    folder = Path(os.environ.get("EDGE_SCREENSHOTS") or ROOT / "build" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    executable = _chromium()
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - after the skip check

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=executable,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport=DESK,
            timezone_id="UTC",
        )
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context.new_page()
        finally:
            context.close()


class Screens:
    """Screenshots of one language's run, each checked for raw data first."""

    def __init__(self, page: Any, folder: Path, language: str) -> None:
        self.page = page
        self.folder = folder / language
        self.folder.mkdir(parents=True, exist_ok=True)
        self.language = language
        self.taken: list[Path] = []

    def take(self, name: str, *, wide: bool = False) -> None:
        """Photograph the page (also at 1920x1080 if `wide`); fail on raw data on screen."""
        text = self.page.locator("body").inner_text()
        match = RAW.search(text)
        assert match is None, f"{name}: the clerk sees {match.group(0)!r} in:\n{text}"
        other = "en" if self.language == "de" else "de"
        for key in ("idle", "issued", "voucher"):
            assert SAYS[other][key] not in text, f"{name}: {other} text on a {self.language} page"
        path = self.folder / f"{len(self.taken):02d}-{name}.png"
        self.page.screenshot(path=str(path))
        self.taken.append(path)
        if wide:
            self.page.set_viewport_size(WIDE)
            path = self.folder / f"{len(self.taken):02d}-{name}-1920.png"
            self.page.screenshot(path=str(path))
            self.taken.append(path)
            self.page.set_viewport_size(DESK)


def _result(page: Any, state: str, text: str) -> None:
    from playwright.sync_api import expect  # noqa: PLC0415

    expect(page.locator("#result")).to_contain_text(text, timeout=TIMEOUT_MS)
    expect(page.locator("#result")).to_have_attribute("data-state", state)


def _count_keys(page: Any) -> None:
    """Count key presses (keydown events, modifiers included) from now on."""
    page.evaluate(
        "() => { window.keys = 0; if (!window.counting) { window.counting = true;"
        " document.addEventListener('keydown', () => { window.keys += 1; }, true); } }"
    )


@pytest.mark.slow
@pytest.mark.parametrize("language", ["de", "en"])
def test_every_desk_state_in_the_browser(
    language: str, tmp_path: Path, browser: Any, shots: Path, record_property: Any
) -> None:
    from playwright.sync_api import expect  # noqa: PLC0415

    says = SAYS[language]
    page = browser
    screens = Screens(page, shots, language)
    record_property("screenshots", str(screens.folder))
    print(f"\nscreenshots: {screens.folder}")  # the artifact's path, for people
    venue = Venue(tmp_path)
    url = venue.central.start()
    desk = CounterProcess(tmp_path / "desk", venue)
    desk.language, desk.timezone, desk.terms = language, ZONE, TERMS
    desk.start(url)
    try:
        # The token step: explained, with the file to find it in.
        page.goto(desk.url + "/desk")
        expect(page.locator("html")).to_have_attribute("lang", language)
        expect(page.locator("#auth")).to_contain_text(str(desk.token_file))
        expect(page.locator("#token")).to_be_focused()
        screens.take("sign-in", wide=True)
        page.keyboard.type("not-the-token-at-all-0123")
        page.keyboard.press("Enter")
        expect(page.locator("#auth-error")).to_contain_text(says["wrong_token"])
        screens.take("wrong-token")
        page.keyboard.type(desk.token)
        page.keyboard.press("Enter")
        expect(page.locator("#scanner")).to_have_text(says["scanner"])
        _result(page, "idle", says["idle"])
        expect(page.locator("#code")).to_be_focused()
        screens.take("idle", wide=True)

        # A voucher: the form opens on the surname, prefilled with the buyer.
        voucher = venue.sell_voucher()
        desk.scan(voucher)
        _result(page, "ok", says["voucher"])
        expect(page.locator("#surname")).to_be_focused()
        expect(page.locator("#surname")).to_have_value("Smith")
        screens.take("voucher-found", wide=True)

        page.keyboard.press("Delete")  # the selected surname is gone: required
        page.keyboard.press("Enter")
        _result(page, "error", says["required"])
        expect(page.locator("#surname")).to_be_focused()
        expect(page.locator("#surname")).to_have_attribute("aria-invalid", "true")
        screens.take("field-missing")
        assert desk.printed() == []

        desk.fail_flag.touch()  # the card printer jams
        page.keyboard.type("Jones")
        page.keyboard.press("Enter")
        _result(page, "error", "lp: card jam in the feeder")
        screens.take("printer-failed")
        assert desk.printed() == []
        desk.fail_flag.unlink()

        # Keyboard only, a holder who is not the buyer and has no address: after typing the
        # name, Alt+N (no address) and Enter issue the pass.
        page.locator("#surname").focus()
        page.keyboard.press("Control+A")
        page.keyboard.type("Jones")
        page.keyboard.press("Tab")
        page.keyboard.type("Bo")
        _count_keys(page)
        page.keyboard.press("Alt+N")
        expect(page.locator("#address")).to_have_value("n.a.")
        page.keyboard.press("Enter")
        _result(page, "done", says["issued"])
        keys = page.evaluate("() => window.keys")
        assert keys <= 4, f"{keys} key presses from the name to the issued pass"
        expect(page.locator("#result")).to_contain_text(says["confirmed"])
        berlin = datetime.now(ZoneInfo(ZONE))
        until = _long_day(berlin + timedelta(days=364), language)
        expect(page.locator("#result")).to_contain_text(until)
        (card,) = desk.printed()
        code = read_card(card)
        expect(page.locator("#result")).to_contain_text(code)
        # The sale on screen is the redeemed voucher now, with the pass it became.
        expect(page.locator("#sale")).to_contain_text(
            {"de": "eingelöst", "en": "redeemed"}[language]
        )
        expect(page.locator("#code")).to_be_focused()  # ready for the next scan
        screens.take("issued", wide=True)

        # Terms on request, after the card: Alt+T.
        page.keyboard.press("Alt+T")
        _result(page, "done", says["terms"])
        screens.take("terms-printed")
        wait_for(
            lambda: (
                desk.tickets.exists() and len(render(desk.tickets.read_bytes(), 384, 1100)) == 2
            ),
            20,
            "the terms on two tickets",
        )
        assert "Geschäftsbedingungen".encode("cp850") in desk.tickets.read_bytes()

        # The same voucher again, and a code of another venue.
        desk.scan(voucher)
        _result(page, "error", says["redeemed"])
        screens.take("voucher-redeemed")
        desk.scan(FOREIGN)
        _result(page, "error", says["foreign"])
        screens.take("foreign-code")

        # The buyer is the holder: scan, Enter.
        second = venue.sell_voucher()
        desk.scan(second)
        _result(page, "ok", says["voucher"])
        _count_keys(page)
        page.keyboard.press("Enter")
        _result(page, "done", says["issued"])
        assert page.evaluate("() => window.keys") == 1

        # A pass card: its actions; replacing it asks once more.
        desk.scan(code)
        _result(page, "ok", says["pass"])
        expect(page.locator("#sale")).to_contain_text("Bo Jones")
        screens.take("pass-found", wide=True)
        page.click("#replace")
        expect(page.locator("#replace")).to_have_class(re.compile("armed"))
        screens.take("replace-confirm")
        assert len(desk.printed()) == 2
        page.click("#replace")
        _result(page, "done", says["replaced"])
        expect(page.locator("#code")).to_be_focused()
        expect(page.locator("#code")).to_have_value("")
        screens.take("replaced")
        assert read_card(desk.printed()[-1]) != code

        # Esc: the next customer.
        page.keyboard.press("Escape")
        _result(page, "idle", says["idle"])
        expect(page.locator("#code")).to_be_focused()

        # A pass number typed by hand that nobody has.
        page.fill("#number", "987654")
        page.keyboard.press("Enter")
        expect(page.locator("#result")).to_have_attribute("data-state", "error")
        screens.take("unknown-number")

        # The status page, same session.
        page.click("header nav a[href='/status']")
        expect(page.locator("#device")).to_contain_text("desk-1")
        expect(page.locator("#printers")).to_contain_text("cards")
        expect(page.locator("#scanners")).to_contain_text("desk-scanner")
        expect(page.locator("#desk")).to_contain_text(
            {"de": "Karte ersetzt", "en": "Card replaced"}[language]
        )
        expect(page.locator("body")).to_contain_text(says["status"])
        screens.take("status", wide=True)
    finally:
        desk.stop()
        venue.close()
    assert len(screens.taken) >= 18
