"""A simulated BOCA printer that speaks the bytes, behind real transports.

The printer interprets FGL with the interpreter (drivers.printers.fglrender), counts tickets
left in its stack, answers <S1> with X-ON only when ready, reports faults with their status
bytes, and in purge mode (<PP>) drops a ticket it could not print. It is reachable the ways a
real one is: a TCP server on 127.0.0.1, a pseudo-terminal, and a pyusb backend
(usb.backend.IBackend) so pyusb's own device, configuration and endpoint code runs.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import errno
import os
import re
import select
import threading
import tty
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import usb.backend
import usb.core
from PIL import Image

from drivers.printers import card, fgl
from drivers.printers.fglrender import Renderer

ESC = 0x1B
_MARKERS = (b"<S1>", b"<PP>", b"<p>", b"<q>")


_BAND = re.compile(rb"<RC[0-9]+,[0-9]+><G([0-9]+)>")


def _download_end(buffer: bytearray, i: int) -> int | None:
    """Index after the ESC closing a logo download whose data starts at `i`; None if partial.

    Bitmap bytes may be ESC or '<': each band's <G#> count says how many bytes are data.
    """
    while i < len(buffer):
        if buffer[i] == ESC:
            return i + 1
        band = _BAND.match(buffer, i)
        if band is None:
            if len(buffer) - i < 24:
                return None  # a band header still arriving
            raise AssertionError(f"BOCA: bad logo download at {bytes(buffer[i : i + 16])!r}")
        i = band.end() + int(band.group(1))
    return None


class BocaSimulator:
    """The printer's logic: feed it bytes, it returns the bytes it sends back."""

    def __init__(
        self,
        *,
        rows: int = 384,
        columns: int = 1100,
        paper: int | None = None,
        exit_sensor: bool = False,
    ):
        self.renderer = Renderer(rows, columns)
        # Ticket-taken sensor: ACK after each ticket, then no answer until it is taken.
        self.exit_sensor = exit_sensor
        self.waiting_for_taker = False
        self.paper = paper  # tickets left; None: endless
        self.purge = False
        self.fault: int | None = None
        self.dropped = 0
        self.received = bytearray()
        self._buffer = bytearray()
        self._held: list[Image.Image] = []
        self.lock = threading.Lock()

    @property
    def tickets(self) -> list[Image.Image]:
        """Every ticket that came out, in order."""
        return self.renderer.tickets

    def _marker(self) -> tuple[int, bytes] | None:
        """The first command that needs the printer's attention, outside logo downloads."""
        i = 0
        buffer = self._buffer
        while i < len(buffer):
            if buffer[i] == ESC:
                end = _download_end(buffer, i + 1)
                if end is None:
                    return None  # the rest of the download has not arrived yet
                i = end
                continue
            if buffer[i] == ord("<"):
                for marker in _MARKERS:
                    if buffer.startswith(marker, i):
                        return i + len(marker), marker
            i += 1
        return None

    def feed(self, data: bytes) -> bytes:
        """Process bytes from the host; returns the status bytes the printer sends."""
        reply = bytearray()
        with self.lock:
            self.received += data
            self._buffer += data
            while (found := self._marker()) is not None:
                end, marker = found
                chunk = bytes(self._buffer[:end])
                del self._buffer[:end]
                if marker == b"<S1>":
                    if self.fault is None and not self.waiting_for_taker:
                        reply.append(fgl.READY)
                elif marker == b"<PP>":
                    self.purge = True
                else:
                    reply += self._ticket(chunk)
        return bytes(reply)

    def _ticket(self, chunk: bytes) -> bytes:
        before = len(self.renderer.tickets)
        self.renderer.feed(chunk)
        if len(self.renderer.tickets) == before:
            return b""
        if self.fault is None and (self.paper is None or self.paper > 0):
            if self.paper is not None:
                self.paper -= 1
            if self.exit_sensor:
                self.waiting_for_taker = True
                return bytes([fgl.ACK])
            return b""
        ticket = self.renderer.tickets.pop()
        if self.purge:
            self.dropped += 1
        else:
            self._held.append(ticket)
        if self.fault is None:
            self.fault = fgl.OUT_OF_TICKETS
            return bytes([fgl.OUT_OF_TICKETS, fgl.BUSY])
        return b""

    def refill(self, tickets: int) -> bytes:
        """New stock loaded: prints held tickets (no purge mode) and sends X-ON."""
        with self.lock:
            self.paper = tickets
            if self.fault == fgl.OUT_OF_TICKETS:
                self.fault = None
            while self._held and self.paper:
                self.renderer.tickets.append(self._held.pop(0))
                self.paper -= 1
            return bytes([fgl.READY]) if self.fault is None else b""

    def take(self) -> bytes:
        """Someone took the ticket from the exit: X-ON (0x16 with default settings)."""
        with self.lock:
            self.waiting_for_taker = False
            return bytes([fgl.RIBBON_LOW])

    def jam(self) -> bytes:
        """A paper jam."""
        with self.lock:
            self.fault = fgl.PAPER_JAM
            return bytes([fgl.PAPER_JAM, fgl.BUSY])

    def power_cycle(self) -> bytes:
        """Switched off and on: purge mode and faults are gone, the stack stays."""
        with self.lock:
            self.purge = False
            self.fault = None
            return bytes([fgl.POWER_ON, fgl.READY])

    def clear(self) -> bytes:
        """Staff cleared the fault."""
        with self.lock:
            self.fault = None
            return bytes([fgl.READY])


# -- TCP (port 9100) ---------------------------------------------------------------------------


class TcpPrinter:
    """The simulator as a raw TCP printer on 127.0.0.1."""

    def __init__(self, printer: BocaSimulator) -> None:
        self.printer = printer
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        """Listen; returns the port."""
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        try:
            while data := await reader.read(4096):
                reply = self.printer.feed(data)
                if reply:
                    writer.write(reply)
                    await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def send(self, data: bytes) -> None:
        """Unsolicited status bytes to every connected host."""
        for writer in self.writers:
            if not writer.is_closing():
                writer.write(data)

    async def stop(self) -> None:
        """Close the server and its connections."""
        for writer in self.writers:
            writer.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


# -- serial: a pseudo-terminal -----------------------------------------------------------------


class PtyPrinter:
    """The simulator on the device side of a pseudo-terminal; the host opens `path`."""

    def __init__(self, printer: BocaSimulator) -> None:
        self.printer = printer
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        self._slave = slave
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            reply = self.printer.feed(data)
            if reply:
                os.write(self.master, reply)

    def send(self, data: bytes) -> None:
        """Unsolicited status bytes."""
        if data:
            os.write(self.master, data)

    def close(self) -> None:
        """Stop serving and close both ends."""
        self._stop.set()
        self._thread.join()
        os.close(self.master)
        os.close(self._slave)


# -- USB: a pyusb backend ----------------------------------------------------------------------

VENDOR = 0x0A43  # BOCA Systems
PRODUCT = 0x01A6
EP_OUT = 0x01
EP_IN = 0x81


def _descriptor(**fields: Any) -> SimpleNamespace:
    return SimpleNamespace(extra_descriptors=[], **fields)


class UsbPrinterBackend(usb.backend.IBackend):  # type: ignore[misc]
    """A pyusb backend with one printer-class device: bulk OUT feeds the simulator."""

    def __init__(
        self, printer: BocaSimulator | EvolisSimulator, vendor: int = VENDOR, product: int = PRODUCT
    ) -> None:
        super().__init__()
        self.printer = printer
        self.plugged = True
        self.configuration = 0
        self._pending = bytearray()
        self._ready = threading.Condition()
        self.device = _descriptor(
            bLength=18,
            bDescriptorType=1,
            bcdUSB=0x0200,
            bDeviceClass=0,
            bDeviceSubClass=0,
            bDeviceProtocol=0,
            bMaxPacketSize0=64,
            idVendor=vendor,
            idProduct=product,
            bcdDevice=0x0100,
            iManufacturer=0,
            iProduct=0,
            iSerialNumber=0,
            bNumConfigurations=1,
            address=5,
            bus=1,
            port_number=2,
            port_numbers=(2,),
            speed=3,
        )
        self.config = _descriptor(
            bLength=9,
            bDescriptorType=2,
            wTotalLength=32,
            bNumInterfaces=1,
            bConfigurationValue=1,
            iConfiguration=0,
            bmAttributes=0xC0,
            bMaxPower=1,
        )
        self.interface = _descriptor(
            bLength=9,
            bDescriptorType=4,
            bInterfaceNumber=0,
            bAlternateSetting=0,
            bNumEndpoints=2,
            bInterfaceClass=7,
            bInterfaceSubClass=1,
            bInterfaceProtocol=2,
            iInterface=0,
        )
        self.endpoints = [
            _descriptor(
                bLength=7,
                bDescriptorType=5,
                bEndpointAddress=address,
                bmAttributes=2,
                wMaxPacketSize=64,
                bInterval=0,
                bRefresh=0,
                bSynchAddress=0,
            )
            for address in (EP_OUT, EP_IN)
        ]

    def _check(self) -> None:
        if not self.plugged:
            raise usb.core.USBError("No such device", errno.ENODEV, -4)

    def enumerate_devices(self) -> Iterator[str]:
        if self.plugged:
            yield "printer"

    def get_device_descriptor(self, dev: str) -> SimpleNamespace:
        return self.device

    def get_configuration_descriptor(self, dev: str, config: int) -> SimpleNamespace:
        if config != 0:
            raise IndexError(config)
        return self.config

    def get_interface_descriptor(self, dev: str, intf: int, alt: int, config: int) -> Any:
        if (intf, alt, config) != (0, 0, 0):
            raise IndexError(intf)
        return self.interface

    def get_endpoint_descriptor(self, dev: str, ep: int, intf: int, alt: int, config: int) -> Any:
        return self.endpoints[ep]

    def open_device(self, dev: str) -> str:
        self._check()
        return "handle"

    def close_device(self, dev_handle: str) -> None:
        pass

    def set_configuration(self, dev_handle: str, config_value: int) -> None:
        self._check()
        self.configuration = config_value

    def get_configuration(self, dev_handle: str) -> int:
        return self.configuration

    def claim_interface(self, dev_handle: str, intf: int) -> None:
        self._check()

    def release_interface(self, dev_handle: str, intf: int) -> None:
        pass

    def bulk_write(
        self, dev_handle: str, ep: int, intf: int, data: array.array[int], timeout: int
    ) -> int:
        self._check()
        if ep != EP_OUT:
            raise usb.core.USBError("Pipe error", errno.EPIPE, -9)
        self.send(self.printer.feed(bytes(data)))
        return len(data)

    def bulk_read(
        self, dev_handle: str, ep: int, intf: int, buff: array.array[int], timeout: int
    ) -> int:
        self._check()
        with self._ready:
            if not self._pending and not self._ready.wait_for(
                lambda: bool(self._pending) or not self.plugged, timeout / 1000
            ):
                raise usb.core.USBTimeoutError("Operation timed out", errno.ETIMEDOUT, -7)
            self._check()
            count = min(len(buff), len(self._pending))
            buff[:count] = array.array("B", self._pending[:count])
            del self._pending[:count]
            return count

    def send(self, data: bytes) -> None:
        """Queue bytes for the host's next bulk IN read."""
        if data:
            with self._ready:
                self._pending += data
                self._ready.notify_all()

    def unplug(self) -> None:
        """The cable is pulled."""
        with self._ready:
            self.plugged = False
            self._ready.notify_all()


class EvolisSimulator:
    """An Evolis card printer: parses ESC ... CR commands and rebuilds printed card sides."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.cards: list[Image.Image] = []
        self._buffer = bytearray()
        self._front: Image.Image | None = None

    def feed(self, data: bytes) -> bytes:
        """Process bytes from the host; this model never answers."""
        self._buffer += data
        while self._buffer:
            if self._buffer[0] != ESC:
                raise AssertionError(f"Evolis: expected ESC, got {bytes(self._buffer[:8])!r}")
            if self._buffer.startswith(b"\x1bDb;k;2;"):
                start = len(b"\x1bDb;k;2;")
                end = start + card.RASTER_BYTES
                if len(self._buffer) < end + 1:
                    return b""
                if self._buffer[end] != 0x0D:
                    raise AssertionError("Evolis: the raster is not followed by CR")
                raw = bytes(byte ^ 0xFF for byte in self._buffer[start:end])
                side = Image.frombytes("1", (card.LINE_DOTS, card.LINES), raw)
                self._front = side.transpose(Image.Transpose.ROTATE_90).convert("L")
                self.commands.append("Db;k;2")
                del self._buffer[: end + 1]
                continue
            cr = self._buffer.find(b"\r")
            if cr < 0:
                return b""
            name = self._buffer[1:cr].decode("ascii")
            del self._buffer[: cr + 1]
            self.commands.append(name)
            if name == "Se" and self._front is not None:
                self.cards.append(self._front)
                self._front = None
        return b""


@contextlib.contextmanager
def pty_printer(printer: BocaSimulator) -> Iterator[PtyPrinter]:
    """A simulator on a pseudo-terminal for the duration of a block."""
    served = PtyPrinter(printer)
    try:
        yield served
    finally:
        served.close()
