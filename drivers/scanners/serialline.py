"""Serial scanners and NFC readers: codes as lines over a serial port (USB CDC-ACM, RS-232).

The port is opened by URL (see drivers.serialport); the framing codec turns received bytes into
codes. An absent or unplugged device is waited for; a partial line is dropped when the device
goes away or stays quiet longer than `timeout_ms` in the middle of a line.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from drivers.protocols import UNREADABLE, DeviceState, ScanEvent
from drivers.scanners.framing import Framing, LineEnd, LineFramer
from drivers.scanners.symbology import strip_aim
from drivers.scanners.uid import uid_format, validate_uid
from drivers.serialport import SerialPort

_LOGGER = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # how often an absent port is tried again
BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)


@dataclass(frozen=True, slots=True)
class SerialScannerSettings:
    """Configuration of a serial scanner or NFC reader."""

    url: str  # /dev/edge/scanner-..., /dev/ttyACM0 or socket://host:port
    baud: int = 9600
    terminator: str = "any"  # any (CR, LF or CR LF), cr, lf or crlf
    prefix: str = ""  # sent before each code, e.g. "\u0002" (STX); stripped
    suffix: str = ""  # sent after each code before the terminator, e.g. "\u0003" (ETX)
    max_length: int = 512  # longer lines are rejected as malformed
    timeout_ms: int = 500  # silence in the middle of a line that drops it
    strip_aim: bool = True  # remove a leading AIM symbology identifier such as ]Q1
    uid: str = ""  # card readers: 'hex' or 'decimal' UIDs become canonical upper-case hex
    uid_order: str = "as-read"  # or 'reversed'
    uid_length: int = 0  # bytes of a decimal UID (0: as many as the number needs)

    def __post_init__(self) -> None:
        if not self.url:
            raise ValueError("url must name the port: a device path or socket://host:port")
        if self.baud not in BAUD_RATES:
            raise ValueError(f"baud must be one of {', '.join(map(str, BAUD_RATES))}")
        if self.terminator not in {t.value for t in LineEnd}:
            raise ValueError("terminator must be 'any', 'cr', 'lf' or 'crlf'")
        for key in ("prefix", "suffix"):
            value = getattr(self, key)
            if len(value) > 8 or any(ord(c) > 0xFF or c in "\r\n" for c in value):
                raise ValueError(f"{key} must be at most 8 single-byte characters, no CR or LF")
        if not 1 <= self.max_length <= 4096:
            raise ValueError("max_length must be 1..4096")
        if not 10 <= self.timeout_ms <= 60_000:
            raise ValueError("timeout_ms must be 10..60000")
        validate_uid(self.uid, self.uid_order, self.uid_length)

    def framing(self) -> Framing:
        """The codec's settings."""
        return Framing(
            LineEnd(self.terminator),
            self.prefix.encode("latin-1"),
            self.suffix.encode("latin-1"),
            self.max_length,
        )


class SerialScanner:
    """Yields each line a serial scanner sends; waits for the port while it is absent."""

    def __init__(
        self,
        name: str,
        settings: SerialScannerSettings,
        *,
        port: Callable[[], SerialPort] | None = None,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.name = name
        self.settings = settings
        self._make_port = port or (lambda: SerialPort(settings.url, baudrate=settings.baud))
        self._poll = poll_seconds
        self.framer = LineFramer(settings.framing())
        self._uid = uid_format(settings.uid, settings.uid_order, settings.uid_length)
        self._closed = asyncio.Event()
        self._port: SerialPort | None = None
        self.state = DeviceState.ABSENT
        self.ready = asyncio.Event()  # set while the device is open and read
        self.unplugged = 0  # times the port went away while open

    async def _wait_for_port(self) -> SerialPort | None:
        reported = ""
        while not self._closed.is_set():
            port = self._make_port()
            try:
                # In a thread: socket:// URLs connect, with a timeout, over the network.
                await asyncio.to_thread(port.open)
            except OSError as err:
                absent = err.errno in (errno.ENOENT, errno.ENODEV, errno.ENXIO)
                self.state = DeviceState.ABSENT if absent else DeviceState.FAILED
                problem = f"cannot open {self.settings.url}: {err}"
                if problem != reported:
                    _LOGGER.warning("%s: %s; waiting for it", self.name, problem)
                    reported = problem
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), self._poll)
                continue
            _LOGGER.info("%s: reading %s at %d baud", self.name, port.url, self.settings.baud)
            self.state = DeviceState.READY
            self.ready.set()
            return port
        return None

    async def scans(self) -> AsyncIterator[ScanEvent]:
        """Yield scans until close(), across unplugging and re-plugging."""
        while (port := await self._wait_for_port()) is not None:
            self._port = port
            try:
                async for data in self._read(port):
                    yield ScanEvent(self.name, data, time.monotonic())
            finally:
                self.ready.clear()
                self._port = None
                self.framer.reset()
                port.close()

    async def _read(self, port: SerialPort) -> AsyncIterator[bytes]:
        timeout = self.settings.timeout_ms / 1000
        while not self._closed.is_set():
            try:
                if self.framer.pending:
                    chunk = await asyncio.wait_for(port.read(), timeout)
                else:
                    chunk = await port.read()
            except TimeoutError:
                _LOGGER.warning("%s: dropped a line cut off for %.1f s", self.name, timeout)
                self.framer.reset()
                continue
            except OSError as err:
                if self._closed.is_set():
                    return
                self.unplugged += 1
                self.state = DeviceState.ABSENT
                _LOGGER.warning("%s: %s went away (%s)", self.name, port.url, err)
                return
            if _LOGGER.isEnabledFor(logging.DEBUG):
                _LOGGER.debug("%s: received %s", self.name, chunk.hex(" "))
            for line in self.framer.feed(chunk):
                yield self._finish(line)

    def _finish(self, line: bytes) -> bytes:
        if line == UNREADABLE:
            _LOGGER.warning("%s: line noise or framing error; rejected as unreadable", self.name)
            return line
        if self.settings.strip_aim:
            line = strip_aim(line)
        if self._uid is None:
            return line
        try:
            return self._uid.convert(line)
        except ValueError as err:
            _LOGGER.warning("%s: not a card UID (%s)", self.name, err)
            return UNREADABLE

    async def close(self) -> None:
        """Stop reading and release the port."""
        self._closed.set()
        if self._port is not None:
            self._port.close()
