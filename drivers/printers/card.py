"""Card printers: an Evolis printer driven by its escape commands, and any printer via CUPS.

A card side arrives as a PNG (edge.counter.templates renders it). The Evolis driver turns it
into the command stream Evolis's black-panel printing uses (docs/card-printers.md lists each
command and where it is documented): ribbon, card feeder, contrast, sequence start, the front
side as a 1-bit raster of 648-dot lines (the card turned a quarter clockwise), sequence end.
The CUPS driver hands the PNG to `lp` for printers that have a CUPS driver.
"""

from __future__ import annotations

import asyncio
import io
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from drivers.printers.images import CARD_HEIGHT, CARD_WIDTH, open_image
from drivers.printers.transports import Transport, parse_connection
from drivers.protocols import PrinterState
from edge.core.errors import PrinterError

_LOGGER = logging.getLogger(__name__)

ESC = b"\x1b"
CR = b"\r"
LINE_DOTS = CARD_HEIGHT  # dots per raster line: the card's short side
LINES = CARD_WIDTH  # raster lines: the card's long side
RASTER_BYTES = LINE_DOTS * LINES // 8
CONTRAST = 10  # black panel contrast, Evolis's default
LP_TIMEOUT = 30.0  # seconds for `lp` to hand a job to CUPS


def command(text: str) -> bytes:
    """One Evolis command: ESC, the command, CR."""
    return ESC + text.encode("ascii") + CR


def raster(png: bytes) -> bytes:
    """A card side as the black panel's 1-bit raster: 1016 lines of 648 dots, MSB first."""
    image = open_image(png, "card image")
    if image.size != (CARD_WIDTH, CARD_HEIGHT):
        raise PrinterError(
            f"a card side is {CARD_WIDTH}x{CARD_HEIGHT} pixels, not {image.width}x{image.height}"
        )
    # A quarter turn clockwise, dithered to black and white (photos need the dither).
    bitmap = image.transpose(Image.Transpose.ROTATE_270).convert("1")
    # Pillow's 1-bit: set bits are white; the panel's: set bits are black.
    return bytes(byte ^ 0xFF for byte in bitmap.tobytes())


def evolis_job(png: bytes, *, feeder: str = "F") -> bytes:
    """The command stream printing one card's front in black."""
    if feeder not in ("F", "M", "B"):
        raise PrinterError("feeder is F (feeder), M (manual) or B (both)")
    return b"".join(
        (
            command("Pr;k"),  # ribbon: black (monochrome)
            command(f"Pmi;{feeder};s"),  # card insertion
            command(f"Pc;k;=;{CONTRAST}"),  # contrast of the black panel
            command("Ss"),  # sequence start
            command("Sr"),  # front side (recto)
            ESC + b"Db;k;2;" + raster(png) + CR,  # download the black panel, 2 levels
            command("Se"),  # sequence end: print and eject
        )
    )


@dataclass(frozen=True, slots=True)
class EvolisSettings:
    """[[printers]] of type evolis."""

    connection: str  # usb:0f49:PPPP, or file:PATH for a capture
    feeder: str = "F"  # F: card feeder, M: manual slot, B: both

    def __post_init__(self) -> None:
        parse_connection(self.connection)
        if self.feeder not in ("F", "M", "B"):
            raise ValueError("feeder must be F, M or B")


class EvolisPrinter:
    """An Evolis card printer (Primacy, Zenius and their relatives) over USB."""

    kind = "card"

    def __init__(self, name: str, transport: Transport, *, feeder: str = "F") -> None:
        self.name = name
        self.transport = transport
        self.feeder = feeder
        # Status replies are not read yet: the printer reports faults on its own panel.
        self.state = PrinterState.UNKNOWN

    @classmethod
    def from_settings(cls, name: str, settings: EvolisSettings) -> EvolisPrinter:
        """The printer a configuration entry describes."""
        return cls(name, parse_connection(settings.connection), feeder=settings.feeder)

    async def print(self, document: bytes) -> None:
        """Print one card side (a PNG from a card template)."""
        job = await asyncio.to_thread(evolis_job, document, feeder=self.feeder)
        await self.transport.write(job)

    async def status(self) -> PrinterState:
        """UNKNOWN: this driver does not read the printer's status yet."""
        return self.state

    async def close(self) -> None:
        """Release the transport."""
        await self.transport.close()


@dataclass(frozen=True, slots=True)
class CupsSettings:
    """[[printers]] of type cups."""

    queue: str  # the CUPS queue name (`lpstat -p` lists them)
    command: str = "lp"  # the lp client to run

    def __post_init__(self) -> None:
        if not self.queue or self.queue.startswith("-"):
            raise ValueError("queue must be a CUPS queue name")


class CupsPrinter:
    """A card printer with a CUPS driver: each card goes to `lp` as a PNG."""

    kind = "card"

    def __init__(self, name: str, queue: str, *, command: str = "lp") -> None:
        self.name = name
        self.queue = queue
        self.command = command
        self.state = PrinterState.UNKNOWN

    @classmethod
    def from_settings(cls, name: str, settings: CupsSettings) -> CupsPrinter:
        """The printer a configuration entry describes."""
        return cls(name, settings.queue, command=settings.command)

    async def print(self, document: bytes) -> None:
        """Hand one card side to CUPS; PrinterError if lp refuses it."""
        with tempfile.TemporaryDirectory(prefix="edge-card-") as folder:
            path = Path(folder) / "card.png"
            path.write_bytes(document)
            try:
                process = await asyncio.create_subprocess_exec(
                    self.command, "-d", self.queue, "-t", f"edge {self.name}", "--", str(path),
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )  # fmt: skip
            except OSError as err:
                raise PrinterError(
                    f"cannot run {self.command!r}: {err.strerror} (is cups-client installed?)",
                    device=self.name,
                ) from err
            try:
                out, err_out = await asyncio.wait_for(process.communicate(), LP_TIMEOUT)
            except TimeoutError:
                process.kill()
                await process.wait()
                raise PrinterError(
                    f"lp took longer than {LP_TIMEOUT:.0f} s", device=self.name
                ) from None
        if process.returncode != 0:
            message = (
                err_out.decode(errors="replace").strip() or f"exit status {process.returncode}"
            )
            raise PrinterError(f"lp refused the card: {message}", device=self.name)
        _LOGGER.info("%s: %s", self.name, out.decode(errors="replace").strip())

    async def status(self) -> PrinterState:
        """UNKNOWN: CUPS keeps the printer's state."""
        return self.state

    async def close(self) -> None:
        """Nothing is held open."""


def png_of(image: Image.Image) -> bytes:
    """An image as PNG bytes."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
