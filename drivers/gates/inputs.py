"""Gate inputs: a passage sensor and a door contact, read as key events through evdev.

On a Raspberry Pi the sensors are wired to GPIO pins and the kernel's gpio-keys driver
(`dtoverlay=gpio-key,gpio=17,keycode=59,label=passage`) turns them into key events; USB I/O
modules that present inputs as keys work the same. A key press on the passage input means a
person went through; the door input is pressed while the door is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from drivers.protocols import DeviceState

if TYPE_CHECKING:  # evdev loads when a gate has inputs configured, not with every relay
    from drivers.scanners.hid import KeyDevice

_LOGGER = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # how often an absent input device is looked for again


def key_code(name: str) -> int:
    """The evdev code of a key name such as KEY_F1 or BTN_0; ValueError if unknown."""
    from evdev import ecodes  # noqa: PLC0415 - see TYPE_CHECKING above

    code = ecodes.ecodes.get(name)
    if not isinstance(code, int) or not name.startswith(("KEY_", "BTN_")):
        raise ValueError(f"{name!r} is not an evdev key name (KEY_F1, BTN_0, ... see evtest)")
    return code


def open_path(path: str) -> KeyDevice | None:
    """The input device at `path`, opened; None when it is not there."""
    import evdev  # noqa: PLC0415 - Linux only

    if not os.path.exists(path):  # noqa: PTH110 - a device path, not a file
        return None
    device: KeyDevice = evdev.InputDevice(path)
    return device


class GateInputs:
    """Watches one input device and calls back on passages and door changes."""

    def __init__(
        self,
        name: str,
        path: str,
        *,
        passage: int = 0,
        door: int = 0,
        open_device: Callable[[], KeyDevice | None] | None = None,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.name = name
        self.path = path
        self._passage = passage
        self._door = door
        self._open = open_device or (lambda: open_path(path))
        self._poll = poll_seconds
        self.state = DeviceState.ABSENT
        self.door_open = False

    async def run(self, on_passage: Callable[[], None], on_door: Callable[[bool], None]) -> None:
        """Read the inputs until cancelled, waiting for the device while it is absent."""
        reported = False
        while True:
            try:
                device = self._open()
            except OSError as err:
                device = None
                _LOGGER.debug("%s: cannot open inputs %s: %s", self.name, self.path, err)
            if device is None:
                self.state = DeviceState.ABSENT
                if not reported:
                    _LOGGER.warning("%s: inputs %s not present; waiting", self.name, self.path)
                    reported = True
                await asyncio.sleep(self._poll)
                continue
            reported = False
            self.state = DeviceState.READY
            _LOGGER.info("%s: reading gate inputs from %s", self.name, self.path)
            try:
                await self._read(device, on_passage, on_door)
            except OSError as err:
                _LOGGER.warning("%s: inputs %s failed: %s", self.name, self.path, err)
                await asyncio.sleep(self._poll)
            finally:
                self.state = DeviceState.ABSENT
                device.close()

    async def _read(
        self,
        device: KeyDevice,
        on_passage: Callable[[], None],
        on_door: Callable[[bool], None],
    ) -> None:
        from evdev import ecodes  # noqa: PLC0415 - see TYPE_CHECKING above

        loop = asyncio.get_running_loop()
        gone = asyncio.Event()

        def readable() -> None:
            try:
                for event in device.read():
                    if event.type != ecodes.EV_KEY or event.value == 2:
                        continue  # not a key, or autorepeat of a held contact
                    if event.code == self._passage and event.value == 1:
                        on_passage()
                    elif event.code == self._door:
                        self.door_open = event.value == 1
                        on_door(self.door_open)
            except BlockingIOError:
                pass
            except OSError as err:
                _LOGGER.warning("%s: inputs %s went away (%s)", self.name, self.path, err)
                loop.remove_reader(device.fileno())
                gone.set()

        fd = device.fileno()
        loop.add_reader(fd, readable)
        try:
            await gone.wait()
        finally:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(fd)
