"""A serial port opened by URL, read on the event loop without a thread (the transport).

`serial.serial_for_url` opens device paths (/dev/ttyACM0, /dev/edge/relay-...), pseudo-
terminals and `socket://host:port` alike, so real devices, simulators and network bridges share
this one code path. Reads wait on the port's file descriptor; writes are short frames and
use a small write timeout so a device that stops taking bytes fails fast instead of hanging.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import serial

_LOGGER = logging.getLogger(__name__)

WRITE_TIMEOUT_SECONDS = 0.1  # a relay frame is a few bytes: far longer means it is stuck
READ_CHUNK = 4096


class SerialPort:
    """One open serial port; every failure is an OSError (pyserial's errors are OSErrors)."""

    def __init__(self, url: str, *, baudrate: int = 9600) -> None:
        self.url = url
        self._baudrate = baudrate
        self._port: Any = None
        self._ready = asyncio.Event()

    @property
    def is_open(self) -> bool:
        """The port is open."""
        return self._port is not None

    def open(self) -> None:
        """Open the port; OSError (errno ENOENT when absent) if it cannot be opened."""
        self._port = serial.serial_for_url(
            self.url,
            baudrate=self._baudrate,
            timeout=0,
            write_timeout=WRITE_TIMEOUT_SECONDS,
            exclusive=True,  # flock: a second process (or a console getty) cannot share it
        )

    async def read(self) -> bytes:
        """The next bytes that arrive (at least one); OSError when the device went away."""
        port = self._port
        if port is None:
            raise OSError("port is closed")
        loop = asyncio.get_running_loop()
        fd = port.fileno()
        while True:
            data = port.read(max(1, port.in_waiting))  # SerialException if disconnected
            if data:
                return bytes(data)
            self._ready.clear()
            loop.add_reader(fd, self._ready.set)
            try:
                await self._ready.wait()
            finally:
                loop.remove_reader(fd)
            if self._port is None:
                raise OSError("port is closed")

    def write(self, data: bytes) -> None:
        """Write all of `data`; OSError (SerialTimeoutException) if the device does not take it."""
        port = self._port
        if port is None:
            raise OSError("port is closed")
        written = port.write(data)
        if written != len(data):
            raise serial.SerialTimeoutException(f"wrote {written} of {len(data)} bytes")

    def close(self) -> None:
        """Close the port; a pending read() raises OSError."""
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except OSError as err:
                _LOGGER.debug("%s: closing: %s", self.url, err)
        self._ready.set()
