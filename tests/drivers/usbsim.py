"""USB HID relay boards simulated under pyusb: a backend implementing usb.backend.IBackend.

pyusb's own find(), claim_interface() and ctrl_transfer() run against it; the simulated board
answers the real requests: standard GET_DESCRIPTOR for its strings, HID SET_REPORT commands
(FF/FD/FE/FC + relay) and GET_REPORT with its serial and relay bits.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import usb.backend
import usb.core


@dataclass
class SimBoard:
    """One board: id, relays, and what goes wrong with it."""

    serial: str = "QAAMZ"
    channels: int = 2
    relays: int = 0  # bit n-1: relay n on
    plugged: bool = True
    hung: bool = False  # every transfer times out
    stuck: bool = False  # commands are acknowledged but relays do not move
    kernel_driver: bool = True  # usbhid bound, as on a real system
    claimed: set[int] = field(default_factory=set)
    commands: list[bytes] = field(default_factory=list)  # SET_REPORT payloads received
    address: int = 5


def _string_descriptor(text: str) -> bytes:
    data = text.encode("utf-16-le")
    return bytes([2 + len(data), 3]) + data


class RelayBackend(usb.backend.IBackend):  # type: ignore[misc]
    """The USB bus with the given boards on it."""

    def __init__(self, *boards: SimBoard) -> None:
        self.boards = list(boards)

    def enumerate_devices(self) -> Any:
        return [b for b in self.boards if b.plugged]

    def get_device_descriptor(self, dev: SimBoard) -> Any:
        return SimpleNamespace(
            bLength=18, bDescriptorType=1, bcdUSB=0x0110, bDeviceClass=0, bDeviceSubClass=0,
            bDeviceProtocol=0, bMaxPacketSize0=8, idVendor=0x16C0, idProduct=0x05DF,
            bcdDevice=0x0100, iManufacturer=1, iProduct=2, iSerialNumber=0,
            bNumConfigurations=1, address=dev.address, bus=1, port_number=2,
            port_numbers=(2,), speed=usb.util.SPEED_LOW,
        )  # fmt: skip

    def get_configuration_descriptor(self, dev: SimBoard, config: int) -> Any:
        return SimpleNamespace(
            bLength=9, bDescriptorType=2, wTotalLength=34, bNumInterfaces=1,
            bConfigurationValue=1, iConfiguration=0, bmAttributes=0x80, bMaxPower=10,
            extra_descriptors=[],
        )  # fmt: skip

    def get_interface_descriptor(self, dev: SimBoard, intf: int, alt: int, config: int) -> Any:
        return SimpleNamespace(
            bLength=9, bDescriptorType=4, bInterfaceNumber=0, bAlternateSetting=0,
            bNumEndpoints=1, bInterfaceClass=3, bInterfaceSubClass=0, bInterfaceProtocol=0,
            iInterface=0, extra_descriptors=[],
        )  # fmt: skip

    def get_endpoint_descriptor(
        self, dev: SimBoard, ep: int, intf: int, alt: int, config: int
    ) -> Any:
        return SimpleNamespace(
            bLength=7, bDescriptorType=5, bEndpointAddress=0x81, bmAttributes=3,
            wMaxPacketSize=8, bInterval=20, bRefresh=0, bSynchAddress=0, extra_descriptors=[],
        )  # fmt: skip

    def _check(self, board: SimBoard) -> None:
        if not board.plugged:
            raise usb.core.USBError("No such device", -4, errno.ENODEV)
        if board.hung:
            raise usb.core.USBError("Operation timed out", -7, errno.ETIMEDOUT)

    def open_device(self, dev: SimBoard) -> SimBoard:
        self._check(dev)
        return dev

    def close_device(self, dev_handle: SimBoard) -> None:
        dev_handle.claimed.clear()

    def set_configuration(self, dev_handle: SimBoard, config_value: int) -> None:
        self._check(dev_handle)

    def get_configuration(self, dev_handle: SimBoard) -> int:
        return 1

    def claim_interface(self, dev_handle: SimBoard, intf: int) -> None:
        self._check(dev_handle)
        if dev_handle.kernel_driver:
            raise usb.core.USBError("Resource busy", -6, errno.EBUSY)
        dev_handle.claimed.add(intf)

    def release_interface(self, dev_handle: SimBoard, intf: int) -> None:
        dev_handle.claimed.discard(intf)

    def is_kernel_driver_active(self, dev_handle: SimBoard, intf: int) -> bool:
        return dev_handle.kernel_driver

    def detach_kernel_driver(self, dev_handle: SimBoard, intf: int) -> None:
        dev_handle.kernel_driver = False

    def ctrl_transfer(
        self,
        dev_handle: SimBoard,
        bmRequestType: int,  # noqa: N803 - IBackend's parameter names
        bRequest: int,  # noqa: N803
        wValue: int,  # noqa: N803
        wIndex: int,  # noqa: N803
        data: Any,
        timeout: int,
    ) -> int:
        board = dev_handle
        self._check(board)
        request = (bmRequestType, bRequest)
        if request == (0x80, 0x06) and wValue >> 8 == 3:  # GET_DESCRIPTOR, string
            index = wValue & 0xFF
            strings = {0: b"\x04\x03\x09\x04", 1: _string_descriptor("www.dcttech.com"),
                       2: _string_descriptor(f"USBRelay{board.channels}")}  # fmt: skip
            answer = strings.get(index, b"")
            n = min(len(answer), len(data))
            data[:n] = type(data)(data.typecode, answer[:n])
            return n
        if (bmRequestType, bRequest, wValue) == (0x21, 0x09, 0x0300):  # SET_REPORT, feature
            payload = bytes(data)
            board.commands.append(payload)
            if not board.stuck:
                mask = (1 << board.channels) - 1
                if payload[0] == 0xFE:
                    board.relays = mask
                elif payload[0] == 0xFC:
                    board.relays = 0
                elif payload[0] in (0xFF, 0xFD) and 1 <= payload[1] <= board.channels:
                    bit = 1 << (payload[1] - 1)
                    board.relays = board.relays | bit if payload[0] == 0xFF else board.relays & ~bit
            return len(data)
        if (bmRequestType, bRequest, wValue) == (0xA1, 0x01, 0x0300):  # GET_REPORT, feature
            report = board.serial.encode().ljust(5, b"\x00") + bytes([0, 0, board.relays])
            n = min(len(report), len(data))
            data[:n] = type(data)(data.typecode, report[:n])
            return n
        raise usb.core.USBError("Pipe error", -9, errno.EPIPE)
