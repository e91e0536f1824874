"""A BOCA ticket printer speaking FGL over any transport.

One ticket at a time: ask for status (<S1> is answered with X-ON only by a ready printer),
send the ticket, ask again; the second answer confirms the ticket left the printer. The
printer is put in purge mode (<PP>) when first opened, so a ticket it could not finish at paper
out is dropped rather than printed after the refill: the queue sends it again, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from drivers.printers import fgl
from drivers.printers.transports import Transport, parse_connection
from drivers.protocols import PrinterState
from edge.core.errors import (
    PaperOutError,
    PrinterAttentionError,
    PrinterError,
    PrintUncertainError,
)

_LOGGER = logging.getLogger(__name__)

STATUS_TIMEOUT = 2.0  # seconds a ready printer takes to answer <S1>
PRINT_TIMEOUT = 20.0  # seconds from the last byte of a ticket to its confirmation
BUSY_TIMEOUT = 30.0  # seconds to wait for a busy printer before giving up on this attempt
DRAIN_TIMEOUT = 0.05  # seconds to collect bytes the printer sent on its own

_NEEDS_STAFF = {
    PrinterState.JAM: "is jammed",
    PrinterState.HEAD_OPEN: "has its print head open",
    PrinterState.ERROR: "reports an error",
}


@dataclass(frozen=True, slots=True)
class BocaSettings:
    """[[printers]] of type boca."""

    connection: str  # usb:VVVV:PPPP, serial:DEVICE_OR_URL, tcp:HOST[:PORT] or file:PATH
    baudrate: int = 9600  # serial only

    def __post_init__(self) -> None:
        parse_connection(self.connection, baudrate=self.baudrate)  # ValueError names the problem


class BocaPrinter:
    """A BOCA printer (FGL46/44/42 and their 2x variants)."""

    kind = "ticket"

    def __init__(
        self,
        name: str,
        transport: Transport,
        *,
        status_timeout: float = STATUS_TIMEOUT,
        print_timeout: float = PRINT_TIMEOUT,
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> None:
        self.name = name
        self.transport = transport
        self.state = PrinterState.UNKNOWN
        self.printed = 0
        self._status_timeout = status_timeout
        self._print_timeout = print_timeout
        self._busy_timeout = busy_timeout
        self._prepared = False

    @classmethod
    def from_settings(cls, name: str, settings: BocaSettings) -> BocaPrinter:
        """The printer a configuration entry describes."""
        return cls(name, parse_connection(settings.connection, baudrate=settings.baudrate))

    async def _drain(self) -> None:
        data = await self.transport.read(DRAIN_TIMEOUT)
        while data:
            self._absorb(data)
            data = await self.transport.read(DRAIN_TIMEOUT)

    def _absorb(self, data: bytes) -> None:
        if fgl.POWER_ON in data:
            self._prepared = False  # purge mode lasts until power off: set it again
        status = fgl.parse_status(data, self.state)
        self.printed += status.printed
        if status.state is not self.state:
            _LOGGER.info("%s: printer %s", self.name, status.state.value)
        self.state = status.state
        if _LOGGER.isEnabledFor(logging.DEBUG):
            _LOGGER.debug("%s: status bytes %s", self.name, data.hex(" "))

    async def _ask(self, within: float, *, printed: int | None = None) -> PrinterState:
        """Send <S1> and wait for X-ON or a fault byte; OFFLINE if nothing answers.

        With `printed` (the ACK count before a ticket was sent), an ACK for it also ends the
        wait: printers with a ticket-taken sensor answer only once the ticket is taken.
        """
        await self.transport.write(fgl.STATUS_REQUEST)
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            data = await self.transport.read(left)
            if not data:
                continue
            self._absorb(data)
            if printed is not None and self.printed > printed:
                return self.state
            if any(byte in fgl.ANSWERS for byte in data) and self.state is not PrinterState.BUSY:
                return self.state
        if self.state not in READY_OR_FAULT or self.state is PrinterState.READY:
            # Silence: a faulted printer stays silent after its fault byte; anything else
            # that does not answer is unplugged, off, or hung.
            self.state = PrinterState.OFFLINE
        return self.state

    async def status(self) -> PrinterState:
        """The printer's state now (UNKNOWN on a one-way transport)."""
        if not self.transport.two_way:
            return self.state
        try:
            await self._drain()
            await self._prepare()
            return await self._ask(self._status_timeout)
        except PrinterError:
            self.state = PrinterState.OFFLINE
            self._prepared = False
            return self.state

    async def _prepare(self) -> None:
        if not self._prepared:
            await self.transport.write(fgl.PURGE_ON_PAPER_OUT)
            self._prepared = True

    def _raise_for(self, state: PrinterState, *, sent: bool) -> None:
        if state is PrinterState.PAPER_OUT:
            # Before sending: nothing went out. After: purge mode dropped the ticket.
            raise PaperOutError("out of tickets; refill the printer", device=self.name)
        what = _NEEDS_STAFF.get(state)
        if sent:
            # A jam after the ticket went out may come after it printed: never resend.
            happened = f"then the printer {what}" if what else f"no confirmation ({state.value})"
            raise PrintUncertainError(
                f"sent, but {happened}; check whether the ticket printed", device=self.name
            )
        if what:
            raise PrinterAttentionError(f"{what}; staff must clear it", device=self.name)
        raise PrinterError(f"not ready ({state.value})", device=self.name)

    async def print(self, document: bytes) -> None:
        """Print one ticket's FGL; the errors say whether it may have printed."""
        if not self.transport.two_way:
            await self.transport.write(document)
            return
        try:
            await self._drain()
            await self._prepare()
            state = await self._ask(self._status_timeout)
            deadline = time.monotonic() + self._busy_timeout
            asked = 1
            while (
                state in (PrinterState.BUSY, PrinterState.OFFLINE) and time.monotonic() < deadline
            ):
                state = await self._ask(self._status_timeout)
                asked += 1
            if asked > 1 and state is PrinterState.READY:
                # A late answer to an earlier <S1> must not pass for the ticket's confirmation.
                await self._drain()
        except PrinterError:
            self.state = PrinterState.OFFLINE
            self._prepared = False
            raise
        if state is not PrinterState.READY:
            self._raise_for(state, sent=False)
        before = self.printed
        try:
            await self.transport.write(document)
        except PrinterError as err:
            self.state = PrinterState.OFFLINE
            self._prepared = False
            raise PrintUncertainError(
                f"the connection failed while sending: {err}", device=self.name
            ) from err
        try:
            state = await self._ask(self._print_timeout, printed=before)
        except PrinterError as err:
            self.state = PrinterState.OFFLINE
            self._prepared = False
            raise PrintUncertainError(
                f"sent, then the printer went away: {err}", device=self.name
            ) from err
        if self.printed > before:
            return  # the printer acknowledged the ticket (ACK)
        if state is not PrinterState.READY:
            # Purge mode drops the unfinished ticket at paper out: it is safe to send again.
            self._raise_for(state, sent=True)

    async def close(self) -> None:
        """Release the transport."""
        await self.transport.close()


READY_OR_FAULT = frozenset(
    {
        PrinterState.READY,
        PrinterState.PAPER_OUT,
        PrinterState.JAM,
        PrinterState.HEAD_OPEN,
        PrinterState.ERROR,
    }
)


async def wait_ready(printer: BocaPrinter, interval: float, stop: asyncio.Event) -> None:
    """Poll until the printer is ready or `stop` is set."""
    while not stop.is_set() and await printer.status() is not PrinterState.READY:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
