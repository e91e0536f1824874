"""The pass desk end to end over the device API: the reference central system, a counter with
a card printer, and a gate that must admit each new card and reject each old one."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.core.codes import Claims, Kind, mint
from integration.counter_harness import CounterProcess, Venue, read_card, read_tickets
from integration.sync_harness import free_port, wait_for

START = datetime.now(UTC).date().isoformat()
# A voucher sold by another venue: the same key id, another key.
FOREIGN = mint(Claims(key_id=1, credential_id=1, kind=Kind.VOUCHER), Ed25519PrivateKey.generate())
FORM = {
    "surname": "Jones",
    "first_name": "Bo",
    "address": "n.a.",
    "valid_from": START,
    "shipping": "post",
}


@pytest.fixture
def venue(tmp_path: Path) -> Iterator[Venue]:
    venue = Venue(tmp_path)
    try:
        yield venue
    finally:
        venue.close()


def until(days: int) -> str:
    return (datetime.now(UTC).date() + timedelta(days=days - 1)).isoformat()


@pytest.mark.slow
def test_issue_extend_replace_cancel_online(venue: Venue, tmp_path: Path) -> None:
    url = venue.central.start()
    venue.gate.start(url, pull_interval=1.0)
    desk = CounterProcess(tmp_path / "desk", venue)
    desk.start(url)
    try:
        voucher = venue.sell_voucher()
        status, sale = desk.call("/api/v1/desk/lookup", {"code": voucher})
        assert status == 200, sale
        assert (sale["source"], sale["kind"], sale["state"]) == ("central", "voucher", "active")
        assert sale["buyer"] == ["Smith", "Ann", "1 High St, Bath"]

        # A BOCA ticket for the voucher, from the same desk.
        status, ticket = desk.call("/api/v1/desk/ticket", {"code": voucher})
        assert status == 202, ticket
        wait_for(lambda: read_tickets(desk.tickets) == [voucher], 20, "the voucher's ticket")

        status, error = desk.call("/api/v1/desk/issue", {**FORM, "voucher": FOREIGN})
        assert status == 422, error
        assert "not a code of this venue" in error["error"]

        # Bad input: a clear message naming the field, nothing printed, nothing queued.
        status, error = desk.call("/api/v1/desk/issue", {**FORM, "voucher": voucher, "surname": ""})
        assert (status, error["field"]) == (422, "surname"), error
        assert "Surname is required" in error["error"]
        assert desk.printed() == []
        assert desk.desk_operations() == []

        status, issued = desk.call("/api/v1/desk/issue", {**FORM, "voucher": voucher})
        assert status == 200, issued
        assert issued["state"] == "sent"
        assert issued["valid_until"] == until(365)
        (card,) = desk.printed()
        code = read_card(card)
        assert code == issued["card"]
        venue.gate_current()
        assert venue.gate.scan(code) == "admitted"

        status, error = desk.call("/api/v1/desk/issue", {**FORM, "voucher": voucher})
        assert status == 422, error
        assert "redeemed" in error["error"]
        assert len(desk.printed()) == 1

        status, pass_ = desk.call("/api/v1/desk/lookup", {"code": code})
        assert (pass_["kind"], pass_["holder"]) == ("pass", "Bo Jones")
        cid = pass_["credential"]
        status, extended = desk.call("/api/v1/desk/extend", {"credential": cid, "code": code})
        assert status == 200, extended
        assert extended["valid_until"] == until(730)
        assert extended["reprinted"] is True
        assert read_card(desk.printed()[-1]) == code  # same code, new validity on the card

        status, replaced = desk.call("/api/v1/desk/replace", {"credential": cid})
        assert status == 200, replaced
        new = read_card(desk.printed()[-1])
        assert new == replaced["card"] != code
        venue.gate_current()
        assert venue.gate.scan(code) == "replaced"
        assert venue.gate.scan(new) == "admitted"

        status, cancelled = desk.call("/api/v1/desk/cancel", {"credential": cid})
        assert status == 200, cancelled
        assert cancelled["state"] == "sent"
        venue.gate_current()
        assert venue.gate.scan(new) == "cancelled"
        assert [state for _, state in desk.desk_operations()] == ["sent"] * 4
    finally:
        desk.stop()


@pytest.mark.slow
def test_a_jammed_card_printer_issues_nothing(venue: Venue, tmp_path: Path) -> None:
    url = venue.central.start()
    desk = CounterProcess(tmp_path / "desk", venue)
    desk.start(url)
    try:
        voucher = venue.sell_voucher()
        desk.fail_flag.touch()
        status, error = desk.call("/api/v1/desk/issue", {**FORM, "voucher": voucher})
        assert status == 422, error
        assert "card jam in the feeder" in error["error"], error
        assert "The pass was not issued" in error["error"]
        assert desk.desk_operations() == []
        status, sale = desk.call("/api/v1/desk/lookup", {"code": voucher})
        assert sale["state"] == "active"  # the voucher can still be redeemed
        desk.fail_flag.unlink()
        status, issued = desk.call("/api/v1/desk/issue", {**FORM, "voucher": voucher})
        assert status == 200, issued
        assert issued["state"] == "sent"
        assert len(desk.printed()) == 1  # the abandoned job never printed later
    finally:
        desk.stop()


@pytest.mark.slow
def test_an_offline_issue_reaches_the_central_system_once(venue: Venue, tmp_path: Path) -> None:
    port = free_port()
    url = venue.central.start(port)
    venue.gate.start(url, pull_interval=1.0)
    desk = CounterProcess(tmp_path / "desk", venue)
    voucher = venue.sell_voucher()
    desk.start(url)
    try:
        wait_for(
            lambda: (
                desk.call("/api/v1/status")[1]["sync"]["lag"] == 0
                and desk.call("/api/v1/status")[1]["sync"]["revision"]
            ),
            20,
            "the desk to sync",
        )
        venue.central.kill()
        status, sale = desk.call("/api/v1/desk/lookup", {"code": voucher})
        assert status == 200, sale
        assert (sale["source"], sale["kind"], sale["state"]) == ("synced copy", "voucher", "active")
        status, error = desk.call("/api/v1/desk/lookup", {"code": FOREIGN})
        assert status == 422, error
        assert "Not a code of this venue" in error["error"]
        status, issued = desk.call("/api/v1/desk/issue", {**FORM, "voucher": voucher})
        assert status == 200, issued
        assert issued["state"] == "queued"
        code = read_card(desk.printed()[-1])
        status, again = desk.call("/api/v1/desk/lookup", {"code": voucher})
        assert again["state"] == "redeemed"  # the desk knows what it queued
        desk.stop()  # the queued issue survives a restart
        venue.central.start(port)
        desk.start(url)
        wait_for(lambda: desk.desk_operations() == [("issue", "sent")], 30, "the queued issue")
        db = venue.central.db
        assert db.desk.operation_count() == 1
        assert db.desk.pass_count() == 1
        venue.gate_current()
        assert venue.gate.scan(code) == "admitted"

        # Offline again: the card is in the synced copy now, so it can be extended (and,
        # since the card shows its validity, reprinted); the extension is sent once later.
        head = db.log.head()
        wait_for(lambda: desk.call("/api/v1/status")[1]["sync"]["revision"] >= head, 20, "sync")
        venue.central.kill()
        status, card = desk.call("/api/v1/desk/lookup", {"code": code})
        assert (status, card["source"], card["kind"]) == (200, "synced copy", "pass"), card
        status, extended = desk.call(
            "/api/v1/desk/extend", {"credential": card["credential"], "code": code}
        )
        assert status == 200, extended
        assert (extended["state"], extended["valid_until"]) == ("queued", until(730))
        assert read_card(desk.printed()[-1]) == code
        venue.central.start(port)
        wait_for(lambda: desk.desk_operations()[-1] == ("extend", "sent"), 30, "the extension")
        valid_until = db.desk.lookup(number=card["credential"])["valid_until"]
        assert datetime.fromtimestamp(valid_until, UTC).date().isoformat() == until(730)

        # The card is lost while the central system is down: replaced by its number from the
        # synced copy; the old card stops opening gates once the replacement arrives.
        venue.central.kill()
        status, replaced = desk.call("/api/v1/desk/replace", {"credential": card["credential"]})
        assert status == 200, replaced
        assert replaced["state"] == "queued"
        new = read_card(desk.printed()[-1])
        assert new == replaced["card"] != code
        venue.central.start(port)
        wait_for(lambda: desk.desk_operations()[-1] == ("replace", "sent"), 30, "the replacement")
        venue.gate_current()
        assert venue.gate.scan(code) == "replaced"
        assert venue.gate.scan(new) == "admitted"
    finally:
        desk.stop()
        venue.gate.kill(signal.SIGTERM)
