"""What a device runs besides its lanes: systemd readiness and watchdog, metrics, identity.

The daemon creates one Operations, reports every LaneResult through it, calls `start` once
the lanes run (it binds the metrics endpoint, then sends READY=1) and `stopping` on shutdown.
Other services (sync, printers) register their metrics on `registry`.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from drivers.protocols import DeviceState
from edge import __version__
from edge.core.messages import counted
from edge.gate.lane import Lane, LaneResult
from edge.ops import identity
from edge.ops.identity import DeviceIdentity
from edge.ops.metrics import CONTENT_TYPE, Registry
from edge.ops.notify import Notifier
from edge.ops.settings import MetricsConfig
from edge.store.sync import SyncStore

if TYPE_CHECKING:  # aiohttp loads with the metrics endpoint, the print queue on a counter
    from aiohttp import web

    from edge.counter.printqueue import PrintQueue

_LOGGER = logging.getLogger(__name__)

MAX_BODY = 1024  # /health and /metrics take no body

# Test-only hook (docs/operations.md): with this variable naming a FIFO, SIGUSR2 blocks the
# event loop until the FIFO's writer closes it, which shows that a stuck loop stops the
# watchdog pings. The unit file never sets it.
STALL_FIFO_ENV = "EDGE_DEBUG_STALL_FIFO"

JOURNAL_RECOVERY_SECONDS = 300.0  # /health says "degraded" this long after a journal failure
DISK_LOW_BYTES = 64 << 20  # free space beside the store below which /health says "degraded"


class DecisionMetrics:
    """Counters and the latency histogram fed by the lanes' on_result callback."""

    def __init__(self, registry: Registry) -> None:
        self.decisions = registry.counter(
            "edge_decisions_total",
            "Decisions by lane, direction and reason (repeat reads not included).",
            ("lane", "direction", "reason"),
        )
        self.repeats = registry.counter(
            "edge_repeat_reads_total", "Scanner re-reads within the repeat window.", ("lane",)
        )
        self.journal_failures = registry.counter(
            "edge_journal_failures_total",
            "Scans rejected because the decision could not be journaled.",
            ("lane",),
        )
        self.actuator_failures = registry.counter(
            "edge_actuator_failures_total", "Outcomes the actuator failed to carry out.", ("lane",)
        )
        self.latency = registry.histogram(
            "edge_decision_seconds", "Time to decide and journal one scan.", ("lane",)
        )
        self.journal_failing = False  # the last journal write failed: scans are refused
        self.journal_failed_at: float | None = None  # unix time of the last failure
        self.journal_error = ""

    def record(self, result: LaneResult) -> None:
        """Count one lane result."""
        if result.repeat:
            self.repeats.inc(result.lane)
            return
        if result.check is None:
            self.journal_failures.inc(result.lane)
            self.journal_failing = True
            self.journal_failed_at = time.time()
            self.journal_error = result.error
        else:
            self.journal_failing = False
            decision = result.check.decision
            self.decisions.inc(result.lane, decision.direction.value, decision.reason.value)
            self.latency.observe(result.seconds, result.lane)
        if not result.actuated:
            self.actuator_failures.inc(result.lane)


def _lane_metrics(registry: Registry, lanes: Sequence[Lane], store: SyncStore) -> None:
    registry.gauge(
        "edge_lane_queue_length",
        "Scans waiting for their lane.",
        ("lane",),
        collect=lambda: {(lane.name,): lane.queued for lane in lanes},
    )
    registry.counter(
        "edge_lane_dropped_scans_total",
        "Scans dropped because the lane's queue was full.",
        ("lane",),
        collect=lambda: {(lane.name,): lane.dropped for lane in lanes},
    )
    registry.gauge(
        "edge_device_up",
        "1 while a scanner or actuator is open and working, 0 while absent or failing.",
        ("device", "kind"),
        collect=lambda: _device_states(lanes),
    )
    registry.counter(
        "edge_device_disconnects_total",
        "Times a scanner went away while it was being read.",
        ("device",),
        collect=lambda: {
            (device.name,): float(getattr(device, "unplugged", 0))
            for lane in lanes
            for kind, device in lane.devices
            if kind == "scanner" and hasattr(device, "unplugged")
        },
    )
    registry.gauge(
        "edge_journal_unsent",
        "Journal entries not yet uploaded to the central system.",
        collect=lambda: {(): store.seen_backlog()},
    )


def _device_states(lanes: Sequence[Lane]) -> dict[tuple[str, ...], float]:
    """Hardware drivers expose a DeviceState; demo devices (console, lines) have none."""
    states: dict[tuple[str, ...], float] = {}
    for lane in lanes:
        for kind, device in lane.devices:
            state = getattr(device, "state", None)
            if isinstance(state, DeviceState):
                states[(device.name, kind)] = float(state is DeviceState.READY)
    return states


def _stall_hook(loop: asyncio.AbstractEventLoop, fifo: str) -> None:
    def stall() -> None:
        _LOGGER.warning("debug: event loop stalled on %s (test hook)", fifo)
        # Blocking on purpose: this is the stuck loop the watchdog must notice.
        with open(fifo, "rb") as pipe:  # noqa: PTH123
            while pipe.read(1024):
                pass
        _LOGGER.warning("debug: event loop released")

    loop.add_signal_handler(signal.SIGUSR2, stall)


class Operations:
    """Readiness, watchdog, metrics endpoint and device identity of one daemon."""

    def __init__(
        self,
        settings: MetricsConfig,
        store: SyncStore,
        *,
        device: str,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._settings = settings
        self._device = device
        self._store = store
        self._environ = os.environ if environ is None else environ
        self._started = time.time()
        self.registry = Registry()
        self.notifier = Notifier(self._environ)
        self.decisions = DecisionMetrics(self.registry)
        self.identity: DeviceIdentity | None = None
        self.metrics_url: str | None = None
        self._store_path: Path | None = None
        # Other services add a section to /health: name -> a function returning its state.
        self.health: dict[str, Callable[[], Mapping[str, object]]] = {}

    def prepare(self, store_path: Path) -> None:
        """Load the device key kept beside the store at `store_path`, creating it on first start."""
        self._store_path = store_path
        path = identity.path_for(store_path)
        self.identity = identity.ensure(path)
        _LOGGER.info(
            "%s: device key %s (public %s)",
            self._device,
            path,
            self.identity.public_b64,
        )

    def watch_printing(self, queue: PrintQueue) -> None:
        """Export printer states, queue lengths and finished jobs."""
        self.registry.gauge(
            "edge_printer_state",
            "1 for the state each printer is in (ready, paper-out, jam, offline, ...).",
            ("printer", "state"),
            collect=lambda: {
                (name, printer.state.value): 1 for name, printer in queue.printers.items()
            },
        )
        self.registry.gauge(
            "edge_printer_paused",
            "1 while a printer's queue waits for staff (paper out, jam).",
            ("printer",),
            collect=lambda: {(name,): int(name in queue.paused) for name in queue.printers},
        )
        self.registry.gauge(
            "edge_print_queue_length",
            "Print jobs queued or printing.",
            ("printer",),
            collect=lambda: {(name,): count for name, count in queue.pending().items()},
        )
        self.registry.counter(
            "edge_print_jobs_total",
            "Print jobs finished since start, by outcome (done, failed).",
            ("printer", "outcome"),
            collect=lambda: {key: float(count) for key, count in queue.finished.items()},
        )

    def reporter(self, also: Callable[[LaneResult], None] | None) -> Callable[[LaneResult], None]:
        """The on_result callback for lanes: metrics first, then `also`."""
        record = self.decisions.record
        if also is None:
            return record

        def report(result: LaneResult) -> None:
            record(result)
            also(result)

        return report

    async def start(
        self, lanes: Sequence[Lane], group: asyncio.TaskGroup
    ) -> list[asyncio.Task[None]]:
        """Serve metrics, send READY=1, feed the watchdog; the tasks to cancel on shutdown."""
        device = self._device
        _lane_metrics(self.registry, lanes, self._store)
        self.registry.gauge(
            "edge_info", "Constant 1, labelled with the device and version.", ("device", "version")
        ).set(1, device, __version__)
        self.registry.gauge("edge_start_time_seconds", "Daemon start, Unix time.").set(
            self._started
        )
        tasks = []
        fifo = self._environ.get(STALL_FIFO_ENV)
        if fifo:
            _stall_hook(asyncio.get_running_loop(), fifo)
        await asyncio.sleep(0)  # the lanes' tasks run up to their first read
        # The lanes decide from here on. The HTTP server (aiohttp: ~14 MB and a gate's largest
        # import) loads in a worker thread meanwhile, so a scan during start-up is not queued
        # behind it; READY follows once /metrics and /health answer.
        runner = await self._serve_metrics()
        if runner is not None:
            tasks.append(group.create_task(_hold(runner)))
        # The HTTP stack loaded after the lanes lives as long as the daemon, like what the daemon
        # froze before them: no full collection walks it either (a walk of aiohttp's objects is
        # a stall of several ms for the lanes). No collection first: that would be such a walk.
        gc.freeze()
        status = f"{device}: {counted(len(lanes), 'lane')} ready"
        if self.metrics_url:
            status += f"; metrics on {self.metrics_url}"
        self.notifier.ready(status)
        tasks.append(group.create_task(self.notifier.watchdog()))
        return tasks

    async def _serve_metrics(self) -> web.AppRunner | None:
        settings = self._settings
        if not settings.enabled:
            return None
        await asyncio.to_thread(importlib.import_module, "edge.web.http")  # off the loop
        from edge.web import http  # noqa: PLC0415 - loaded just above, see TYPE_CHECKING

        app = http.application(max_body=MAX_BODY)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health", self._health)
        runner = http.runner(app)
        await runner.setup()
        try:
            await http.listen(runner, settings.address, settings.port)
        except OSError as err:
            # The gate works without metrics; a restart loop over a busy port would not.
            _LOGGER.error(
                "%s: metrics cannot listen on %s port %d: %s; running without them",
                self._device,
                settings.address,
                settings.port,
                err.strerror,
            )
            await runner.cleanup()
            return None
        host, port = runner.addresses[0][:2]
        self.metrics_url = f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"
        _LOGGER.info("%s: metrics on %s", self._device, self.metrics_url)
        return runner

    async def _metrics(self, request: web.Request) -> web.Response:
        from aiohttp import web  # noqa: PLC0415 - loaded by _serve_metrics already

        del request
        body = self.registry.render().encode()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    def health_report(self) -> dict[str, object]:
        """The /health document: "failing" while journal writes fail (every scan is refused),
        "degraded" for a while after a failure or while the store's disk is nearly full."""
        now = time.time()
        decisions = self.decisions
        failed_at = decisions.journal_failed_at
        status = "ok"
        if decisions.journal_failing:
            status = "failing"
        elif failed_at is not None and now - failed_at < JOURNAL_RECOVERY_SECONDS:
            status = "degraded"
        journal: dict[str, object] = {
            "failing": decisions.journal_failing,
            "last_failure": failed_at,
            "last_error": decisions.journal_error or None,
        }
        if self._store_path is not None:
            try:
                disk = os.statvfs(self._store_path.parent)
            except OSError:
                free = None
            else:
                free = disk.f_bavail * disk.f_frsize
            journal["disk_free_bytes"] = free
            if free is not None and free < DISK_LOW_BYTES and status == "ok":
                status = "degraded"
        return {
            "status": status,
            "device": self._device,
            "uptime_seconds": round(now - self._started, 3),
            "journal": journal,
            **{name: dict(section()) for name, section in self.health.items()},
        }

    async def _health(self, request: web.Request) -> web.Response:
        from aiohttp import web  # noqa: PLC0415 - loaded by _serve_metrics already

        del request
        report = self.health_report()
        # 503 while scans are refused: load balancers and probes that read only the status
        # code see it too. The answer still comes from the loop, so it still proves liveness.
        return web.json_response(report, status=503 if report["status"] == "failing" else 200)

    def stopping(self) -> None:
        """Tell systemd that shutdown has begun."""
        self.notifier.stopping()

    def close(self) -> None:
        """Release the notify socket and the debug hook."""
        if self._environ.get(STALL_FIFO_ENV):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR2)
        self.notifier.close()


async def _hold(runner: web.AppRunner) -> None:
    """Keep the metrics endpoint up until cancelled."""
    try:
        await asyncio.get_running_loop().create_future()
    finally:
        await runner.cleanup()
