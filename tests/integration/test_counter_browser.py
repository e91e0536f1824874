"""The pass desk and the status page in a real headless Chromium (Debian's package, driven by
Playwright): a voucher scanned on the desk's scanner arrives over the WebSocket, the card
comes out of the (CUPS) card printer, and the gate admits it.

CI (.ci/run) installs Debian's chromium when it is missing and sets EDGE_REQUIRE_CHROMIUM=1,
so there a missing browser fails instead of skipping.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.counter_harness import CounterProcess, Venue, read_card, read_tickets
from tests.integration.sync_harness import wait_for
from tests.integration.test_counter_desk import FOREIGN

CHROMIUM_FLAGS = [
    "--no-sandbox",  # the tests run as root in CI containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 30_000


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("EDGE_REQUIRE_CHROMIUM"):
            pytest.fail("chromium is missing; install Debian's chromium package")
        pytest.skip("chromium is missing (apt-get install chromium); CI runs this test")
    return path


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    executable = _chromium()
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - after the skip check

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=executable,
            headless=True,
            args=CHROMIUM_FLAGS,
        )
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context.new_page()
        finally:
            context.close()


@pytest.fixture
def venue(tmp_path: Path) -> Iterator[Venue]:
    venue = Venue(tmp_path)
    try:
        yield venue
    finally:
        venue.close()


def message(page: Any, text: str, kind: str) -> None:
    """Wait until the page's message says `text` with class `kind`."""
    from playwright.sync_api import expect  # noqa: PLC0415

    expect(page.locator("#message")).to_contain_text(text, timeout=TIMEOUT_MS)
    expect(page.locator("#message")).to_have_class(kind)


@pytest.mark.slow
def test_the_desk_issues_and_replaces_a_pass_in_the_browser(
    venue: Venue, tmp_path: Path, page: Any
) -> None:
    from playwright.sync_api import expect  # noqa: PLC0415

    url = venue.central.start()
    venue.gate.start(url, pull_interval=1.0)
    desk = CounterProcess(tmp_path / "desk", venue)
    desk.start(url)
    try:
        page.goto(desk.url + "/desk")
        page.fill("#token", desk.token)
        page.click("text=Use token")
        expect(page.locator("#scanner")).to_contain_text("connected (desk-scanner)")

        voucher = venue.sell_voucher()
        desk.scan(voucher)  # the scanner's line reaches the page over the WebSocket
        message(page, "Found a voucher (central)", "ok")
        expect(page.locator("#surname")).to_have_value("Smith")  # the buyer, to start from

        page.click("#print-ticket")  # a BOCA ticket for the voucher, from the same desk
        message(page, "Ticket sent to printer tickets", "ok")
        wait_for(lambda: read_tickets(desk.tickets) == [voucher], 20, "the voucher's ticket")

        page.fill("#surname", "")
        page.click("#print-card")
        message(page, "Surname is required", "error")
        assert desk.printed() == []

        # The holder is not the buyer: a new customer without a recorded address.
        page.fill("#surname", "Jones")
        page.fill("#first_name", "Bo")
        page.click("#no-address")
        expect(page.locator("#address")).to_have_value("n.a.")
        page.check("#post")
        desk.fail_flag.touch()  # the card printer jams
        page.click("#print-card")
        message(page, "lp: card jam in the feeder", "error")
        message(page, "The pass was not issued", "error")
        assert desk.printed() == []
        desk.fail_flag.unlink()
        page.click("#print-card")
        message(page, "Pass issued (confirmed by the central system)", "ok")
        (card,) = desk.printed()
        code = read_card(card)
        assert code in page.locator("#message").inner_text()
        venue.gate_current()
        assert venue.gate.scan(code) == "admitted"

        desk.scan(voucher)
        message(page, "This voucher is redeemed already", "error")
        desk.scan(FOREIGN)
        message(page, "not a code of this venue", "error")

        desk.scan(code)
        message(page, "Found a pass (central)", "ok")
        page.click("#replace")
        message(page, "Replaced: new card", "ok")
        new = read_card(desk.printed()[-1])
        assert new != code
        venue.gate_current()
        assert venue.gate.scan(code) == "replaced"
        assert venue.gate.scan(new) == "admitted"

        page.click("text=Status")
        expect(page.locator("#device")).to_have_text("desk-1")
        expect(page.locator("#sync")).to_contain_text("current")
        expect(page.locator("#printers")).to_contain_text("cards")
        expect(page.locator("#scanners")).to_contain_text("desk-scanner")
        expect(page.locator("#desk")).to_contain_text("replace")

        page.goto(venue.gate.url + "/status")  # the gate's own page: its last decisions
        page.fill("#token", venue.gate.token)
        page.click("text=Use token")
        expect(page.locator("#device")).to_have_text("gate-1")
        decisions = page.locator("#decisions")
        expect(decisions).to_contain_text("replaced")
        expect(decisions).to_contain_text("admitted")
        expect(decisions).to_contain_text("gate-1-lane")
    finally:
        desk.stop()
