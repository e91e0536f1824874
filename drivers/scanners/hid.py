"""Keyboard-wedge (HID) scanners and NFC readers read through evdev, grabbed exclusively.

The device is found by a stable path (/dev/input/by-id/..., /dev/edge/scanner-...) or by USB
vendor/product id, grabbed so no console or desktop sees the keys, and read without a thread:
the event loop watches the device's file descriptor. Unplugging ends the read with an error;
the scanner forgets the partial scan and polls until the device is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from evdev import ecodes

from drivers.protocols import UNREADABLE, DeviceState, ScanEvent
from drivers.scanners.keymap import LAYOUTS
from drivers.scanners.uid import uid_format, validate_uid
from drivers.scanners.wedge import Terminator, WedgeDecoder, WedgeSettings

_LOGGER = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # how often an absent scanner is looked for again
_HEX4 = frozenset("0123456789abcdefABCDEF")


class KeyDevice(Protocol):
    """What the scanner needs of an input device; evdev.InputDevice has it."""

    @property
    def path(self) -> str | bytes:
        """Where the device was opened."""
        ...

    def fileno(self) -> int:
        """The descriptor the event loop watches."""
        ...

    def read(self) -> Iterable[Any]:
        """Pending evdev.InputEvents; BlockingIOError if none, OSError once unplugged."""
        ...

    def grab(self) -> None:
        """Exclusive access (EVIOCGRAB)."""
        ...

    def close(self) -> None:
        """Release the device."""
        ...


@dataclass(frozen=True, slots=True)
class HidScannerSettings:
    """Configuration of a keyboard-wedge scanner or NFC reader."""

    path: str = ""  # a stable device path; or give vendor and product
    vendor: str = ""  # USB vendor id, 4 hex digits (lsusb)
    product: str = ""  # USB product id, 4 hex digits
    layout: str = "us"  # the keyboard layout the scanner is set to: us, de, ch, fr
    terminator: str = "enter"  # enter, tab or timeout
    timeout_ms: int = 50  # pause that ends a scan (timeout) or drops an unfinished one
    max_length: int = 512  # longer scans are rejected as malformed
    strip_aim: bool = True  # remove a leading AIM symbology identifier such as ]Q1
    grab: bool = True  # exclusive access: keys never reach a console
    uid: str = ""  # card readers: 'hex' or 'decimal' UIDs become canonical upper-case hex
    uid_order: str = "as-read"  # or 'reversed': byte order the central system uses
    uid_length: int = 0  # bytes of a decimal UID (0: as many as the number needs)

    def __post_init__(self) -> None:
        if not self.path and not (self.vendor and self.product):
            raise ValueError("give path, or vendor and product")
        if self.path and (self.vendor or self.product):
            raise ValueError("give path or vendor/product, not both")
        for key in ("vendor", "product"):
            value = getattr(self, key)
            if value and (len(value) != 4 or not set(value) <= _HEX4):
                raise ValueError(f"{key} must be 4 hex digits as lsusb shows them, not {value!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}")
        if self.terminator not in {t.value for t in Terminator}:
            raise ValueError("terminator must be 'enter', 'tab' or 'timeout'")
        if not 5 <= self.timeout_ms <= 5000:
            raise ValueError("timeout_ms must be 5..5000")
        if not 1 <= self.max_length <= 4096:
            raise ValueError("max_length must be 1..4096")
        validate_uid(self.uid, self.uid_order, self.uid_length)

    def wedge(self) -> WedgeSettings:
        """The decoder's settings."""
        return WedgeSettings(
            Terminator(self.terminator), self.timeout_ms / 1000, self.max_length, self.strip_aim
        )


def open_evdev(settings: HidScannerSettings) -> KeyDevice | None:
    """The configured input device, opened; None when it is not plugged in."""
    import evdev  # noqa: PLC0415 - Linux only; simulators run without it

    if settings.path:
        if not os.path.exists(settings.path):  # noqa: PTH110 - a device path, not a file
            return None
        device: KeyDevice = evdev.InputDevice(settings.path)
        return device
    wanted = (int(settings.vendor, 16), int(settings.product, 16))
    for path in evdev.list_devices():
        try:
            candidate = evdev.InputDevice(path)
        except OSError:
            continue  # not ours to read, or gone meanwhile
        info = candidate.info
        keys = candidate.capabilities().get(evdev.ecodes.EV_KEY, [])
        if (info.vendor, info.product) == wanted and evdev.ecodes.KEY_ENTER in keys:
            found: KeyDevice = candidate
            return found
        candidate.close()
    return None


class HidScanner:
    """Yields each scan of a keyboard-wedge device; waits for it while it is unplugged."""

    def __init__(
        self,
        name: str,
        settings: HidScannerSettings,
        *,
        open_device: Callable[[], KeyDevice | None] | None = None,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.name = name
        self.settings = settings
        self._open = open_device or (lambda: open_evdev(settings))
        self._poll = poll_seconds
        self._decoder = WedgeDecoder(LAYOUTS[settings.layout], settings.wedge())
        self._uid = uid_format(settings.uid, settings.uid_order, settings.uid_length)
        self._closed = asyncio.Event()
        self._queue: asyncio.Queue[bytes | OSError | None] | None = None  # while reading
        self.state = DeviceState.ABSENT
        self.ready = asyncio.Event()  # set while the device is open and read
        self.unplugged = 0  # times the device went away while open

    async def _wait_for_device(self) -> KeyDevice | None:
        """The opened, grabbed device; None once closed."""
        where = self.settings.path or f"USB {self.settings.vendor}:{self.settings.product}"
        reported = ""
        while not self._closed.is_set():
            try:
                device = self._open()
                if device is not None and self.settings.grab:
                    try:
                        device.grab()
                    except OSError:
                        device.close()
                        raise
            except OSError as err:
                device = None
                self.state = DeviceState.FAILED
                problem = f"cannot open {where}: {err.strerror or err}"
            else:
                problem = f"{where} is not plugged in; waiting for it"
            if device is not None:
                _LOGGER.info("%s: reading %s", self.name, os.fsdecode(device.path))
                self.state = DeviceState.READY
                self.ready.set()
                return device
            if problem != reported:
                _LOGGER.warning("%s: %s", self.name, problem)
                reported = problem
            if self.state is not DeviceState.FAILED:
                self.state = DeviceState.ABSENT
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), self._poll)
        return None

    async def scans(self) -> AsyncIterator[ScanEvent]:
        """Yield scans until close(), across unplugging and re-plugging."""
        while (device := await self._wait_for_device()) is not None:
            try:
                async for data in self._read(device):
                    yield ScanEvent(self.name, data, time.monotonic())
            finally:
                self.ready.clear()
                self._decoder.reset()
                device.close()

    async def _read(self, device: KeyDevice) -> AsyncIterator[bytes]:
        """Scans from one opened device until it is unplugged or the scanner closed."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Queue[bytes | OSError | None] = asyncio.Queue()
        decoder = self._decoder
        arrived = [time.monotonic()]  # monotonic time of the last key, for the timeout

        def readable() -> None:
            try:
                for event in device.read():
                    done = decoder.feed(event.type, event.code, event.value, event.timestamp())
                    if event.type == ecodes.EV_KEY:
                        arrived[0] = time.monotonic()
                    if done is not None:
                        ready.put_nowait(self._finish(done))
            except BlockingIOError:
                pass
            except OSError as err:
                loop.remove_reader(device.fileno())
                ready.put_nowait(err)
                return
            if decoder.pending and ready.empty():
                ready.put_nowait(b"")  # wake the reader: a scan has begun, its timeout runs

        fd = device.fileno()
        loop.add_reader(fd, readable)
        self._queue = ready
        try:
            while not self._closed.is_set():
                timeout = None
                if decoder.pending:
                    waited = time.monotonic() - arrived[0]
                    timeout = max(0.0, decoder.settings.timeout - waited)
                try:
                    item = await asyncio.wait_for(ready.get(), timeout)
                except TimeoutError:
                    now = decoder.last_key + (time.monotonic() - arrived[0])
                    done = decoder.expire(now)
                    if done is not None:
                        yield self._finish(done)
                    continue
                if item is None:
                    return  # closed
                if not item:
                    continue  # a wake-up
                if isinstance(item, OSError):
                    self.unplugged += 1
                    self.state = DeviceState.ABSENT
                    _LOGGER.warning(
                        "%s: %s went away (%s)%s",
                        self.name,
                        os.fsdecode(device.path),
                        item.strerror or item,
                        "; dropped an unfinished scan" if decoder.pending else "",
                    )
                    return
                yield item
        finally:
            self._queue = None
            loop.remove_reader(fd)

    def _finish(self, data: bytes) -> bytes:
        """A decoded scan, converted to the canonical UID for card readers."""
        if self._uid is None:
            return data
        try:
            return self._uid.convert(data)
        except ValueError as err:
            _LOGGER.warning("%s: not a card UID (%s)", self.name, err)
            return UNREADABLE

    async def close(self) -> None:
        """Stop reading and release the device."""
        self._closed.set()
        if self._queue is not None:
            self._queue.put_nowait(None)
