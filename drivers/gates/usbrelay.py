"""USB HID relay boards ("USBRelay1/2/4/8", dcttech, 16c0:05df) driven through pyusb.

The boards are HID devices without HID reports of interest: commands are 8-byte feature
reports sent with a class SET_REPORT control request, and the state is read back with
GET_REPORT. Codec here, device below. Each command is verified by reading the state back, so
a board that stops answering or a relay that did not switch is an ActuatorError.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any

import usb.core
import usb.util

from drivers.gates.relay import RelayActuator, gate_inputs
from drivers.gates.signals import SignalSettings
from drivers.protocols import DeviceState
from edge.core.errors import ActuatorError

_LOGGER = logging.getLogger(__name__)

VENDOR_ID = 0x16C0  # V-USB shared id (Van Ooijen Technische Informatica)
PRODUCT_ID = 0x05DF  # "USBRelayN" HID relay boards
USB_TIMEOUT_MS = 200  # a control transfer takes ~1 ms; longer means the board hung

# HID class requests (USB HID 1.11, 7.2) on interface 0, feature report 0.
SET_REPORT = (0x21, 0x09, 0x0300, 0)  # bmRequestType, bRequest, wValue, wIndex
GET_REPORT = (0xA1, 0x01, 0x0300, 0)
REPORT_BYTES = 8
ON, OFF, ALL_ON, ALL_OFF = 0xFF, 0xFD, 0xFE, 0xFC  # first byte of a command report
_PRODUCT = re.compile(r"USBRelay([1-8])\Z")


def command(channel: int, *, on: bool) -> bytes:
    """The feature report that switches one relay (1-based)."""
    return bytes([ON if on else OFF, channel, 0, 0, 0, 0, 0, 0])


@dataclass(frozen=True, slots=True)
class BoardState:
    """A GET_REPORT answer: the board's id and its relays."""

    serial: str  # five ASCII characters, set at manufacture
    relays: int  # bit n-1: relay n is on

    @classmethod
    def from_bytes(cls, report: bytes) -> BoardState:
        """Parse the 8-byte report; ValueError if it is not one."""
        if len(report) != REPORT_BYTES:
            raise ValueError(f"state report of {len(report)} bytes, expected {REPORT_BYTES}")
        serial = report[:5].rstrip(b"\x00").decode("ascii", "replace")
        return cls(serial, report[7])

    def is_on(self, channel: int) -> bool:
        """Relay `channel` (1-based) is on."""
        return bool(self.relays >> (channel - 1) & 1)


class HidRelayBoard:
    """One HID relay board, found by vendor/product id (and serial when given)."""

    def __init__(
        self, name: str, *, serial: str = "", channels: int = 1, backend: Any = None
    ) -> None:
        self.name = name
        self._serial = serial
        self._channels = channels
        self._backend = backend  # None: pyusb's default (libusb)
        self._device: Any = None
        self._lock = asyncio.Lock()
        self.state = DeviceState.ABSENT

    def _open(self) -> Any:
        wanted = f" with serial {self._serial}" if self._serial else ""
        found = usb.core.find(
            find_all=True, idVendor=VENDOR_ID, idProduct=PRODUCT_ID, backend=self._backend
        )
        for device in found:
            try:
                if device.is_kernel_driver_active(0):
                    device.detach_kernel_driver(0)  # usbhid binds it; we talk to it directly
            except NotImplementedError:
                pass  # backends without kernel drivers
            usb.util.claim_interface(device, 0)
            state = self._state(device)
            if self._serial and state.serial != self._serial:
                usb.util.dispose_resources(device)
                continue
            product = usb.util.get_string(device, device.iProduct) or ""
            match = _PRODUCT.match(product)
            if match and int(match[1]) < self._channels:
                usb.util.dispose_resources(device)
                raise ActuatorError(
                    f"board {state.serial} is a {product}, configured for {self._channels} relays",
                    device=self.name,
                )
            _LOGGER.info("%s: USB relay board %s (%s)", self.name, state.serial, product)
            return device
        raise ActuatorError(
            f"no USB HID relay board {VENDOR_ID:04x}:{PRODUCT_ID:04x}{wanted} is plugged in",
            device=self.name,
        )

    @staticmethod
    def _state(device: Any) -> BoardState:
        report = device.ctrl_transfer(*GET_REPORT, REPORT_BYTES, timeout=USB_TIMEOUT_MS)
        return BoardState.from_bytes(bytes(report))

    def _switch(self, channel: int, on: bool) -> None:
        if self._device is None:
            self._device = self._open()
        device = self._device
        device.ctrl_transfer(*SET_REPORT, command(channel, on=on), timeout=USB_TIMEOUT_MS)
        if self._state(device).is_on(channel) != on:
            raise ActuatorError(
                f"relay {channel} did not switch {'on' if on else 'off'}", device=self.name
            )

    async def switch(self, channel: int, *, on: bool) -> None:
        """Switch one relay and check it did; ActuatorError if not."""
        async with self._lock:
            try:
                # Off the loop: a hung board blocks for the USB timeout.
                await asyncio.to_thread(self._switch, channel, on)
            except (usb.core.USBError, usb.core.NoBackendError, ValueError, ActuatorError) as err:
                self._release()
                self.state = DeviceState.FAILED if self.state is DeviceState.READY else self.state
                if isinstance(err, ActuatorError):
                    raise
                raise ActuatorError(f"USB relay board: {err}", device=self.name) from err
        self.state = DeviceState.READY

    def _release(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            try:
                usb.util.dispose_resources(device)
            except usb.core.USBError as err:
                _LOGGER.debug("%s: releasing: %s", self.name, err)

    async def close(self) -> None:
        """Release the board."""
        async with self._lock:
            self._release()


@dataclass(frozen=True, slots=True)
class HidRelaySettings(SignalSettings):
    """Configuration of a USB HID relay board."""

    serial: str = ""  # the board's 5-character id (several boards on one device); "" any

    def __post_init__(self) -> None:
        SignalSettings.__post_init__(self)
        if len(self.serial) > 5 or not self.serial.isascii():
            raise ValueError("serial must be the board's id: up to 5 ASCII characters")


def hid_relay(name: str, settings: HidRelaySettings, *, backend: Any = None) -> RelayActuator:
    """A relay gate on a USB HID relay board (the registry's factory)."""
    board = HidRelayBoard(name, serial=settings.serial, channels=settings.channels, backend=backend)
    return RelayActuator(name, board, settings, inputs=gate_inputs(name, settings))
