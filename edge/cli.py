"""The `edge` command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from edge import __version__
from edge.console import DEFAULT_CONFIG, positive, subcommand
from edge.core.errors import CodeError, ConfigError, EdgeError, StoreRefusedError

if TYPE_CHECKING:
    from edge.config import Config
    from edge.core.codes import Claims

# Everything else is imported by the command that needs it: `edge --version` loads neither the
# code tables nor the messages, and `edge issue` no store, no configuration and no daemon.

T = TypeVar("T")

EXIT_REJECTED = 1  # `edge check`: the code would not be admitted
EXIT_ERROR = 1
EXIT_USAGE = 2  # a malformed command line (argparse's code too), or one naming what is not there


class UsageError(EdgeError):
    """The command line names something the configuration does not have."""


def _moment(value: str) -> datetime:
    """A date or ISO datetime; naive values are UTC."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date or time: {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _zones(value: str) -> int:
    mask = 0
    for part in value.split(","):
        try:
            zone = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"zones are numbers 0..31: {part!r}") from None
        if not 0 <= zone <= 31:
            raise argparse.ArgumentTypeError(f"zone {zone} is outside 0..31")
        mask |= 1 << zone
    return mask


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help="the device's configuration (default: %(default)s)",
    )


def _parser() -> argparse.ArgumentParser:
    from edge import printcli  # noqa: PLC0415 - see the imports above
    from edge.core.codes import MAX_USES, Kind  # noqa: PLC0415
    from edge.core.messages import LANGUAGES  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="edge",
        description="Gate and counter service for venues. "
        f"Every command reads {DEFAULT_CONFIG} unless --config names another file.",
        epilog="`edge COMMAND --help` shows a command's options and an example.",
    )
    parser.add_argument("--version", action="version", version=f"edge {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = subcommand(sub, "run", "run the daemon", "edge run --config /etc/edge/edge.toml")
    _config_option(run)

    check = subcommand(
        sub,
        "check",
        "decide about a code without recording an entry",
        "edge check 'EDGE:...' --lane 'Lane A'    # exit status 0: admit, 1: reject",
    )
    check.add_argument("code", help="the code as the scanner reads it")
    _config_option(check)
    check.add_argument("--lane", help="lane whose rules apply (default: the first)")
    check.add_argument("--exit", action="store_true", help="check the exit direction")
    check.add_argument("--lang", choices=LANGUAGES, help="display language (default: [device])")

    keygen = subcommand(
        sub,
        "keygen",
        "create a signing key file",
        "edge keygen --out signing.key --key-id 1    # prints the gates' [[keys]] entry",
    )
    keygen.add_argument(
        "--out", required=True, type=Path, metavar="FILE", help="new key file (never overwritten)"
    )
    keygen.add_argument(
        "--key-id", type=int, default=1, help="id gates know the key by (default: %(default)s)"
    )

    issue = subcommand(
        sub,
        "issue",
        "mint a signed code with a local key",
        "edge issue --key signing.key --credential 77 --event 5",
        "edge issue --key signing.key --credential 8 --kind pass --unlimited 10 --days 365",
    )
    issue.add_argument(
        "--key", required=True, type=Path, metavar="FILE", help="key file from `edge keygen`"
    )
    issue.add_argument(
        "--kind",
        choices=[k.name.lower() for k in Kind],
        default="ticket",
        help="what the code is (default: %(default)s)",
    )
    issue.add_argument("--credential", required=True, type=int, help="credential id")
    issue.add_argument("--event", type=int, default=0, help="event id (default: 0, any)")
    issue.add_argument("--product", type=int, default=0, help="product id (default: 0)")
    issue.add_argument(
        "--reissue", type=int, default=0, help="replacement number of a card (default: 0)"
    )
    policy = issue.add_mutually_exclusive_group()
    policy.add_argument(
        "--uses",
        type=positive("--uses", MAX_USES, "for re-entry at will use --unlimited MINUTES"),
        help="number of entries (default: 1)",
    )
    policy.add_argument(
        "--unlimited",
        type=int,
        metavar="PASSBACK_MINUTES",
        help="re-entry at will; anti-passback window in minutes (0: none)",
    )
    issue.add_argument(
        "--valid-from", type=_moment, metavar="WHEN", help="ISO date or time (naive: UTC)"
    )
    issue.add_argument(
        "--valid-until", type=_moment, metavar="WHEN", help="ISO date or time (naive: UTC)"
    )
    issue.add_argument("--days", type=int, help="validity length from --valid-from (or now)")
    issue.add_argument("--zones", type=_zones, default=0, help="comma-separated zones 0..31")

    status = subcommand(sub, "status", "show the store and the last decisions", "edge status")
    _config_option(status)
    status.add_argument(
        "--last", type=int, default=10, help="decisions to list (default: %(default)s)"
    )

    init = subcommand(
        sub,
        "init",
        "start an empty store where none is, or replace an unusable store file",
        "edge init --config /etc/edge/edge.toml",
    )
    _config_option(init)

    bundle = subcommand(
        sub,
        "import",
        "apply an offline bundle from the central system",
        "edge import /media/usb/gates.bundle",
    )
    bundle.add_argument("file", type=Path, help="bundle file from `edge-central bundle`")
    _config_option(bundle)

    config = subcommand(sub, "config", "configuration tools", "edge config check")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    config_check = subcommand(
        config_sub,
        "check",
        "validate a configuration file and the paths it names",
        "edge config check /etc/edge/edge.toml",
    )
    config_check.add_argument(
        "file",
        type=Path,
        nargs="?",
        default=DEFAULT_CONFIG,
        help="configuration file (default: %(default)s)",
    )

    printcli.add_parser(sub)

    demo = subcommand(
        sub, "demo", "a gate with sample tickets; type or paste codes", "edge demo --lang de"
    )
    demo.add_argument(
        "--lang", choices=LANGUAGES, default="en", help="display language (default: %(default)s)"
    )
    demo.add_argument(
        "--color",
        choices=["auto", "always", "never"],
        default="auto",
        help="colour the verdicts (default: auto, when a terminal)",
    )
    return parser


def _claims(args: argparse.Namespace, key_id: int) -> Claims:
    from edge.core.codes import Claims, EntryPolicy, Kind, Validity  # noqa: PLC0415

    if args.unlimited is not None:
        policy = EntryPolicy.unlimited(args.unlimited)
    elif args.uses is not None and args.uses != 1:
        policy = EntryPolicy.multi(args.uses)
    else:
        policy = EntryPolicy.single()
    validity = None
    if args.valid_from or args.valid_until or args.days:
        start = args.valid_from or datetime.now(UTC).replace(microsecond=0)
        end = args.valid_until or (start + timedelta(days=args.days or 1) - timedelta(seconds=1))
        validity = Validity(start, end)
    return Claims(
        key_id=key_id,
        credential_id=args.credential,
        kind=Kind[args.kind.upper()],
        event_id=args.event,
        product_id=args.product,
        policy=policy,
        validity=validity,
        zones=args.zones,
        reissue=args.reissue,
    )


def _code_argument(code: str) -> bytes | None:
    """The code argument's bytes if it is UTF-8 text; else None, after saying what is wrong."""
    raw = os.fsencode(code)  # argv bytes that are not UTF-8 arrive as lone surrogates
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        print(
            f"edge: error: the code argument is not UTF-8 text (byte 0x{raw[err.start]:02x} at "
            f"position {err.start}); give the code as it is printed, or scan it at a lane",
            file=sys.stderr,
        )
        return None
    return raw


async def _check(args: argparse.Namespace) -> int:
    from edge.config import check_store_directory, load  # noqa: PLC0415 - see the imports above
    from edge.core.facts import Direction  # noqa: PLC0415 - see the imports above
    from edge.core.messages import text  # noqa: PLC0415
    from edge.gate.gate import Gate  # noqa: PLC0415
    from edge.store.database import Store  # noqa: PLC0415
    from sync.pretix.resolver import PretixResolver  # noqa: PLC0415

    code = _code_argument(args.code)
    if code is None:
        return EXIT_USAGE
    config = load(args.config)
    lanes = {lane.name: lane for lane in config.lanes}
    if not lanes:
        raise ConfigError(
            "defines no [[lanes]]; `check` applies a lane's rules", path=str(args.config)
        )
    if args.lane is not None and args.lane not in lanes:
        raise UsageError(f"no lane named {args.lane!r}; lanes: {', '.join(lanes)}")
    lane = lanes[args.lane] if args.lane else config.lanes[0]
    check_store_directory(config)
    store = await Store.open(config.store_path)
    try:
        if config.keys:
            await store.put_keys((k.id, k.public_bytes, k.retired) for k in config.keys)
        direction = Direction.EXIT if args.exit else Direction.ENTRY
        resolver = None
        if config.pretix is not None:
            unsynced = config.pretix.admit_unsynced_signed
            resolver = PretixResolver(store, admit_unsynced_signed=unsynced)
        gate = Gate(store, resolver=resolver)
        check = gate.check(code, config.rules(lane), direction)
    finally:
        await store.close()
    decision = check.decision
    verdict = "ADMIT" if decision.admitted else "REJECT"
    print(
        f"{verdict}  {decision.reason.value}  {text(decision, args.lang or config.device.language)}"
    )
    if decision.detail:
        print(f"  why: {decision.detail}")
    print(f"  code: {check.hint}  lane: {lane.name}  direction: {direction.value}")
    if decision.credential_id is not None:
        print(f"  credential: {decision.credential_id}")
    return 0 if decision.admitted else EXIT_REJECTED


async def _status(args: argparse.Namespace) -> int:
    from edge.config import check_store_directory, load  # noqa: PLC0415 - see the imports above
    from edge.store.database import Store  # noqa: PLC0415

    config = load(args.config)
    check_store_directory(config)
    store = await Store.open(config.store_path)
    try:
        stats = store.stats()
        recent = store.recent(args.last)
        revision = store.cursor("sync.revision")
        central = store.cursor("sync.central")  # the one last in use (sync.client.centrals)
        pretix_lines: list[str] = []
        if config.pretix is not None:
            from sync.pretix.monitoring import status_lines  # noqa: PLC0415

            pretix_lines = status_lines(store)
        jumps = store.clock_jumps(5)
    finally:
        await store.close()
    print(f"device {config.device.name}  store {config.store_path}")
    for name, value in stats.__dataclass_fields__.items():
        del value
        print(f"  {name.replace('_', ' '):22} {getattr(stats, name):>12,}")
    if config.sync is not None:
        centrals = config.sync.centrals
        in_use = central if central in centrals else centrals[0]
        others = [url for url in centrals if url != in_use]
        print(
            f"  {'sync revision':22} {revision or 'not bootstrapped':>12}  ({in_use}"
            + (f"; also {', '.join(others)}" if others else "")
            + ")"
        )
    for line in pretix_lines:
        print(line)
    for at, jump_ms, after_seq in jumps:
        when = at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        print(f"  clock stepped {jump_ms / 1000:+.0f} s at {when} (after decision #{after_seq})")
    print(f"last {len(recent)} decisions:")
    for row in recent:
        entry = row.entry
        when = entry.at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        print(
            f"  #{row.seq:<6} {when}  {entry.lane:12} {entry.direction.value:5} "
            f"{entry.reason.value:16} {entry.code_hint}"
        )
    return 0


def _yielding(work: Coroutine[Any, Any, T]) -> T:
    """Run `work` on this thread, in an event loop of its own, at the background priority."""
    import asyncio  # noqa: PLC0415 - see the imports above

    from edge.store.writer import yield_cpu  # noqa: PLC0415

    yield_cpu()
    return asyncio.run(work)


async def _import(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415 - see the imports above

    from edge.config import check_store_directory, load  # noqa: PLC0415 - see the imports above
    from edge.store.database import Store  # noqa: PLC0415
    from sync import protocol  # noqa: PLC0415
    from sync.client.bundle import import_bundle  # noqa: PLC0415

    config = load(args.config)
    try:
        with args.file.open("rb") as file:
            data = file.read(protocol.MAX_ENVELOPE_BYTES + 1)
    except OSError as err:
        raise EdgeError(f"{args.file}: cannot read: {err.strerror}") from err
    check_store_directory(config)
    store = await Store.open(config.store_path)
    try:
        if config.keys:
            await store.put_keys((k.id, k.public_bytes, k.retired) for k in config.keys)
        # A running daemon's lanes come first: verifying, decoding and sorting the bundle run
        # in a thread that yields the CPU. The store's writer thread, started above, keeps
        # this process's priority: it holds the write lock that a lane's journal may wait for.
        outcome, first, last = await asyncio.to_thread(
            _yielding, import_bundle(store, data, device=config.device.name)
        )
    finally:
        await store.close()
    if outcome == "stale" and last < first:
        print(
            f"{args.file}: older than this gate's data: the bundle ends at revision {last}, the"
            f" store is at {first}; nothing applied (the revision never goes backwards)"
        )
    elif outcome == "stale":
        print(f"{args.file}: nothing new, the store is at revision {first} already")
    else:
        print(f"{args.file}: applied revisions {first + 1}..{last}")
    return 0


async def _check_pretix_rules(config: Config) -> None:
    """ConfigError if the synced check-in list has rules this gate cannot evaluate."""
    from edge.store.database import Store  # noqa: PLC0415 - see the imports above
    from sync.pretix.resolver import PretixResolver  # noqa: PLC0415
    from sync.pretix.service import check_rules  # noqa: PLC0415

    store = await Store.open(config.store_path)
    try:
        lanes = [lane.name for lane in config.lanes]
        check_rules(PretixResolver(store), lanes, store=str(config.store_path))
    finally:
        await store.close()


def _init(args: argparse.Namespace) -> int:
    from edge.config import check_store_directory, load  # noqa: PLC0415 - see the imports above
    from edge.store.base import file_version, initialise, journal_path  # noqa: PLC0415

    config = load(args.config)
    check_store_directory(config)
    journal = journal_path(str(config.store_path))
    journal_stays = bool(file_version(journal))
    kept = initialise(config.store_path)
    if kept is not None:
        print(f"{config.store_path}: the unusable file was moved to {kept}")
    if journal_stays:
        print(
            f"{config.store_path}: an empty store beside its journal ({journal}): the entries"
            " recorded on this device still count; the facts come with the next sync"
        )
    else:
        print(f"{config.store_path}: an empty store; every ticket counts as unused on this device")
    return 0


def _run(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415 - `edge --version` needs no event loop

    from edge import keys  # noqa: PLC0415 - see the imports above
    from edge.config import check_paths, load  # noqa: PLC0415

    if args.command == "run":
        from edge import daemon  # noqa: PLC0415

        config = load(args.config)
        check_paths(config)
        asyncio.run(daemon.serve(config))
        return 0
    if args.command == "demo":
        from edge import demo  # noqa: PLC0415

        return asyncio.run(demo.main(language=args.lang, color=args.color))
    if args.command == "check":
        return asyncio.run(_check(args))
    if args.command == "status":
        return asyncio.run(_status(args))
    if args.command == "import":
        return asyncio.run(_import(args))
    if args.command == "init":
        return _init(args)
    if args.command == "config":
        from edge.core.messages import counted  # noqa: PLC0415 - see the imports above

        config = load(args.file)
        if config.pretix is not None and config.store_path.exists():
            asyncio.run(_check_pretix_rules(config))
        check_paths(config)
        parts = (
            counted(len(config.lanes), "lane"),
            counted(len(config.scanners), "scanner"),
            counted(len(config.actuators), "actuator"),
            counted(len(config.printers), "printer"),
            counted(len(config.keys), "key"),
        )
        print(f"{args.file}: valid ({', '.join(parts)})")
        return 0
    if args.command == "print":
        from edge import printcli  # noqa: PLC0415

        return printcli.run(args)
    if args.command == "keygen":
        key = keys.generate(args.key_id)
        keys.write(args.out, key)
        print(f"wrote {args.out} (keep it secret); add this to the gates' configuration:")
        print(f'[[keys]]\nid = {key.key_id}\npublic = "{key.public_b64}"')
        return 0
    if args.command == "issue":
        from edge.core.codes import mint, scan_text  # noqa: PLC0415

        key = keys.read(args.key)
        code = mint(_claims(args, key.key_id), key.private)
        scan_text(code.encode("ascii"))  # the minted text must scan back
        print(code)
        return 0
    raise AssertionError(args.command)  # argparse only accepts the commands above


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `edge` console script."""
    if (sys.argv[1:] if argv is None else list(argv)) == ["--version"]:
        # Answered before the parser exists: building it loads the code and message tables.
        print(f"edge {__version__}")
        return 0
    parser = _parser()
    args = parser.parse_args(argv)  # `--version` and `--help` exit here
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    import logging  # noqa: PLC0415 - see the imports above

    from edge.ops import logs  # noqa: PLC0415

    level = logging.WARNING - 10 * args.verbose
    if args.command == "run":
        level = min(level, logging.INFO)
    logs.setup(level)
    try:
        return _run(args)
    except ConfigError as err:
        from edge.config import EXIT_CONFIG  # noqa: PLC0415 - see the imports above

        print(f"edge: configuration error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except StoreRefusedError as err:
        from edge.config import EXIT_CONFIG  # noqa: PLC0415

        # Restarting cannot help: an operator restores the file or runs `edge init`.
        print(f"edge: error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except UsageError as err:
        print(f"edge: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (CodeError, EdgeError) as err:
        print(f"edge: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
