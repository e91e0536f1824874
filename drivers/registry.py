"""Which driver class a configuration `type` names.

Each driver type has a settings dataclass (frozen; its fields are the configuration keys, with
defaults for optional ones; `__post_init__` raises ValueError naming a bad value) and a factory
that builds the device from its configured name and settings. The configuration loader checks
keys and types against the dataclass, so drivers never see unvalidated input.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from drivers.protocols import Actuator, Printer, ScanSource

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DriverType(Generic[T]):
    """A configurable driver: the module that holds it, its settings class and factory.

    The module is imported when the configuration names the type, not before, so a gate
    loads only its own drivers (no printer code, no imaging, no HTTP server it does not use).
    """

    module: str
    settings_name: str
    build_name: str
    summary: str

    @property
    def settings(self) -> type[Any]:
        """The settings dataclass (imports the driver's module)."""
        settings: type[Any] = getattr(importlib.import_module(self.module), self.settings_name)
        return settings

    @property
    def build(self) -> Callable[[str, Any], T]:
        """The factory: (configured name, settings) -> device (imports the driver's module)."""
        factory = importlib.import_module(self.module)
        for part in self.build_name.split("."):
            factory = getattr(factory, part)
        return factory  # type: ignore[return-value]


SCANNERS: dict[str, DriverType[ScanSource]] = {
    "lines": DriverType(
        "drivers.scanners.lines",
        "LineScannerSettings",
        "LineScanner",
        "one code per line from a file, FIFO or stdin ('-')",
    ),
    "hid": DriverType(
        "drivers.scanners.hid",
        "HidScannerSettings",
        "HidScanner",
        "keyboard-wedge scanner or NFC reader (evdev, grabbed)",
    ),
    "serial": DriverType(
        "drivers.scanners.serialline",
        "SerialScannerSettings",
        "SerialScanner",
        "scanner or NFC reader sending lines over serial",
    ),
    "pcsc": DriverType(
        "drivers.scanners.pcsc",
        "PcscSettings",
        "PcscReader",
        "PC/SC contactless reader through pcscd: card chip UIDs",
    ),
    "handheld": DriverType(
        "drivers.scanners.handheld",
        "HandheldSettings",
        "HandheldScanner",
        "handheld app posting codes over HTTP (own port)",
    ),
}

ACTUATORS: dict[str, DriverType[Actuator]] = {
    "console": DriverType(
        "drivers.gates.console",
        "ConsoleActuatorSettings",
        "ConsoleActuator",
        "prints outcomes to the terminal (demo, tests)",
    ),
    "serial-relay": DriverType(
        "drivers.gates.relay",
        "SerialRelaySettings",
        "serial_relay",
        "LCUS-type USB-serial relay board (A0 01 01 A2 frames)",
    ),
    "none": DriverType(
        "drivers.gates.null",
        "NullActuatorSettings",
        "NullActuator",
        "no turnstile (a handheld scanner's lane)",
    ),
    "hid-relay": DriverType(
        "drivers.gates.usbrelay",
        "HidRelaySettings",
        "hid_relay",
        "USB HID relay board 16c0:05df (USBRelay1/2/4/8), via pyusb",
    ),
}

PRINTERS: dict[str, DriverType[Printer]] = {
    "boca": DriverType(
        "drivers.printers.boca",
        "BocaSettings",
        "BocaPrinter.from_settings",
        "BOCA ticket printer (FGL) on USB, serial, TCP or file",
    ),
    "evolis": DriverType(
        "drivers.printers.card",
        "EvolisSettings",
        "EvolisPrinter.from_settings",
        "Evolis card printer (escape commands) on USB",
    ),
    "cups": DriverType(
        "drivers.printers.card",
        "CupsSettings",
        "CupsPrinter.from_settings",
        "card printer with a CUPS driver (lp)",
    ),
}
