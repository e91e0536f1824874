"""The daemon: open the store, build the devices and lanes the configuration names, run them."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import signal
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from drivers.protocols import Actuator, Printer, ScanSource
from drivers.registry import ACTUATORS, PRINTERS, SCANNERS
from edge.config import Config
from edge.core.facts import Direction
from edge.core.messages import counted
from edge.gate.gate import Gate
from edge.gate.lane import Lane, LaneResult
from edge.ops.health import Operations
from edge.store.database import Store
from edge.store.writer import SWITCH_INTERVAL_SECONDS

# A gate imports what its configuration uses: the counter's print queue, pass desk and web
# API, the sync client and pretix load in serve() when their section is there.
if TYPE_CHECKING:
    from edge.counter.deviceapi import DeviceAPI
    from edge.counter.printqueue import PrintQueue
    from sync.client.replicator import Replicator
    from sync.pretix.service import PretixService

_LOGGER = logging.getLogger(__name__)

# The scan never waits for bulk work in another thread (bench/hotpath.py measures both):
# - the interpreter hands the GIL to a waiting thread after SWITCH_INTERVAL_SECONDS (default
#   5 ms), so the loop's thread gets it back within half a millisecond of a parser's Python
#   step;
# - a full (generation 2) collection walks every live object and held the loop for 150-400
#   ms while bootstrap chunks were alive; the objects of the started daemon are frozen out
#   of collections, and full collections come after 1000 generation-1 ones instead of 10.
#   The daemon's garbage is mostly acyclic and freed by reference counting anyway.
GC_THRESHOLDS = (700, 10, 1000)


def _also(
    report: Callable[[LaneResult], None], then: Callable[[], None]
) -> Callable[[LaneResult], None]:
    def both(result: LaneResult) -> None:
        report(result)
        then()

    return both


class _Devices:
    """The configured scanners, actuators and printers; closed together, even half built."""

    def __init__(self) -> None:
        self.scanners: dict[str, ScanSource] = {}
        self.actuators: dict[str, Actuator] = {}
        self.printers: dict[str, Printer] = {}

    def build(self, config: Config) -> None:
        """Build every device the configuration names (each opens lazily, absent is fine)."""
        for spec in config.scanners:
            self.scanners[spec.name] = SCANNERS[spec.type].build(spec.name, spec.settings)
        for spec in config.actuators:
            self.actuators[spec.name] = ACTUATORS[spec.type].build(spec.name, spec.settings)
        for spec in config.printers:
            self.printers[spec.name] = PRINTERS[spec.type].build(spec.name, spec.settings)

    async def close(self) -> None:
        """Close every device built; a failure is logged and the others still close."""
        devices: list[ScanSource | Actuator | Printer] = [
            *self.scanners.values(),
            *self.actuators.values(),
            *self.printers.values(),
        ]
        for device in devices:
            try:
                await device.close()
            except Exception:
                _LOGGER.exception("%s: closing failed", device.name)


def _counter(
    config: Config,
    store: Store,
    queue: PrintQueue | None,
    replicator: Replicator | None,
    scanners: dict[str, ScanSource],
    *,
    pretix: PretixService | None,
) -> DeviceAPI | None:
    """The [counter] device API with its pass desk; its scanners are those no lane uses."""
    settings = config.counter
    if settings is None or queue is None:  # serve() builds a queue for every counter
        return None
    from drivers.scanners.pcsc import PcscReader  # noqa: PLC0415 - see the imports above
    from edge.counter import terms  # noqa: PLC0415
    from edge.counter.desk import Desk  # noqa: PLC0415
    from edge.counter.deviceapi import DeviceAPI, device_status, load_token  # noqa: PLC0415
    from sync.client.monitoring import page_status  # noqa: PLC0415

    token = load_token(config.file(settings.token_file))
    templates = {t.name: t for t in config.templates}
    nfc = scanners.get(settings.nfc_reader)
    desk = Desk(
        store,
        queue,
        card_template=templates.get(settings.card_template),
        ticket_template=templates.get(settings.ticket_template),
        central=replicator.request if replicator is not None else None,
        offline_pass_days=settings.offline_pass_days,
        zone=ZoneInfo(config.zone_name),
        language=config.device.language,
        terms=terms.load(config.file(settings.terms_file)) if settings.terms_file else (),
        nfc=nfc.read_uid if isinstance(nfc, PcscReader) else None,
    )

    def _sync_status() -> dict[str, object] | None:
        if replicator is not None:
            return page_status(replicator)
        if pretix is not None:
            from sync.pretix import monitoring as pretix_monitoring  # noqa: PLC0415

            return pretix_monitoring.page_status(pretix.state, store)
        return None

    # The desk's NFC reader is read when a card is issued, never fed to the pages' scans.
    fed = {name for lane in config.lanes for name in (*lane.entry, *lane.exit)}
    fed |= {settings.nfc_reader} if settings.nfc_reader else set()
    return DeviceAPI(
        settings,
        token,
        queue=queue,
        desk=desk,
        scanners={name: s for name, s in scanners.items() if name not in fed},
        language=config.device.language,
        zone=config.zone_name,
        token_path=str(config.file(settings.token_file).resolve()),
        status=lambda: device_status(config.device.name, store, _sync_status(), queue),
    )


async def serve(  # noqa: PLR0915 - one linear start-up sequence
    config: Config,
    *,
    stop: asyncio.Event | None = None,
    on_result: Callable[[LaneResult], None] | None = None,
) -> None:
    """Run every lane until `stop` is set, SIGTERM/SIGINT arrives, or all scanners end."""
    started = time.monotonic()
    stop = stop or asyncio.Event()
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    gc.set_threshold(*GC_THRESHOLDS)
    store = await Store.open(config.store_path)
    operations = Operations(config.metrics, store, device=config.device.name)
    devices = _Devices()
    loop = asyncio.get_running_loop()
    try:
        operations.prepare(config.store_path)
        if config.keys:
            await store.put_keys((k.id, k.public_bytes, k.retired) for k in config.keys)
        pretix = None
        if config.pretix is not None:
            from sync.pretix import monitoring as pretix_monitoring  # noqa: PLC0415
            from sync.pretix.service import PretixService, check_rules  # noqa: PLC0415 - see above

            token_file = config.file(config.pretix.token_file)
            pretix = PretixService.from_settings(
                config.pretix,
                store,
                token_file=token_file,
                ignore_unpaid_lanes=frozenset(
                    lane.name for lane in config.lanes if lane.ignore_unpaid
                ),
            )
            service = pretix
            operations.health["pretix"] = lambda: pretix_monitoring.health(service.state, store)
            check_rules(
                pretix.resolver, [lane.name for lane in config.lanes], store=str(config.store_path)
            )
        gate = Gate(store, resolver=pretix.resolver if pretix else None)
        replicator = None
        report = operations.reporter(on_result)
        if config.sync is not None and operations.identity is not None:
            from sync.client.monitoring import health, register_metrics  # noqa: PLC0415
            from sync.client.replicator import Replicator  # noqa: PLC0415

            sync = config.sync
            if sync.ca_file:  # relative to the configuration's directory, like every file
                sync = dataclasses.replace(sync, ca_file=str(config.file(sync.ca_file)))
            replicator = Replicator(
                sync,
                store,
                device=config.device.name,
                identity=operations.identity.private,
            )
            register_metrics(operations.registry, replicator)
            operations.health["sync"] = lambda: health(replicator)
            report = _also(report, replicator.journal_changed)
        devices.build(config)
        scanners, actuators, printers = devices.scanners, devices.actuators, devices.printers
        queue = None
        if printers or config.counter is not None:
            from edge.counter.printqueue import PrintQueue  # noqa: PLC0415 - see the imports

            queue = PrintQueue(store, printers, {t.name: t for t in config.templates})
        counter = _counter(config, store, queue, replicator, scanners, pretix=pretix)
        lanes = [
            Lane(
                rules=config.rules(lane),
                gate=gate,
                actuator=actuators[lane.actuator],
                sources=[(scanners[n], Direction.ENTRY) for n in lane.entry]
                + [(scanners[n], Direction.EXIT) for n in lane.exit],
                language=config.device.language,
                repeat_window=config.device.repeat_window_ms / 1000,
                on_result=report,
            )
            for lane in config.lanes
        ]
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        gc.collect()
        gc.freeze()  # what start-up built lives as long as the daemon: no collection walks it
        _LOGGER.info(
            "%s: %s ready in %.0f ms",
            config.device.name,
            counted(len(lanes), "lane"),
            (time.monotonic() - started) * 1000,
        )
        async with asyncio.TaskGroup() as group:
            running = [group.create_task(lane.run()) for lane in lanes]
            stopper = group.create_task(stop.wait())
            printing = [group.create_task(queue.run())] if queue and printers else []
            if queue is not None and printers:
                operations.watch_printing(queue)
            services = await operations.start(lanes, group)
            if pretix is not None:
                services.append(group.create_task(pretix.run()))
            if replicator is not None:
                services.append(group.create_task(replicator.run()))
            if counter is not None:
                services.append(group.create_task(counter.run()))
                if counter.desk is not None:
                    services.append(group.create_task(counter.desk.run()))
            waiting: list[asyncio.Future[Any]] = [stopper]
            if running:  # a counter has no lanes: it runs until stopped
                waiting.append(group.create_task(asyncio.wait(running)))  # all lanes ended
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            operations.stopping()
            for task in [*running, *printing, *services, *waiting]:
                task.cancel()
        _LOGGER.info("%s: stopped", config.device.name)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await devices.close()
        await store.close()
        operations.close()
