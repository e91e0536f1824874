"""The `edge-central` command: run the reference central system and administer it."""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import logging
import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge import __version__
from edge.console import Progress, positive, subcommand
from edge.core.codes import MAX_USES, EntryPolicy, Kind
from edge.core.errors import EdgeError
from edge.core.messages import counted
from sync.central import bundle
from sync.central.db import CentralDB
from sync.central.desk import Person
from sync.central.errors import CentralError
from sync.central.postgres import is_dsn
from sync.central.server import serve

EXIT_ERROR = 1
EXIT_USAGE = 2
DEFAULT_DB = Path("central.db")
MAX_SALE = 1_000_000  # credentials in one sale (one transaction)
LIST_IDS = 20  # cancel-sale lists the ids of a sale this small; larger ones print a summary
# `key add` sets a central up; every other command on a missing file is a typo, not a new central.
CREATES_DB = {("key", "add")}
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
        prog="edge-central",
        description="The reference central system for edge devices.",
        epilog="`edge-central COMMAND --help` shows a command's options and an example. "
        "`key add` creates the database; every other command needs it to exist.",
    )
    parser.add_argument("--version", action="version", version=f"edge-central {__version__}")
    parser.add_argument(
        "--db",
        metavar="FILE|DSN",
        help="the central's database: a SQLite file or a postgresql:// DSN; without --db,"
        f" $EDGE_CENTRAL_DB names it (default: {DEFAULT_DB})",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = subcommand(
        sub,
        "serve",
        "run the device API and push to registered edges",
        "edge-central --db /var/lib/edge-central/central.db serve --address 0.0.0.0",
    )
    run.add_argument(
        "--address", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    run.add_argument(
        "--port", type=int, default=8400, help="0 picks a free port (default: %(default)s)"
    )

    key = subcommand(sub, "key", "signing keys", "edge-central key add", "edge-central key list")
    key_actions = key.add_subparsers(dest="action", required=True, metavar="ACTION")
    subcommand(
        key_actions,
        "add",
        "a new signing key (the newest active key signs); creates the database",
        "edge-central --db central.db key add",
    )
    retire = subcommand(
        key_actions, "retire", "retire a key; its codes stop admitting", "edge-central key retire 1"
    )
    retire.add_argument("key_id", type=int, help="id from `key list`")
    subcommand(
        key_actions,
        "list",
        "the keys, with the public values for the gates' [[keys]]",
        "edge-central key list",
    )

    device = subcommand(sub, "device", "edge devices", "edge-central device list")
    device_actions = device.add_subparsers(dest="action", required=True, metavar="ACTION")
    add_device = subcommand(
        device_actions,
        "add",
        "register a device by its public key",
        "edge-central device add north-gate-1 'q1w2...='",
    )
    add_device.add_argument("name", help="the device's [device] name")
    add_device.add_argument("public", type=_public, help="base64, from the device's start log")
    add_device.add_argument(
        "--venue", help="the venue it serves: it gets only that venue's and group-wide changes"
    )
    move_device = subcommand(
        device_actions,
        "move",
        "move a device to another venue; it bootstraps again",
        "edge-central device move north-gate-1 --venue arena",
    )
    move_device.add_argument("name", help="a registered device")
    move_device.add_argument("--venue", help="its new venue (none given: every venue's changes)")
    remove_device = subcommand(
        device_actions,
        "remove",
        "refuse a device's requests, stop pushes",
        "edge-central device remove north-gate-1",
    )
    remove_device.add_argument("name", help="a registered device")
    list_devices = subcommand(
        device_actions, "list", "registered devices", "edge-central device list --venue arena"
    )
    list_devices.add_argument("--venue", help="only this venue's devices")

    event = subcommand(sub, "event", "events", "edge-central event add 'Summer gala'")
    event_actions = event.add_subparsers(dest="action", required=True, metavar="ACTION")
    add_event = subcommand(
        event_actions, "add", "add an event; prints its id", "edge-central event add 'Summer gala'"
    )
    add_event.add_argument("name", help="the event's name")
    add_event.add_argument("--id", type=int, help="event id (default: the next free)")
    add_event.add_argument(
        "--venue", help="the venue it takes place at (default: none, its tickets open every gate)"
    )
    list_events = subcommand(
        event_actions, "list", "events, with their venues", "edge-central event list --venue arena"
    )
    list_events.add_argument("--venue", help="only this venue's events")
    cancel = subcommand(
        event_actions,
        "cancel",
        "reject every ticket of the event at every gate",
        "edge-central event cancel 3",
    )
    cancel.add_argument("event_id", type=int, help="id from `event add`")

    product = subcommand(sub, "product", "products", "edge-central product add 'Day ticket'")
    product_actions = product.add_subparsers(dest="action", required=True, metavar="ACTION")
    add_product = subcommand(
        product_actions,
        "add",
        "add a product; prints its id",
        "edge-central product add 'Day ticket'",
        "edge-central product add 'Annual pass' --kind pass --unlimited 10 --days 365",
    )
    add_product.add_argument("name", help="the product's name")
    add_product.add_argument("--id", type=int, help="product id (default: the next free)")
    add_product.add_argument(
        "--kind",
        choices=[k.name.lower() for k in Kind],
        default="ticket",
        help="what is sold (default: %(default)s)",
    )
    policy = add_product.add_mutually_exclusive_group()
    policy.add_argument(
        "--uses",
        type=positive("--uses", MAX_USES, "for re-entry at will use --unlimited MINUTES"),
        default=1,
        help="entries per credential (default: %(default)s)",
    )
    policy.add_argument(
        "--unlimited",
        type=int,
        metavar="PASSBACK_MINUTES",
        help="re-entry at will; anti-passback window in minutes (0: none)",
    )
    add_product.add_argument("--days", type=int, help="validity of passes in days")
    add_product.add_argument("--zones", type=int, default=0, help="zone bitmask (default: 0)")

    _workflow_parsers(sub)
    _voucher_parsers(sub)
    return parser


def _voucher_parsers(sub: Any) -> None:
    voucher = subcommand(
        sub, "voucher", "annual-pass vouchers the till sells", "edge-central voucher sell 2 ..."
    )
    actions = voucher.add_subparsers(dest="action", required=True, metavar="ACTION")
    product = subcommand(
        actions,
        "product",
        "a voucher product, redeemed for a pass",
        "edge-central voucher product 'Annual pass voucher' --pass 1",
    )
    product.add_argument("name", help="the voucher product's name")
    product.add_argument(
        "--pass", dest="pass_product", type=int, required=True, help="the pass product it buys"
    )
    sell = subcommand(
        actions,
        "sell",
        "sell one voucher; prints its id and code",
        "edge-central voucher sell 2 --surname Lovelace --first-name Ada",
    )
    sell.add_argument("product", type=int, help="a voucher product id")
    sell.add_argument("--surname", required=True, help="the buyer's surname")
    sell.add_argument("--first-name", required=True, help="the buyer's first name")
    sell.add_argument("--address", default=NO_ADDRESS, help='the buyer\'s address (default "n.a.")')


def _voucher(db: CentralDB, args: argparse.Namespace) -> None:
    if args.action == "product":
        print(f"product {db.desk.add_voucher_product(args.name, args.pass_product)}")
    else:
        buyer = Person(args.surname, args.first_name, args.address)
        sold = db.desk.sell_voucher(args.product, buyer)
        print(f"{sold.credential_id} {sold.code}")


def _workflow_parsers(sub: Any) -> None:
    sell = subcommand(
        sub,
        "sell",
        "sell credentials; prints the sale, then id and code of each",
        "edge-central sell 1 --event 3 --count 2",
        "edge-central sell 2 --holder 'Ada Lovelace' --season 2026 --unpaid",
    )
    sell.add_argument("product", type=int, help="product id")
    sell.add_argument("--event", type=int, default=0, help="event id (default: 0, any)")
    sell.add_argument(
        "--count",
        type=positive("--count", MAX_SALE, "split larger sales"),
        default=1,
        help="credentials in the sale (default: %(default)s)",
    )
    sell.add_argument("--holder", help="holder's name, for passes")
    sell.add_argument("--unpaid", action="store_true", help="sold unpaid: no entry until `paid`")
    sell.add_argument("--season", type=int, help="season, for renewals")
    sell.add_argument(
        "--valid-from", type=_moment, metavar="WHEN", help="start of a pass (default: now)"
    )
    sell.add_argument(
        "--plain",
        action="append",
        default=[],
        metavar="CODE",
        help="legacy barcode, one per credential",
    )

    revoke = subcommand(sub, "revoke", "revoke one code", "edge-central revoke 'EDGE:...'")
    revoke.add_argument("code", help="the code as printed")
    cancel_sale = subcommand(
        sub,
        "cancel-sale",
        "cancel a sale: its codes stop admitting",
        "edge-central cancel-sale 12",
    )
    cancel_sale.add_argument("sale", type=int, help="sale id from `sell`")
    cancel_sale.add_argument(
        "--list", action="store_true", help="print every cancelled credential id, one a line"
    )
    extend = subcommand(
        sub, "extend", "extend a pass by its original duration", "edge-central extend 4711"
    )
    extend.add_argument("credential", type=int, help="credential id of the pass")
    replace = subcommand(
        sub, "replace", "invalidate a lost card and issue a new code", "edge-central replace 4711"
    )
    replace.add_argument("credential", type=int, help="credential id of the card")
    paid = subcommand(
        sub, "paid", "record a payment: the credential opens gates", "edge-central paid 4711"
    )
    paid.add_argument("credential", type=int, help="credential id")

    renew = subcommand(
        sub,
        "renew",
        "renew a season's credentials for the next season",
        "edge-central renew 2025 2026 --valid-from 2026-01-01 --dry-run",
    )
    renew.add_argument("season", type=int, help="the season to renew")
    renew.add_argument("new_season", type=int, help="the season renewed into")
    renew.add_argument(
        "--valid-from", type=_moment, required=True, metavar="WHEN", help="start of the new season"
    )
    renew.add_argument(
        "--batch",
        type=positive("--batch", 100_000),
        default=100,
        help="credentials per transaction (default: %(default)s)",
    )
    renew.add_argument("--dry-run", action="store_true", help="report, change nothing")

    subcommand(
        sub, "doubles", "report single-use credentials admitted too often", "edge-central doubles"
    )
    subcommand(sub, "status", "revision, devices and journal", "edge-central status")

    write_bundle = subcommand(
        sub,
        "bundle",
        "write a signed offline bundle for edge import",
        "edge-central bundle --out /media/usb/gates.bundle --since 1200",
    )
    write_bundle.add_argument(
        "--out", type=Path, required=True, metavar="FILE", help="bundle file to write"
    )
    write_bundle.add_argument(
        "--since", type=int, default=0, help="revision the gate has (default: 0, all)"
    )
    whose = write_bundle.add_mutually_exclusive_group()
    whose.add_argument(
        "--venue",
        help="only this venue's changes and the group's, for its gates (default: every"
        " venue's, for gates of no venue)",
    )
    whose.add_argument(
        "--device", help="for this device: its venue's changes and the group's, or every"
        " venue's if it has none",
    )  # fmt: skip


def _policy(args: argparse.Namespace) -> EntryPolicy:
    if args.unlimited is not None:
        return EntryPolicy.unlimited(args.unlimited)
    return EntryPolicy.multi(args.uses) if args.uses != 1 else EntryPolicy.single()


def _run(db: CentralDB, args: argparse.Namespace) -> int:
    command, action = args.command, getattr(args, "action", None)
    if command == "serve":

        def ready(url: str) -> None:
            print(f"edge-central: listening on {url}", flush=True)

        try:
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(serve(db, args.address, args.port, ready))
        except OSError as err:
            print(
                f"edge-central: cannot listen on {args.address} port {args.port}: "
                f"{err.strerror or err}",
                file=sys.stderr,
            )
            return EXIT_ERROR
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
        db.devices.add(args.name, args.public, args.venue)
        print(f"device {args.name} registered" + (f" at {args.venue}" if args.venue else ""))
    elif what == ("device", "move"):
        db.devices.move(args.name, args.venue)
        print(f"device {args.name} moved to {args.venue or 'every venue'}; it bootstraps again")
    elif what == ("device", "remove"):
        db.devices.remove(args.name)
        print(f"device {args.name} removed")
    elif what == ("device", "list"):
        venues = db.devices.venues()
        for name, url, revision, seen in db.devices.registered():
            if args.venue is not None and venues.get(name) != args.venue:
                continue
            when = datetime.fromtimestamp(seen / 1000, UTC).isoformat() if seen else "never"
            print(
                f"{name}  revision {revision}  push {url or '-'}  last seen {when}"
                f"  venue {venues.get(name) or '-'}"
            )
    elif what == ("event", "add"):
        print(f"event {db.catalogue.add_event(args.name, args.id, args.venue)}")
    elif what == ("event", "list"):
        for event_id, name, venue, cancelled in db.catalogue.events(args.venue):
            state = "  cancelled" if cancelled else ""
            print(f"{event_id}  {name}  venue {venue or '-'}{state}")
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
        progress = Progress("selling", args.count, sys.stderr)
        sale, sold = db.sales.sell(
            args.product,
            progress=progress.update,
            event_id=args.event,
            count=args.count,
            holder=args.holder,
            paid=not args.unpaid,
            valid_from=args.valid_from,
            season=args.season,
            plain_codes=args.plain,
        )
        progress.done()
        print(f"sale {sale}")
        for item in sold:
            print(f"{item.credential_id} {item.code}")
    elif command == "revoke":
        print(f"revoked (credential {db.workflows.revoke_code(args.code) or 'unknown'})")
    elif command == "cancel-sale":
        cids = db.workflows.cancel_sale(args.sale)
        if args.list:
            print("\n".join(map(str, cids)))
        elif len(cids) <= LIST_IDS:
            print(f"sale {args.sale}: cancelled {counted(len(cids), 'credential')}: "
                  f"{', '.join(map(str, cids))}")  # fmt: skip
        else:
            print(
                f"sale {args.sale}: cancelled {counted(len(cids), 'credential')} "
                f"(ids {min(cids)}..{max(cids)}; --list prints each)"
            )
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
        counts = f"{len(report.renewed)} in {counted(report.batches, 'batch', 'batches')}"
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
        print(counted(len(doubles), "double entry", "double entries"))
    elif command == "status":
        print(f"revision {db.log.head()}, journal {db.journals.count()} rows")
        for name, url, revision, _ in db.devices.registered():
            print(f"  {name}: revision {revision}, push {url or '-'}")
    elif command == "bundle":
        venue = args.venue
        if args.device is not None:
            if db.devices.public_key(args.device) is None:
                raise CentralError(f"no device {args.device!r}")
            venue = db.devices.venue(args.device)
        first, last = bundle.write(db, args.out, args.since, venue)
        whose = "every venue" if venue is None else f"venue {venue} and the group"
        print(f"wrote {args.out}: revisions {first + 1}..{last} of {whose}")


def _shown(target: str) -> str:
    """A --db value as it may be printed: a DSN without its password."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", target)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `edge-central` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    # From the environment after parsing: the help never shows a DSN (and its password).
    args.db = args.db or os.environ.get("EDGE_CENTRAL_DB") or str(DEFAULT_DB)
    creates = (args.command, getattr(args, "action", None)) in CREATES_DB
    if not creates and not is_dsn(args.db) and not Path(args.db).exists():
        print(
            f"edge-central: {args.db} does not exist; `edge-central --db {args.db} key add` "
            "sets up a new central there",
            file=sys.stderr,
        )
        return EXIT_ERROR
    level = logging.WARNING - 10 * args.verbose
    if args.command == "serve":
        level = min(level, logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        db = CentralDB(args.db)
    except Exception as err:  # noqa: BLE001 - any failure to open is reported the same way
        print(f"edge-central: cannot open {_shown(args.db)}: {err}", file=sys.stderr)
        return EXIT_ERROR
    errors: tuple[type[Exception], ...] = (EdgeError, ValueError, *db.connection.errors)
    try:
        return _run(db, args)
    except errors as err:
        print(f"edge-central: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        db.close()


if __name__ == "__main__":
    sys.exit(main())
