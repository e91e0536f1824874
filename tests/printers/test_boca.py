"""The BOCA driver against the simulated printer over TCP, a pseudo-terminal and pyusb."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import zxingcpp

from drivers.printers import fgl
from drivers.printers.boca import BocaPrinter
from drivers.printers.transports import (
    FileTransport,
    SerialTransport,
    TcpTransport,
    UsbTransport,
    parse_connection,
)
from drivers.protocols import PrinterState
from edge.core.errors import PaperOutError, PrinterAttentionError, PrinterError, PrintUncertainError
from printers.sim import PRODUCT, VENDOR, BocaSimulator, PtyPrinter, TcpPrinter, UsbPrinterBackend

FAST = {"status_timeout": 1.0, "print_timeout": 2.0, "busy_timeout": 1.0}  # generous: shared CPUs


def ticket(code: str) -> bytes:
    return fgl.ticket([fgl.Text(20, 20, "ADMIT ONE", "F6"), fgl.QrCode(90, 40, code, 6)])


def read(sim: BocaSimulator) -> list[str]:
    """The QR code on every ticket that came out."""
    return [r.text for image in sim.tickets for r in zxingcpp.read_barcodes(image)]


@dataclass
class Rig:
    """A simulated printer, the driver connected to it, and a way to send status bytes."""

    sim: BocaSimulator
    printer: BocaPrinter
    send: Callable[[bytes], None]


@pytest.fixture(params=["tcp", "serial", "usb"])
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    sim = BocaSimulator(paper=3)
    if request.param == "tcp":
        server = TcpPrinter(sim)
        port = await server.start()
        printer = BocaPrinter("boca", TcpTransport("127.0.0.1", port), **FAST)
        yield Rig(sim, printer, server.send)
        await printer.close()
        await server.stop()
    elif request.param == "serial":
        pty = PtyPrinter(sim)
        printer = BocaPrinter("boca", SerialTransport(pty.path, 115200), **FAST)
        yield Rig(sim, printer, pty.send)
        await printer.close()
        pty.close()
    else:
        backend = UsbPrinterBackend(sim)
        printer = BocaPrinter("boca", UsbTransport(VENDOR, PRODUCT, backend=backend), **FAST)
        yield Rig(sim, printer, backend.send)
        await printer.close()


async def test_prints_and_reports_ready(rig: Rig) -> None:
    assert await rig.printer.status() is PrinterState.READY
    await rig.printer.print(ticket("EDGE:ONE"))
    await rig.printer.print(ticket("EDGE:TWO"))
    assert read(rig.sim) == ["EDGE:ONE", "EDGE:TWO"]
    assert rig.sim.purge  # the driver switched purge mode on before the first ticket


async def test_paper_out_mid_batch_drops_the_ticket_and_resumes_after_refill(rig: Rig) -> None:
    for code in ("EDGE:1", "EDGE:2", "EDGE:3"):
        await rig.printer.print(ticket(code))
    with pytest.raises(PaperOutError, match="out of tickets"):
        await rig.printer.print(ticket("EDGE:4"))
    assert rig.printer.state is PrinterState.PAPER_OUT
    assert rig.sim.dropped == 1
    with pytest.raises(PaperOutError):  # still empty: refused before sending
        await rig.printer.print(ticket("EDGE:4"))
    assert rig.sim.dropped == 1
    rig.send(rig.sim.refill(10))
    await rig.printer.print(ticket("EDGE:4"))
    assert read(rig.sim) == ["EDGE:1", "EDGE:2", "EDGE:3", "EDGE:4"]


async def test_a_jam_needs_staff(rig: Rig) -> None:
    assert await rig.printer.status() is PrinterState.READY  # connected, then it jams
    rig.send(rig.sim.jam())
    with pytest.raises(PrinterAttentionError, match="is jammed; staff must clear it"):
        await rig.printer.print(ticket("EDGE:J"))
    assert rig.sim.tickets == []
    rig.send(rig.sim.clear())
    await rig.printer.print(ticket("EDGE:J"))
    assert read(rig.sim) == ["EDGE:J"]


async def test_purge_mode_is_set_again_after_a_power_cycle(rig: Rig) -> None:
    await rig.printer.print(ticket("EDGE:P1"))
    rig.send(rig.sim.power_cycle())
    assert not rig.sim.purge
    await rig.printer.print(ticket("EDGE:P2"))
    # The type checker carries the value asserted above across the awaits that change it.
    assert rig.sim.purge
    assert read(rig.sim) == ["EDGE:P1", "EDGE:P2"]  # type: ignore[unreachable]


class JamAfterTicket(BocaSimulator):
    """Prints the ticket, then the cutter jams."""

    def _ticket(self, chunk: bytes) -> bytes:
        reply = super()._ticket(chunk)
        self.fault = fgl.CUTTER_JAM
        return reply + bytes([fgl.CUTTER_JAM, fgl.BUSY])


async def test_a_jam_after_sending_is_uncertain_not_resent() -> None:
    sim = JamAfterTicket()
    server = TcpPrinter(sim)
    port = await server.start()
    printer = BocaPrinter("boca", TcpTransport("127.0.0.1", port), **FAST)
    with pytest.raises(PrintUncertainError, match="is jammed; check whether the ticket printed"):
        await printer.print(ticket("EDGE:CJ"))
    with pytest.raises(PrinterAttentionError):  # the next job waits for staff
        await printer.print(ticket("EDGE:CK"))
    await printer.close()
    await server.stop()
    assert read(sim) == ["EDGE:CJ"]


async def test_an_ack_confirms_a_ticket_the_exit_sensor_still_holds() -> None:
    sim = BocaSimulator(exit_sensor=True)
    backend = UsbPrinterBackend(sim)
    printer = BocaPrinter("boca", UsbTransport(VENDOR, PRODUCT, backend=backend), **FAST)
    await printer.print(ticket("EDGE:X1"))  # confirmed by ACK, though <S1> gets no answer
    assert printer.printed == 1
    backend.send(sim.take())
    await printer.print(ticket("EDGE:X2"))
    assert read(sim) == ["EDGE:X1", "EDGE:X2"]
    await printer.close()


async def test_an_unplugged_usb_printer_is_offline_not_a_crash() -> None:
    backend = UsbPrinterBackend(BocaSimulator())
    printer = BocaPrinter("boca", UsbTransport(VENDOR, PRODUCT, backend=backend), **FAST)
    await printer.print(ticket("EDGE:U"))
    backend.unplug()
    with pytest.raises(PrinterError):
        await printer.print(ticket("EDGE:V"))
    assert await printer.status() is PrinterState.OFFLINE
    backend.plugged = True
    assert await printer.status() is PrinterState.READY
    await printer.close()


async def test_a_printer_that_is_not_there_is_offline() -> None:
    server = TcpPrinter(BocaSimulator())
    port = await server.start()
    await server.stop()
    printer = BocaPrinter("boca", TcpTransport("127.0.0.1", port), **FAST)
    assert await printer.status() is PrinterState.OFFLINE
    with pytest.raises(PrinterError, match="cannot connect"):
        await printer.print(ticket("EDGE:X"))


async def test_a_silent_serial_line_is_offline(tmp_path: Path) -> None:
    sim = BocaSimulator()
    pty = PtyPrinter(sim)
    pty.close()  # nobody on the other end
    printer = BocaPrinter("boca", SerialTransport(pty.path), **FAST)
    assert await printer.status() is PrinterState.OFFLINE
    await printer.close()


async def test_file_transport_appends_the_exact_bytes(tmp_path: Path) -> None:
    path = tmp_path / "out.fgl"
    printer = BocaPrinter("boca", FileTransport(path))
    await printer.print(ticket("EDGE:F1"))
    await printer.print(ticket("EDGE:F2"))
    assert path.read_bytes() == ticket("EDGE:F1") + ticket("EDGE:F2")
    assert await printer.status() is PrinterState.UNKNOWN


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ("usb:0a43:01a6", "usb:0a43:01a6"),
        ("serial:/dev/ttyUSB0", "serial:/dev/ttyUSB0"),
        ("serial:socket://10.0.0.9:4001", "serial:socket://10.0.0.9:4001"),
        ("tcp:10.0.0.5", "tcp:10.0.0.5:9100"),
        ("tcp:printer.local:9101", "tcp:printer.local:9101"),
        ("file:/dev/usb/lp0", "file:/dev/usb/lp0"),
    ],
)
def test_connection_strings(spec: str, name: str) -> None:
    assert parse_connection(spec).name == name


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("usb:boca", "usb:VENDOR:PRODUCT"),
        ("usb:zz:01", "hexadecimal"),
        ("lpt:1", "connection must be"),
        ("tcp:host:70000", "1..65535"),
    ],
)
def test_bad_connection_strings_say_what_is_allowed(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_connection(spec)
