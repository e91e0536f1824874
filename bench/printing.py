"""Printing figures: a ticket's FGL and a card's raster from a template; queue throughput.

    ./dev bench printing              # default sizes, well under two minutes
    ./dev bench printing --jobs 200 --samples 50   # a quick look

Prints figures; asserts nothing (the machines are shared and noisy). The queue runs against
a file transport, so its figure is the queue's own cost: store writes (synchronous=FULL,
two commits per job plus one for the submission) and rendering, not a printer's speed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import tomllib
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivers.printers.boca import BocaPrinter
from drivers.printers.card import evolis_job
from drivers.printers.transports import FileTransport
from edge.core.codes import Claims, Kind, mint
from edge.counter.printqueue import JobRecord, PrintJob, PrintQueue
from edge.counter.templates import Template
from edge.store.database import Store

ROOT = Path(__file__).resolve().parent.parent
KEY = Ed25519PrivateKey.from_private_bytes(bytes(32))


def _code(n: int) -> str:
    """A real signed code of a day ticket (121 characters, as `edge-central sell` prints)."""
    return mint(Claims(1, 1_000_000 + n, Kind.TICKET, event_id=1, product_id=1), KEY)


def _ticket_fields(n: int) -> dict[str, str]:
    """A day ticket's fields; the holder differs per job, as names do (no cached bitmap)."""
    return {
        "event": "Städtisches Museum",
        "holder": f"Łucja Dvořák {n}",
        "date": "2026-11-23",
        "price": "EUR 12",
        "number": str(1_000_000 + n),
        "code": _code(n),
    }


def _templates() -> dict[str, Template]:
    path = ROOT / "config" / "counter.toml"
    document = tomllib.loads(path.read_text())
    return {
        table["name"]: Template.from_table(table, f"templates[{i}]", str(path))
        for i, table in enumerate(document["templates"])
    }


def _median_ms(action: object, samples: int) -> tuple[float, float]:
    times = []
    for i in range(samples):
        started = time.perf_counter()
        action(i)  # type: ignore[operator]
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1 if len(times) > 1 else 0]


async def _queue_throughput(template: Template, jobs: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as folder:
        store = await Store.open(Path(folder) / "edge.db")
        out = Path(folder) / "printer.fgl"
        done = asyncio.Event()
        finished: list[JobRecord] = []

        def on_finished(record: JobRecord) -> None:
            finished.append(record)
            if len(finished) == jobs:
                done.set()

        queue = PrintQueue(
            store,
            {"tickets": BocaPrinter("tickets", FileTransport(out))},
            {template.name: template},
            on_finished=on_finished,
        )
        started = time.perf_counter()
        for n in range(jobs):
            await queue.submit(PrintJob(f"bench-{n}", template.name, _ticket_fields(n)))
        submitted = time.perf_counter() - started
        task = asyncio.create_task(queue.run())
        await asyncio.wait_for(done.wait(), 600)
        total = time.perf_counter() - started
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()
        assert all(r.state.value == "done" for r in finished)
        return jobs / submitted, jobs / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=400, help="renders per figure")
    parser.add_argument("--jobs", type=int, default=2000, help="jobs through the queue")
    args = parser.parse_args()
    templates = _templates()
    ticket, card = templates["day-ticket"], templates["annual-pass"]

    tickets = [_ticket_fields(i) for i in range(args.samples)]

    def fgl(i: int) -> None:
        ticket.render(tickets[i])

    def card_png(i: int) -> bytes:
        fields = {"holder": f"Müller-Łęcka {i}", "number": str(4711 + i)}
        return card.render({**fields, "valid_until": "2027-11-22", "code": _code(i)})

    def raster(i: int) -> None:
        evolis_job(card_png(i))

    p50, p99 = _median_ms(fgl, args.samples)
    figure = "ticket FGL from a template (render + checks, graphic name)"
    print(f"{figure}: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    p50, p99 = _median_ms(card_png, max(10, args.samples // 4))
    print(f"card image (PNG) from a template: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    p50, p99 = _median_ms(raster, max(10, args.samples // 4))
    print(f"card raster for Evolis (template -> Db;k;2 stream): p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    submit_rate, total_rate = asyncio.run(_queue_throughput(ticket, args.jobs))
    print(f"queue: {args.jobs} ticket jobs submitted at {submit_rate:,.0f}/s")
    print(f"queue throughput to a file transport (submit to done): {total_rate:,.0f} jobs/s")


if __name__ == "__main__":
    main()
