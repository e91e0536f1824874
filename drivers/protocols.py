"""The device kinds the core drives; real drivers and simulators implement them side by side."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

# Longest scan a driver passes on; longer input is cut here and rejected as malformed upstream.
MAX_SCAN_BYTES = 4096
# What a driver passes on for a read that cannot be a code (line noise, a malformed card UID):
# the core rejects it as malformed, so it is journaled and shown like any bad scan.
UNREADABLE = b"\x00"


class DeviceState(enum.Enum):
    """What a hardware driver knows about its device (drivers expose it as `state`)."""

    ABSENT = "absent"  # not plugged in or not found yet; the driver waits for it
    READY = "ready"  # open and working
    FAILED = "failed"  # present but the last operation failed; the driver retries


@dataclass(frozen=True, slots=True)
class ScanEvent:
    """One code read by a scanner, exactly as the device delivered it."""

    source: str  # the scanner's name in the configuration
    data: bytes  # raw bytes, terminator removed, at most MAX_SCAN_BYTES (+1 to flag overflow)
    at: float  # time.monotonic() when the read completed
    # Called with the outcome and display text once the lane has handled the scan, for
    # scanners that show the decision themselves (handheld apps); None for plain scanners.
    reply: Callable[[Outcome, str], None] | None = None


class ScanSource(Protocol):
    """A scanner: yields scans until closed; survives unplugging by waiting for the device."""

    name: str

    def scans(self) -> AsyncIterator[ScanEvent]:
        """Yield scans as they arrive; ends only when the source is closed."""
        ...

    async def close(self) -> None:
        """Release the device; a pending `scans()` iteration ends."""
        ...


class Outcome(enum.Enum):
    """What a gate shows and does for one decision."""

    ADMIT_ENTRY = "admit-entry"  # open the turnstile in the entry direction, green
    ADMIT_EXIT = "admit-exit"  # open the turnstile in the exit direction, green
    REJECT = "reject"  # stay closed, red, buzzer


class Actuator(Protocol):
    """A gate's turnstile/door with its lights and buzzer."""

    name: str

    async def signal(self, outcome: Outcome, text: str) -> None:
        """Carry out one outcome and show `text`; raise ActuatorError if the device failed."""
        ...

    async def close(self) -> None:
        """Release the device."""
        ...


class PrinterState(enum.Enum):
    """What a printer last told us about itself."""

    UNKNOWN = "unknown"  # not asked yet, or a one-way transport (file, CUPS)
    READY = "ready"  # answered a status request: idle and able to print
    BUSY = "busy"  # buffer full or printing
    PAPER_OUT = "paper-out"  # out of tickets or cards; needs a refill
    JAM = "jam"  # paper or cutter jam; needs staff
    HEAD_OPEN = "head-open"  # print head lifted; needs staff
    ERROR = "error"  # another fault the printer reported
    OFFLINE = "offline"  # not answering, unplugged or unreachable


class Printer(Protocol):
    """A ticket or card printer: prints one rendered document at a time."""

    name: str
    kind: str  # the template kind it prints: "ticket" or "card"
    state: PrinterState

    async def print(self, document: bytes) -> None:
        """Print one document; PaperOutError, PrinterAttentionError, PrintUncertainError or
        PrinterError (not sent: safe to retry) when it could not."""
        ...

    async def status(self) -> PrinterState:
        """Ask the printer how it is (UNKNOWN where it cannot tell)."""
        ...

    async def close(self) -> None:
        """Release the device."""
        ...
