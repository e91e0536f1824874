"""Relay gates: a turnstile contact, lights and a buzzer on a relay board (the device).

`RelayActuator` carries out an outcome's timeline (drivers.gates.signals) on any `RelayBoard`:
the switchings due now are made before `signal` returns (so a failed turnstile relay is an
ActuatorError the lane reports and retries); later ones (pulse end, lights off, beeps) run in a
task it owns. A relay that must switch off is retried until it does: a turnstile contact left
closed would leave the gate open. Boards reopen their device on the next command after a
failure, so an unplugged board works again once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from drivers.gates.inputs import GateInputs, key_code
from drivers.gates.lcus import MAX_CHANNELS, RelayCommand
from drivers.gates.signals import SignalSettings, Switch, timeline
from drivers.protocols import DeviceState, Outcome
from drivers.serialport import SerialPort
from edge.core.errors import ActuatorError

_LOGGER = logging.getLogger(__name__)

OFF_RETRY_SECONDS = 0.5  # between attempts to open a relay that did not switch off


class RelayBoard(Protocol):
    """A board of numbered relays."""

    name: str
    state: DeviceState

    async def switch(self, channel: int, *, on: bool) -> None:
        """Set one relay; ActuatorError if the board did not take the command."""
        ...

    async def close(self) -> None:
        """Release the device."""
        ...


class RelayActuator:
    """An Actuator over a relay board: turnstile pulse, lights and buzzer per outcome."""

    def __init__(
        self,
        name: str,
        board: RelayBoard,
        settings: SignalSettings,
        *,
        off_retry_seconds: float = OFF_RETRY_SECONDS,
        inputs: GateInputs | None = None,
    ) -> None:
        self.name = name
        self.board = board
        self.settings = settings
        self._retry = off_retry_seconds
        self._on: set[int] = set()  # relays switched on and not yet off
        self._later: asyncio.Task[None] | None = None
        self.failures = 0  # commands the board did not take
        self.inputs = inputs
        self._tasks: set[asyncio.Task[None]] = set()  # input watcher, early pulse ends, timers
        self._door_timer: asyncio.Task[None] | None = None
        self.passages = 0  # passages the sensor reported
        self.door_held = False  # the door has been open longer than door_held_ms
        self._watching = False
        with contextlib.suppress(RuntimeError):  # no running loop: start on the first signal
            self._watch()

    def _watch(self) -> None:
        """Start reading the inputs; RuntimeError outside a running event loop."""
        if self.inputs is not None and not self._watching:
            asyncio.get_running_loop()  # before the coroutine exists, so none is left unawaited
            self._spawn(self.inputs.run(self._passed, self._door_changed))
            self._watching = True

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _passed(self) -> None:
        """The passage sensor fired: the person is through, the turnstile may close now."""
        self.passages += 1
        turnstiles = {self.settings.entry_channel, self.settings.exit_channel} - {0}
        for channel in sorted(self._on & turnstiles):
            self._spawn(self._until_done(Switch(0.0, channel, on=False)))

    def _door_changed(self, is_open: bool) -> None:
        if self._door_timer is not None:
            self._door_timer.cancel()
            self._door_timer = None
        if is_open:
            self._door_timer = self._spawn(self._door_held())
        elif self.door_held:
            self.door_held = False
            _LOGGER.info("%s: door closed again", self.name)

    async def _door_held(self) -> None:
        await asyncio.sleep(self.settings.door_held_ms / 1000)
        self.door_held = True
        _LOGGER.warning(
            "%s: door held open for more than %.0f s", self.name, self.settings.door_held_ms / 1000
        )

    @property
    def state(self) -> DeviceState:
        """The board's state."""
        return self.board.state

    async def signal(self, outcome: Outcome, text: str) -> None:
        """Switch what is due now; schedule the rest (pulse end, lights, beeps)."""
        del text  # a relay board has no display
        self._watch()
        steps = timeline(self.settings, outcome)
        if self._later is not None:
            self._later.cancel()  # the new outcome replaces the old pattern
            self._later = None
        now = [s for s in steps if s.at == 0.0]
        later = [s for s in steps if s.at > 0.0]
        switched_on = {s.channel for s in now if s.on}
        try:
            for step in now:
                await self._switch(step)
        finally:
            # Relays the previous pattern left on and this one does not use go off; and even
            # when a command failed, what is on must still go off in time.
            stale = [Switch(0.0, c, on=False) for c in sorted(self._on - switched_on)]
            self._later = asyncio.create_task(self._run(stale + later))

    async def _switch(self, step: Switch) -> None:
        try:
            await self.board.switch(step.channel, on=step.on)
        except ActuatorError:
            self.failures += 1
            raise
        if step.on:
            self._on.add(step.channel)
        else:
            self._on.discard(step.channel)

    async def _run(self, steps: list[Switch]) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for step in steps:
            delay = start + step.at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._until_done(step)

    async def _until_done(self, step: Switch) -> None:
        attempt = 0
        while True:
            try:
                await self._switch(step)
                if attempt:
                    _LOGGER.info(
                        "%s: relay %d switched after %d retries", self.name, step.channel, attempt
                    )
                return
            except ActuatorError as err:
                if not step.on and step.channel not in self._on:
                    return  # it was never on
                attempt += 1
                if attempt == 1:
                    _LOGGER.error(
                        "%s: relay %d did not switch %s: %s; retrying",
                        self.name,
                        step.channel,
                        "on" if step.on else "off",
                        err,
                    )
                if step.on:
                    return  # a late "on" (a beep) is not worth retrying
                await asyncio.sleep(self._retry)

    async def close(self) -> None:
        """Switch everything off (best effort) and release the board."""
        if self._later is not None:
            self._later.cancel()
            self._later = None
        for task in list(self._tasks):
            task.cancel()
        for channel in sorted(self._on):
            try:
                await self.board.switch(channel, on=False)
            except ActuatorError as err:
                _LOGGER.error("%s: relay %d left on at close: %s", self.name, channel, err)
        await self.board.close()


class SerialRelayBoard:
    """An LCUS-type relay module on a serial port: one four-byte frame per command."""

    def __init__(self, name: str, url: str, *, baudrate: int = 9600) -> None:
        self.name = name
        self._port = SerialPort(url, baudrate=baudrate)
        self.state = DeviceState.ABSENT

    async def switch(self, channel: int, *, on: bool) -> None:
        """Send one frame, opening the port first if needed."""
        frame = RelayCommand(channel, on).to_bytes()
        try:
            if not self._port.is_open:
                await asyncio.to_thread(self._port.open)  # socket:// connects over the network
                _LOGGER.info("%s: relay board on %s", self.name, self._port.url)
            self._port.write(frame)
        except OSError as err:
            self._port.close()
            self.state = DeviceState.FAILED if self.state is DeviceState.READY else self.state
            raise ActuatorError(f"relay board {self._port.url}: {err}", device=self.name) from err
        if _LOGGER.isEnabledFor(logging.DEBUG):
            _LOGGER.debug("%s: sent %s", self.name, frame.hex(" "))
        self.state = DeviceState.READY

    async def close(self) -> None:
        """Close the port."""
        self._port.close()


@dataclass(frozen=True, slots=True)
class SerialRelaySettings(SignalSettings):
    """Configuration of a USB-serial (LCUS-type) relay board."""

    url: str = ""  # /dev/edge/relay-..., /dev/ttyUSB0 or socket://host:port
    baud: int = 9600

    def __post_init__(self) -> None:
        SignalSettings.__post_init__(self)
        if not self.url:
            raise ValueError("url must name the relay board's port")
        if self.channels > MAX_CHANNELS:
            raise ValueError(f"channels must be at most {MAX_CHANNELS}")


def gate_inputs(name: str, settings: SignalSettings) -> GateInputs | None:
    """The configured passage/door inputs, if any."""
    if not settings.inputs:
        return None
    return GateInputs(
        name,
        settings.inputs,
        passage=key_code(settings.passage_key) if settings.passage_key else 0,
        door=key_code(settings.door_key) if settings.door_key else 0,
    )


def serial_relay(name: str, settings: SerialRelaySettings) -> RelayActuator:
    """A relay gate on an LCUS-type serial board (the registry's factory)."""
    board = SerialRelayBoard(name, settings.url, baudrate=settings.baud)
    return RelayActuator(name, board, settings, inputs=gate_inputs(name, settings))
