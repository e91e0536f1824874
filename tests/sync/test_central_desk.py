"""The reference central system's pass desk operations: once per key, bad input changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.core.codes import EntryPolicy, Kind, plain_hash
from sync import protocol
from sync.central.cli import main
from sync.central.db import CentralDB
from sync.central.desk import IssueRequest, Person
from sync.central.errors import CentralError
from sync.central.server import Central
from sync.protocol import PlainCodeChange, Revocation, RevokeCode, RevokeCredential

START = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())
BUYER = Person("Smith", "Ann", "1 High St, Bath")


@pytest.fixture
def db(central_target: str) -> Iterator[CentralDB]:
    central = CentralDB(central_target)
    central.keys.add()
    try:
        yield central
    finally:
        central.close()


def voucher(db: CentralDB) -> str:
    annual = db.catalogue.add_product(
        "Annual", kind=Kind.PASS, policy=EntryPolicy.unlimited(10), days=365
    )
    product = db.desk.add_voucher_product("Annual pass voucher", annual)
    return db.desk.sell_voucher(product, BUYER).code


def issue(code: str, card: str = "AP0000000001", **holder: str) -> IssueRequest:
    person = Person(**{"surname": "Jones", "first_name": "Bo", "address": "n.a.", **holder})
    return IssueRequest(code, person, START, "pickup", card)


def changes(db: CentralDB, since: int) -> list[protocol.Change]:
    _, wire, _ = db.log.changes_since(since, 10_000)
    return [protocol.change_from_wire(c, "test") for c in wire]


def test_a_voucher_is_issued_once_per_key_for_a_new_holder(db: CentralDB) -> None:
    code = voucher(db)
    shown = db.desk.lookup(code)
    assert (shown["kind"], shown["state"], shown["buyer"]) == (
        "voucher",
        "active",
        ["Smith", "Ann", "1 High St, Bath"],
    )
    assert (shown["pass_name"], shown["days"], shown["pass"]) == ("Annual", 365, None)
    head = db.log.head()
    first = db.desk.issue("desk-1", "k1", issue(code))
    again = db.desk.issue("desk-1", "k1", issue(code))
    assert first["duplicate"] is False
    assert again["duplicate"] is True
    assert again["credential"] == first["credential"]
    assert first["valid_until"] == START + 365 * 86400 - 1
    _, plain, revoked = changes(db, head)
    assert plain == PlainCodeChange(plain_hash("AP0000000001"), first["credential"])
    assert revoked == RevokeCredential(shown["credential"], Revocation.REVOKED)
    assert db.log.head() == head + 3  # the repeat published nothing
    assert db.desk.lookup(code)["state"] == "redeemed"
    card = db.desk.lookup("AP0000000001")
    assert card["holder_details"] == ["Jones", "Bo", "n.a.", "pickup"]
    assert card["buyer"] == ["Smith", "Ann", "1 High St, Bath"]


def test_a_redeemed_voucher_is_refused_under_a_new_key(db: CentralDB) -> None:
    code = voucher(db)
    db.desk.issue("desk-1", "k1", issue(code))
    head = db.log.head()
    with pytest.raises(CentralError, match="redeemed already"):
        db.desk.issue("desk-2", "k2", issue(code, card="AP0000000002"))
    assert db.log.head() == head


@pytest.mark.parametrize(
    ("holder", "message"),
    [({"surname": " "}, "surname is required"), ({"address": ""}, "address is required")],
)
def test_missing_holder_fields_are_named(holder: dict[str, str], message: str) -> None:
    with pytest.raises(CentralError, match=message):
        issue("X", **holder)


def test_extend_replace_and_cancel(db: CentralDB) -> None:
    code = voucher(db)
    cid = db.desk.issue("desk-1", "k1", issue(code))["credential"]
    extended = db.desk.extend("desk-1", "k2", cid)
    assert extended["valid_until"] == START + 2 * 365 * 86400 - 1
    assert db.desk.extend("desk-1", "k2", cid) == {**extended, "duplicate": True}
    head = db.log.head()
    db.desk.replace("desk-1", "k3", cid, "AP0000000009")
    assert changes(db, head) == [
        RevokeCode(plain_hash("AP0000000001"), Revocation.REPLACED),
        PlainCodeChange(plain_hash("AP0000000009"), cid),
    ]
    with pytest.raises(CentralError, match="replaced or revoked"):
        db.desk.lookup("AP0000000001")
    assert db.desk.lookup("AP0000000009")["credential"] == cid
    head = db.log.head()
    assert db.desk.cancel("desk-1", "k4", cid)["cancelled"] == [cid]
    assert changes(db, head) == [RevokeCredential(cid, Revocation.CANCELLED)]
    with pytest.raises(CentralError, match="used for a cancel"):
        db.desk.extend("desk-1", "k4", cid)


def test_every_central_route_is_documented(db: CentralDB) -> None:
    doc = (Path(__file__).parent.parent.parent / "docs" / "protocol.md").read_text("utf-8")
    paths = {r.resource.canonical for r in Central(db).app().router.routes() if r.resource}
    assert {p for p in paths if p.startswith("/v1/")} <= {p for p in paths if f"| `{p}` |" in doc}


def test_the_till_sells_vouchers_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "central.db")
    assert main(["--db", path, "key", "add"]) == 0
    assert main(["--db", path, "product", "add", "Annual", "--kind", "pass", "--days", "365"]) == 0
    assert main(["--db", path, "voucher", "product", "Annual voucher", "--pass", "1"]) == 0
    capsys.readouterr()
    assert (
        main(["--db", path, "voucher", "sell", "2", "--surname", "Li", "--first-name", "Mo"]) == 0
    )
    cid, code = capsys.readouterr().out.split()
    db = CentralDB(path)
    try:
        shown = db.desk.lookup(code)
    finally:
        db.close()
    assert (shown["credential"], shown["kind"], shown["buyer"]) == (
        int(cid),
        "voucher",
        ["Li", "Mo", "n.a."],
    )
    assert (
        main(["--db", path, "voucher", "sell", "1", "--surname", "Li", "--first-name", "Mo"]) == 1
    )
    assert "not a pass voucher" in capsys.readouterr().err
