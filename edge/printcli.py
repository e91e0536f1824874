"""`edge print ...`: preview a template, submit a job, ask the printers, print a test page."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from edge.console import DEFAULT_CONFIG, subcommand
from edge.core.errors import ConfigError, EdgeError, PrinterError

if TYPE_CHECKING:  # the printing code loads when a `print` action runs, not for `edge --help`
    from drivers.protocols import Printer
    from edge.config import Config
    from edge.counter.templates import Template

TEST_TICKET = {
    "name": "test-ticket",
    "kind": "ticket",
    "fields": ["printer", "when"],
    "max_chars": {"printer": 40, "when": 20},
    "items": [
        {"type": "box", "x": 4, "y": 4, "width": 1092, "height": 376},
        {"type": "text", "x": 30, "y": 30, "text": "EDGE TEST TICKET", "font": "F6"},
        {"type": "text", "x": 30, "y": 110, "text": "{printer}", "font": "F3"},
        {"type": "text", "x": 30, "y": 160, "text": "{when}", "font": "F9"},
        {"type": "qr", "x": 820, "y": 60, "data": "EDGE-TEST {printer}", "module": 6},
        {"type": "code128", "x": 30, "y": 230, "data": "EDGE-TEST", "height": 80},
    ],
}
TEST_CARD = {
    "name": "test-card",
    "kind": "card",
    "fields": ["printer", "when"],
    "max_chars": {"printer": 40, "when": 20},
    "items": [
        {"type": "box", "x": 10, "y": 10, "width": 996, "height": 628, "thickness": 4},
        {"type": "text", "x": 40, "y": 40, "text": "EDGE TEST CARD", "size": 64},
        {"type": "text", "x": 40, "y": 130, "text": "{printer}  {when}", "size": 32},
        {"type": "qr", "x": 40, "y": 220, "data": "EDGE-TEST {printer}", "module": 8},
        {"type": "code128", "x": 420, "y": 480, "data": "EDGE-TEST", "height": 100},
    ],
}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `print` command and its actions."""
    printing = subcommand(
        sub,
        "print",
        "preview templates, submit jobs, check printers",
        "edge print status",
        "edge print preview --template day-ticket --field name=Ada --out ticket.png",
    )
    actions = printing.add_subparsers(dest="print_command", required=True, metavar="ACTION")

    def job_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--config",
            type=Path,
            default=DEFAULT_CONFIG,
            metavar="FILE",
            help="the counter's configuration (default: %(default)s)",
        )
        parser.add_argument("--template", required=True, help="a [[templates]] name")
        parser.add_argument(
            "--field",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="a template field; repeat for each",
        )
        parser.add_argument(
            "--image",
            action="append",
            default=[],
            metavar="NAME=FILE",
            help="an image for the template (photo, logo); repeat for each",
        )

    preview = subcommand(
        actions,
        "preview",
        "render a template to a PNG; prints nothing",
        "edge print preview --template day-ticket --field name=Ada --out ticket.png",
    )
    job_arguments(preview)
    preview.add_argument(
        "--out", required=True, type=Path, metavar="FILE", help="PNG file to write"
    )
    submit = subcommand(
        actions,
        "submit",
        "queue a job; the running daemon prints it",
        "edge print submit --template day-ticket --field name=Ada --job-id till-1-0042",
    )
    job_arguments(submit)
    submit.add_argument(
        "--job-id", required=True, help="unique id: submitting it again queues nothing new"
    )
    submit.add_argument("--printer", help="default: the first printer for the template's kind")
    status = subcommand(
        actions,
        "status",
        "ask every printer; list queued and recent jobs (while the daemon runs it holds "
        "the printers: its metrics show their state)",
        "edge print status --config /etc/edge/counter.toml",
    )
    status.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help="the counter's configuration (default: %(default)s)",
    )
    test = subcommand(
        actions,
        "test",
        "print a test ticket or card now (not queued)",
        "edge print test --printer boca-1",
    )
    test.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help="the counter's configuration (default: %(default)s)",
    )
    test.add_argument("--printer", required=True, help="a [[printers]] name")


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise PrinterError(f"--{what} takes NAME=VALUE, not {value!r}")
        out[name] = text
    return out


def _template(config: Config, name: str) -> Template:
    templates = {t.name: t for t in config.templates}
    if name not in templates:
        raise ConfigError(
            f"no template {name!r}; templates: {', '.join(templates) or 'none'}",
            path=str(config.path),
        )
    return templates[name]


def _images(args: argparse.Namespace) -> dict[str, bytes]:
    images = {}
    for name, file in _pairs(args.image, "image").items():
        try:
            images[name] = Path(file).read_bytes()
        except OSError as err:
            raise PrinterError(f"cannot read image {file}: {err.strerror}") from err
    return images


def _printers(config: Config) -> dict[str, Printer]:
    from drivers.registry import PRINTERS  # noqa: PLC0415 - see TYPE_CHECKING

    return {p.name: PRINTERS[p.type].build(p.name, p.settings) for p in config.printers}


async def _submit(args: argparse.Namespace, config: Config) -> int:
    from edge.config import check_store_directory  # noqa: PLC0415 - see TYPE_CHECKING
    from edge.counter.printqueue import PrintJob, PrintQueue  # noqa: PLC0415
    from edge.store.database import Store  # noqa: PLC0415

    check_store_directory(config)
    store = await Store.open(config.store_path)
    try:
        queue = PrintQueue(
            store,
            _printers(config),
            {t.name: t for t in config.templates},
        )
        record = await queue.submit(
            PrintJob(
                args.job_id, args.template, _pairs(args.field, "field"), _images(args), args.printer
            )
        )
    finally:
        await store.close()
    note = " (submitted before: nothing new queued)" if record.duplicate else ""
    print(f"job {record.job_id}: {record.state.value} on {record.printer}{note}")
    return 0


async def _status(config: Config) -> int:
    from drivers.registry import PRINTERS  # noqa: PLC0415 - see TYPE_CHECKING
    from edge.config import check_store_directory  # noqa: PLC0415
    from edge.counter.printqueue import PrintQueue  # noqa: PLC0415
    from edge.store.database import Store  # noqa: PLC0415

    printers = PRINTERS
    name_width = max((len(spec.name) for spec in config.printers), default=0)
    for spec in config.printers:
        printer = printers[spec.type].build(spec.name, spec.settings)
        try:
            state = await printer.status()
        finally:
            await printer.close()
        print(f"printer {spec.name:{name_width}}  {spec.type:7} {state.value}")
    check_store_directory(config)
    store = await Store.open(config.store_path)
    try:
        queue = PrintQueue(store, {}, {})
        pending = queue.pending()
        for name in sorted({*pending, *(spec.name for spec in config.printers)}):
            print(f"queued for {name}: {pending.get(name, 0)}")
        records = queue.jobs(20)
        # Columns as wide as their longest value: job ids are the caller's and can be long.
        job_width = max((len(r.job_id) for r in records), default=0)
        printer_width = max((len(r.printer) for r in records), default=0)
        for record in records:
            when = record.submitted_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
            error = f"  {record.error}" if record.error else ""
            print(
                f"  {when}  {record.job_id:{job_width}}  {record.printer:{printer_width}}  "
                f"{record.state.value}{error}"
            )
    finally:
        await store.close()
    return 0


async def _test(args: argparse.Namespace, config: Config) -> int:
    from drivers.registry import PRINTERS  # noqa: PLC0415 - see TYPE_CHECKING
    from edge.counter.templates import Kind, Template  # noqa: PLC0415

    specs = {p.name: p for p in config.printers}
    if args.printer not in specs:
        raise ConfigError(
            f"no printer {args.printer!r}; printers: {', '.join(specs) or 'none'}",
            path=str(config.path),
        )
    spec = specs[args.printer]
    printer = PRINTERS[spec.type].build(spec.name, spec.settings)
    table = TEST_TICKET if printer.kind == Kind.TICKET.value else TEST_CARD
    template = Template.from_table(table, "test", str(config.path))
    when = datetime.now(UTC).astimezone().strftime("%Y-%m-%d %H:%M")
    document = template.render({"printer": spec.name, "when": when})
    try:
        await printer.print(document)
    finally:
        await printer.close()
    print(f"printer {spec.name}: test {template.kind.value} sent ({printer.state.value})")
    return 0


def run(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415 - `edge --version` needs no event loop

    from edge.config import load  # noqa: PLC0415 - see TYPE_CHECKING

    """Carry out an `edge print` action."""
    config = load(args.config)
    if args.print_command == "preview":
        template = _template(config, args.template)
        image = template.preview(_pairs(args.field, "field"), _images(args))
        try:
            image.save(args.out, "PNG")
        except OSError as err:
            raise EdgeError(f"{args.out}: cannot write: {err.strerror or err}") from err
        print(f"wrote {args.out} ({template.kind.value} {image.width}x{image.height})")
        return 0
    if args.print_command == "submit":
        return asyncio.run(_submit(args, config))
    if args.print_command == "status":
        return asyncio.run(_status(config))
    return asyncio.run(_test(args, config))
