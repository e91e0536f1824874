"""Byte transports under the printers: USB (pyusb), serial (pyserial URLs), TCP, file.

Like python-escpos's printer classes, each transport only moves bytes: `write` sends, `read`
returns what the device sent within a timeout (b"" if nothing). Blocking libraries (pyusb,
pyserial) run in a worker thread. A transport opens lazily and reopens after a failure, so an
unplugged printer is an error on this job and a working printer again on the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any, Protocol

import serial
import usb.core
import usb.util

from edge.core.errors import PrinterError

_LOGGER = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0  # seconds to open a TCP connection to a printer
WRITE_TIMEOUT = 30.0  # seconds for one document to leave (a logo download is ~10 kB)
READ_CHUNK = 256
TCP_PORT = 9100  # raw printing port of network printers


class Transport(Protocol):
    """Moves bytes to and from one device."""

    name: str  # for messages: "usb:0a43:01a6", "tcp:10.0.0.5:9100", ...
    two_way: bool  # False: nothing ever comes back (file)

    async def write(self, data: bytes) -> None:
        """Send all of `data`; PrinterError if the device is absent or the write fails."""
        ...

    async def read(self, within: float) -> bytes:
        """What the device sent within `within` seconds (b"" if nothing)."""
        ...

    async def close(self) -> None:
        """Release the device; a later write reopens it."""
        ...


class FileTransport:
    """Appends to a file (a character device such as /dev/usb/lp0, or a capture for tests)."""

    two_way = False

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = f"file:{self.path}"

    async def write(self, data: bytes) -> None:
        """Append `data`."""

        def append() -> None:
            with self.path.open("ab") as file:
                file.write(data)

        try:
            await asyncio.to_thread(append)
        except OSError as err:
            raise PrinterError(f"cannot write: {err.strerror}", device=self.name) from err

    async def read(self, within: float) -> bytes:
        """A file never answers."""
        del within
        return b""

    async def close(self) -> None:
        """Nothing is held open."""


class TcpTransport:
    """A raw TCP connection (port 9100)."""

    two_way = True

    def __init__(self, host: str, port: int = TCP_PORT) -> None:
        self.host = host
        self.port = port
        self.name = f"tcp:{host}:{port}"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is not None and self._writer is not None:
            return self._reader, self._writer
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError) as err:
            raise PrinterError(f"cannot connect: {err}", device=self.name) from err
        self._reader, self._writer = reader, writer
        return reader, writer

    async def write(self, data: bytes) -> None:
        """Send `data` and wait until the socket took it."""
        _, writer = await self._open()
        try:
            writer.write(data)
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
        except (OSError, TimeoutError) as err:
            await self.close()
            raise PrinterError(f"write failed: {err}", device=self.name) from err

    async def read(self, within: float) -> bytes:
        """Bytes the printer sent within `within` seconds."""
        reader, _ = await self._open()
        try:
            data = await asyncio.wait_for(reader.read(READ_CHUNK), within)
        except TimeoutError:
            return b""
        except OSError as err:
            await self.close()
            raise PrinterError(f"read failed: {err}", device=self.name) from err
        if not data:
            await self.close()
            raise PrinterError("the printer closed the connection", device=self.name)
        return data

    async def close(self) -> None:
        """Close the connection."""
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class SerialTransport:
    """A serial port by pyserial URL: /dev/ttyUSB0, rfc2217://host:port, socket://..."""

    two_way = True

    def __init__(self, url: str, baudrate: int = 9600) -> None:
        self.url = url
        self.baudrate = baudrate
        self.name = f"serial:{url}"
        self._port: Any = None

    def _open(self) -> Any:
        if self._port is None:
            try:
                self._port = serial.serial_for_url(
                    self.url, baudrate=self.baudrate, timeout=0, write_timeout=WRITE_TIMEOUT
                )
            except (serial.SerialException, ValueError) as err:
                raise PrinterError(f"cannot open: {err}", device=self.name) from err
        return self._port

    async def write(self, data: bytes) -> None:
        """Send `data` and wait until it left the port."""

        def send() -> None:
            port = self._open()
            port.write(data)
            port.flush()

        try:
            await asyncio.to_thread(send)
        except (serial.SerialException, OSError) as err:
            await self.close()
            raise PrinterError(f"write failed: {err}", device=self.name) from err

    async def read(self, within: float) -> bytes:
        """Bytes that arrived within `within` seconds."""

        def receive() -> bytes:
            port = self._open()
            port.timeout = within
            first = port.read(1)
            if not first:
                return b""
            port.timeout = 0
            return bytes(first + port.read(READ_CHUNK))

        try:
            return await asyncio.to_thread(receive)
        except (serial.SerialException, OSError) as err:
            await self.close()
            raise PrinterError(f"read failed: {err}", device=self.name) from err

    async def close(self) -> None:
        """Close the port."""
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                await asyncio.to_thread(port.close)


class UsbTransport:
    """A USB printer's bulk endpoints, through pyusb (libusb, or an injected backend)."""

    two_way = True

    def __init__(self, vendor: int, product: int, *, backend: Any = None) -> None:
        self.vendor = vendor
        self.product = product
        self.name = f"usb:{vendor:04x}:{product:04x}"
        self._backend = backend
        self._device: Any = None
        self._out: Any = None
        self._in: Any = None

    def _open(self) -> None:
        if self._device is not None:
            return
        try:
            device = usb.core.find(
                idVendor=self.vendor, idProduct=self.product, backend=self._backend
            )
        except usb.core.NoBackendError as err:
            raise PrinterError("no USB backend (is libusb installed?)", device=self.name) from err
        if device is None:
            raise PrinterError("not connected (unplugged or switched off?)", device=self.name)
        try:
            with contextlib.suppress(NotImplementedError, usb.core.USBError):
                if device.is_kernel_driver_active(0):
                    device.detach_kernel_driver(0)  # usblp holds printers by default
            device.set_configuration()
            interface = device.get_active_configuration()[(0, 0)]
            usb.util.claim_interface(device, interface)

            def direction(wanted: int) -> Any:
                return usb.util.find_descriptor(
                    interface,
                    custom_match=lambda e: (
                        usb.util.endpoint_direction(e.bEndpointAddress) == wanted
                        and usb.util.endpoint_type(e.bmAttributes) == usb.util.ENDPOINT_TYPE_BULK
                    ),
                )

            self._out = direction(usb.util.ENDPOINT_OUT)
            self._in = direction(usb.util.ENDPOINT_IN)
        except usb.core.USBError as err:
            usb.util.dispose_resources(device)
            raise PrinterError(f"cannot open: {err}", device=self.name) from err
        if self._out is None:
            usb.util.dispose_resources(device)
            raise PrinterError("has no bulk OUT endpoint; not a printer?", device=self.name)
        self._device = device

    async def write(self, data: bytes) -> None:
        """Send `data` on the bulk OUT endpoint."""

        def send() -> None:
            self._open()
            written = self._out.write(data, timeout=int(WRITE_TIMEOUT * 1000))
            if written != len(data):
                raise usb.core.USBError(f"short write: {written} of {len(data)} bytes")

        try:
            await asyncio.to_thread(send)
        except usb.core.USBError as err:
            await self.close()
            raise PrinterError(f"write failed: {err}", device=self.name) from err

    async def read(self, within: float) -> bytes:
        """Bytes from the bulk IN endpoint within `within` seconds (b"" if none)."""

        def receive() -> bytes:
            self._open()
            if self._in is None:
                return b""
            try:
                return bytes(self._in.read(READ_CHUNK, timeout=max(1, int(within * 1000))))
            except usb.core.USBTimeoutError:
                return b""

        try:
            return await asyncio.to_thread(receive)
        except usb.core.USBError as err:
            await self.close()
            raise PrinterError(f"read failed: {err}", device=self.name) from err

    async def close(self) -> None:
        """Release the interface."""
        device, self._device, self._out, self._in = self._device, None, None, None
        if device is not None:
            with contextlib.suppress(usb.core.USBError):
                await asyncio.to_thread(usb.util.dispose_resources, device)


def _hex(value: str, what: str, spec: str) -> int:
    try:
        number = int(value, 16)
    except ValueError:
        raise ValueError(f"{what} in {spec!r} must be hexadecimal, such as 0a43") from None
    if not 0 <= number <= 0xFFFF:
        raise ValueError(f"{what} in {spec!r} must be 0000..ffff")
    return number


def parse_connection(spec: str, *, baudrate: int = 9600) -> Transport:
    """A transport from a connection string; ValueError says what is allowed.

    usb:VVVV:PPPP (vendor and product id, hex), serial:URL (a device path or pyserial URL),
    tcp:HOST[:PORT] (default 9100), file:PATH.
    """
    scheme, _, rest = spec.partition(":")
    if scheme == "usb":
        parts = rest.split(":")
        if len(parts) != 2:
            raise ValueError(f"{spec!r}: a USB printer is usb:VENDOR:PRODUCT, e.g. usb:0a43:01a6")
        return UsbTransport(_hex(parts[0], "vendor id", spec), _hex(parts[1], "product id", spec))
    if scheme == "serial" and rest:
        return SerialTransport(rest, baudrate)
    if scheme == "tcp" and rest:
        host, colon, port = rest.rpartition(":")
        if not colon or not port.isdigit():
            host, port = rest, str(TCP_PORT)
        if not 0 < int(port) < 65536:
            raise ValueError(f"{spec!r}: port must be 1..65535")
        return TcpTransport(host.strip("[]"), int(port))
    if scheme == "file" and rest:
        return FileTransport(rest)
    raise ValueError(
        f"{spec!r}: connection must be usb:VENDOR:PRODUCT, serial:DEVICE_OR_URL, "
        "tcp:HOST[:PORT] or file:PATH"
    )
