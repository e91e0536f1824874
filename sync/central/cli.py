"""The `edge-central` command: run the reference central system and administer it."""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import logging
import sqlite3
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge.core.codes import EntryPolicy, Kind
from edge.core.errors import EdgeError
from sync.central import bundle
from sync.central.db import CentralDB
from sync.central.desk import Person
from sync.central.server import serve

EXIT_ERROR = 1
NO_ADDRESS = "n.a."  # what a desk records where a buyer has no address


def _moment(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date or time: {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _public(value: str) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != 32:
        raise argparse.ArgumentTypeError("a device key is the base64 of 32 bytes")
    return raw


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-central", description="The reference central system for edge devices."
    )
    parser.add_argument("--db", type=Path, default=Path("central.db"), help="SQLite file")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("serve", help="run the device API and push to registered edges")
    run.add_argument("--address", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8400, help="0 picks a free port")

    key = sub.add_parser("key", help="signing keys").add_subparsers(dest="action", required=True)
    key.add_parser("add", help="a new signing key (the newest active key signs)")
    retire = key.add_parser("retire", help="retire a key; its codes stop admitting")
    retire.add_argument("key_id", type=int)
    key.add_parser("list")

    device = sub.add_parser("device", help="edge devices").add_subparsers(
        dest="action", required=True
    )
    add_device = device.add_parser("add", help="register a device by its public key")
    add_device.add_argument("name")
    add_device.add_argument("public", type=_public, help="base64, from the device's start log")
    remove_device = device.add_parser("remove", help="refuse a device's requests, stop pushes")
    remove_device.add_argument("name")
    device.add_parser("list")

    event = sub.add_parser("event", help="events").add_subparsers(dest="action", required=True)
    add_event = event.add_parser("add")
    add_event.add_argument("name")
    add_event.add_argument("--id", type=int)
    cancel = event.add_parser("cancel", help="reject every ticket of the event at every gate")
    cancel.add_argument("event_id", type=int)

    product = sub.add_parser("product", help="products").add_subparsers(
        dest="action", required=True
    )
    add_product = product.add_parser("add")
    add_product.add_argument("name")
    add_product.add_argument("--id", type=int)
    add_product.add_argument("--kind", choices=[k.name.lower() for k in Kind], default="ticket")
    policy = add_product.add_mutually_exclusive_group()
    policy.add_argument("--uses", type=int, default=1)
    policy.add_argument("--unlimited", type=int, metavar="PASSBACK_MINUTES")
    add_product.add_argument("--days", type=int, help="validity of passes in days")
    add_product.add_argument("--zones", type=int, default=0, help="zone bitmask")

    _workflow_parsers(sub)
    _voucher_parsers(sub)
    return parser


def _voucher_parsers(sub: Any) -> None:
    voucher = sub.add_parser("voucher", help="annual-pass vouchers the till sells").add_subparsers(
        dest="action", required=True
    )
    product = voucher.add_parser("product", help="a voucher product, redeemed for a pass")
    product.add_argument("name")
    product.add_argument("--pass", dest="pass_product", type=int, required=True)
    sell = voucher.add_parser("sell", help="sell one voucher; prints its id and code")
    sell.add_argument("product", type=int)
    sell.add_argument("--surname", required=True)
    sell.add_argument("--first-name", required=True)
    sell.add_argument("--address", default=NO_ADDRESS, help='default "n.a."')


def _voucher(db: CentralDB, args: argparse.Namespace) -> None:
    if args.action == "product":
        print(f"product {db.desk.add_voucher_product(args.name, args.pass_product)}")
    else:
        buyer = Person(args.surname, args.first_name, args.address)
        sold = db.desk.sell_voucher(args.product, buyer)
        print(f"{sold.credential_id} {sold.code}")


def _workflow_parsers(sub: Any) -> None:
    sell = sub.add_parser("sell", help="sell credentials; prints id and code of each")
    sell.add_argument("product", type=int)
    sell.add_argument("--event", type=int, default=0)
    sell.add_argument("--count", type=int, default=1)
    sell.add_argument("--holder")
    sell.add_argument("--unpaid", action="store_true")
    sell.add_argument("--season", type=int)
    sell.add_argument("--valid-from", type=_moment)
    sell.add_argument("--plain", action="append", default=[], help="legacy barcode, per credential")

    revoke = sub.add_parser("revoke", help="revoke one code")
    revoke.add_argument("code")
    cancel_sale = sub.add_parser("cancel-sale", help="cancel a sale: its codes stop admitting")
    cancel_sale.add_argument("sale", type=int)
    extend = sub.add_parser("extend", help="extend a pass by its original duration")
    extend.add_argument("credential", type=int)
    replace = sub.add_parser("replace", help="invalidate a lost card and issue a new code")
    replace.add_argument("credential", type=int)
    paid = sub.add_parser("paid", help="record a payment: the credential opens gates")
    paid.add_argument("credential", type=int)

    renew = sub.add_parser("renew", help="renew a season's credentials for the next season")
    renew.add_argument("season", type=int)
    renew.add_argument("new_season", type=int)
    renew.add_argument("--valid-from", type=_moment, required=True)
    renew.add_argument("--batch", type=int, default=100, help="credentials per transaction")
    renew.add_argument("--dry-run", action="store_true", help="report, change nothing")

    sub.add_parser("doubles", help="report single-use credentials admitted too often")
    sub.add_parser("status", help="revision, devices and journal")

    write_bundle = sub.add_parser("bundle", help="write a signed offline bundle for edge import")
    write_bundle.add_argument("--out", type=Path, required=True)
    write_bundle.add_argument("--since", type=int, default=0, help="revision the gate has")


def _policy(args: argparse.Namespace) -> EntryPolicy:
    if args.unlimited is not None:
        return EntryPolicy.unlimited(args.unlimited)
    return EntryPolicy.multi(args.uses) if args.uses != 1 else EntryPolicy.single()


def _run(db: CentralDB, args: argparse.Namespace) -> int:
    command, action = args.command, getattr(args, "action", None)
    if command == "serve":

        def ready(url: str) -> None:
            print(f"edge-central: listening on {url}", flush=True)

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(db, args.address, args.port, ready))
        return 0
    if command == "voucher":
        _voucher(db, args)
    elif command in ("key", "device", "event", "product"):
        _catalogue(db, args, (command, action))
    else:
        _workflow(db, args)
    return 0


def _catalogue(db: CentralDB, args: argparse.Namespace, what: tuple[str, str | None]) -> None:
    if what == ("key", "add"):
        print(f"key {db.keys.add()}")
    elif what == ("key", "retire"):
        db.keys.retire(args.key_id)
        print(f"key {args.key_id} retired")
    elif what == ("key", "list"):
        for key_id, public, retired in db.keys.public_keys():
            state = "retired" if retired else "active"
            print(f"{key_id}  {base64.b64encode(public).decode()}  {state}")
    elif what == ("device", "add"):
        db.devices.add(args.name, args.public)
        print(f"device {args.name} registered")
    elif what == ("device", "remove"):
        db.devices.remove(args.name)
        print(f"device {args.name} removed")
    elif what == ("device", "list"):
        for name, url, revision, seen in db.devices.registered():
            when = datetime.fromtimestamp(seen / 1000, UTC).isoformat() if seen else "never"
            print(f"{name}  revision {revision}  push {url or '-'}  last seen {when}")
    elif what == ("event", "add"):
        print(f"event {db.catalogue.add_event(args.name, args.id)}")
    elif what == ("event", "cancel"):
        db.workflows.cancel_event(args.event_id)
        print(f"event {args.event_id} cancelled")
    elif what == ("product", "add"):
        product = db.catalogue.add_product(
            args.name,
            kind=Kind[args.kind.upper()],
            policy=_policy(args),
            days=args.days,
            zones=args.zones,
            product_id=args.id,
        )
        print(f"product {product}")


def _workflow(db: CentralDB, args: argparse.Namespace) -> None:
    command = args.command
    if command == "sell":
        sale, sold = db.sales.sell(
            args.product,
            event_id=args.event,
            count=args.count,
            holder=args.holder,
            paid=not args.unpaid,
            valid_from=args.valid_from,
            season=args.season,
            plain_codes=args.plain,
        )
        print(f"sale {sale}")
        for item in sold:
            print(f"{item.credential_id} {item.code}")
    elif command == "revoke":
        print(f"revoked (credential {db.workflows.revoke_code(args.code) or 'unknown'})")
    elif command == "cancel-sale":
        print(f"cancelled credentials {', '.join(map(str, db.workflows.cancel_sale(args.sale)))}")
    elif command == "extend":
        print(f"valid until {db.workflows.extend(args.credential).isoformat()}")
    elif command == "replace":
        print(db.workflows.replace(args.credential))
    elif command == "paid":
        db.workflows.mark_paid(args.credential)
        print(f"credential {args.credential} paid")
    elif command == "renew":
        report = db.workflows.renew_season(
            args.season,
            args.new_season,
            batch_size=args.batch,
            valid_from=args.valid_from,
            dry_run=args.dry_run,
        )
        verb = "would renew" if report.dry_run else "renewed"
        counts = f"{len(report.renewed)} in {report.batches} batches"
        print(f"{verb} {counts}, skipped {len(report.skipped)}")
        for old, new in report.renewed:
            print(f"  {old} -> {new or '(dry run)'}")
        for cid, why in report.skipped:
            print(f"  {cid} skipped: {why}")
    elif command == "doubles":
        doubles = db.journals.double_entries()
        for d in doubles:
            when = datetime.fromtimestamp(d.at_ms / 1000, UTC).isoformat()
            print(
                f"credential {d.credential_id}: entry {d.entries} of {d.allowed} allowed"
                f" at {d.device}/{d.lane} {when} (seq {d.seq})"
            )
        print(f"{len(doubles)} double entries")
    elif command == "status":
        print(f"revision {db.log.head()}, journal {db.journals.count()} rows")
        for name, url, revision, _ in db.devices.registered():
            print(f"  {name}: revision {revision}, push {url or '-'}")
    elif command == "bundle":
        first, last = bundle.write(db, args.out, args.since)
        print(f"wrote {args.out}: revisions {first + 1}..{last}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `edge-central` console script."""
    args = _parser().parse_args(argv)
    level = logging.WARNING - 10 * args.verbose
    if args.command == "serve":
        level = min(level, logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        db = CentralDB(args.db)
    except Exception as err:  # noqa: BLE001 - any failure to open is reported the same way
        print(f"edge-central: cannot open {args.db}: {err}", file=sys.stderr)
        return EXIT_ERROR
    try:
        return _run(db, args)
    except (EdgeError, ValueError, sqlite3.Error) as err:
        print(f"edge-central: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        db.close()


if __name__ == "__main__":
    sys.exit(main())
