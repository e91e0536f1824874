"""Which driver class a configuration `type` names.

Each driver type has a settings dataclass (frozen; its fields are the configuration keys, with
defaults for optional ones; `__post_init__` raises ValueError naming a bad value) and a factory
that builds the device from its configured name and settings. The configuration loader checks
keys and types against the dataclass, so drivers never see unvalidated input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from drivers.gates.console import ConsoleActuator, ConsoleActuatorSettings
from drivers.gates.null import NullActuator, NullActuatorSettings
from drivers.gates.relay import SerialRelaySettings, serial_relay
from drivers.gates.usbrelay import HidRelaySettings, hid_relay
from drivers.printers.boca import BocaPrinter, BocaSettings
from drivers.printers.card import CupsPrinter, CupsSettings, EvolisPrinter, EvolisSettings
from drivers.protocols import Actuator, Printer, ScanSource
from drivers.scanners.handheld import HandheldScanner, HandheldSettings
from drivers.scanners.hid import HidScanner, HidScannerSettings
from drivers.scanners.lines import LineScanner, LineScannerSettings
from drivers.scanners.pcsc import PcscReader, PcscSettings
from drivers.scanners.serialline import SerialScanner, SerialScannerSettings

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DriverType(Generic[T]):
    """A configurable driver: its settings class and how to build it."""

    settings: type[Any]
    build: Callable[[str, Any], T]
    summary: str


SCANNERS: dict[str, DriverType[ScanSource]] = {
    "lines": DriverType(
        LineScannerSettings, LineScanner, "one code per line from a file, FIFO or stdin ('-')"
    ),
    "hid": DriverType(
        HidScannerSettings, HidScanner, "keyboard-wedge scanner or NFC reader (evdev, grabbed)"
    ),
    "serial": DriverType(
        SerialScannerSettings, SerialScanner, "scanner or NFC reader sending lines over serial"
    ),
    "pcsc": DriverType(
        PcscSettings, PcscReader, "PC/SC contactless reader through pcscd: card chip UIDs"
    ),
    "handheld": DriverType(
        HandheldSettings, HandheldScanner, "handheld app posting codes over HTTP (own port)"
    ),
}

ACTUATORS: dict[str, DriverType[Actuator]] = {
    "console": DriverType(
        ConsoleActuatorSettings, ConsoleActuator, "prints outcomes to the terminal (demo, tests)"
    ),
    "serial-relay": DriverType(
        SerialRelaySettings, serial_relay, "LCUS-type USB-serial relay board (A0 01 01 A2 frames)"
    ),
    "none": DriverType(
        NullActuatorSettings, NullActuator, "no turnstile (a handheld scanner's lane)"
    ),
    "hid-relay": DriverType(
        HidRelaySettings, hid_relay, "USB HID relay board 16c0:05df (USBRelay1/2/4/8), via pyusb"
    ),
}

PRINTERS: dict[str, DriverType[Printer]] = {
    "boca": DriverType(
        BocaSettings,
        BocaPrinter.from_settings,
        "BOCA ticket printer (FGL) on USB, serial, TCP or file",
    ),
    "evolis": DriverType(
        EvolisSettings, EvolisPrinter.from_settings, "Evolis card printer (escape commands) on USB"
    ),
    "cups": DriverType(
        CupsSettings, CupsPrinter.from_settings, "card printer with a CUPS driver (lp)"
    ),
}
