"""drivers.scanners.hid: the evdev reader on a device node, unplugging, card readers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import until
from keyboards import FakeKeyDevice, keystrokes

from drivers.protocols import UNREADABLE, DeviceState, ScanEvent
from drivers.scanners.hid import HidScanner, HidScannerSettings, open_evdev
from drivers.scanners.keymap import DE, US

SETTINGS = HidScannerSettings(path="/dev/input/by-id/usb-Scanner-event-kbd")


class Plugged:
    """An open_device that returns the given devices (None: not plugged in) in turn."""

    def __init__(self, *devices: FakeKeyDevice | None) -> None:
        self._queue = list(devices)
        self.opened: asyncio.Queue[FakeKeyDevice] = asyncio.Queue()  # devices handed out

    def __call__(self) -> FakeKeyDevice | None:
        device = self._queue.pop(0) if self._queue else None
        if device is not None:
            self.opened.put_nowait(device)
        return device


def plugged(*devices: FakeKeyDevice | None) -> Callable[[], FakeKeyDevice | None]:
    return Plugged(*devices)


async def take(scans: AsyncIterator[ScanEvent], n: int) -> list[bytes]:
    return [(await anext(scans)).data for _ in range(n)]


async def test_scans_in_us_and_german_layouts() -> None:
    for layout, text in ((US, "EDGE:AB-/zy"), (DE, "EDGE:AB-/zyß")):
        device = FakeKeyDevice()
        settings = HidScannerSettings(path=device.path, layout=layout.name)
        scanner = HidScanner("s", settings, open_device=plugged(device))
        scans = scanner.scans()
        device.send(keystrokes(layout, text) + keystrokes(layout, "SECOND", start=1001))
        assert await take(scans, 2) == [text.encode(), b"SECOND"]
        assert device.grabbed
        assert scanner.state is DeviceState.READY
        await scanner.close()
        assert await anext(scans, None) is None
        assert device.closed


async def test_waits_for_device_and_survives_unplug_mid_scan(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = FakeKeyDevice(), FakeKeyDevice()
    opener = Plugged(None, None, first, None, second)
    scanner = HidScanner("s", SETTINGS, open_device=opener, poll_seconds=0.001)
    scans = scanner.scans()
    pending = asyncio.ensure_future(anext(scans))
    assert await opener.opened.get() is first
    events = keystrokes(US, "HALF-SCAN")
    first.send(events[: len(events) // 2])
    first.unplug()
    assert await opener.opened.get() is second
    assert first.closed
    assert scanner.unplugged == 1
    assert "went away (No such device); dropped an unfinished scan" in caplog.text
    # Event times continue without a gap: only the reset on unplugging drops "HALF-".
    second.send(keystrokes(US, "WHOLE", start=1000.1))
    assert (await pending).data == b"WHOLE"
    assert scanner.unplugged == 1
    await scanner.close()


async def test_timeout_terminator_ends_scan_after_pause() -> None:
    device = FakeKeyDevice()
    settings = HidScannerSettings(path=device.path, terminator="timeout", timeout_ms=20)
    scanner = HidScanner("s", settings, open_device=plugged(device))
    scans = scanner.scans()
    device.send(keystrokes(US, "NO-ENTER", end=0))
    assert await take(scans, 1) == [b"NO-ENTER"]
    await scanner.close()


async def test_enter_scanner_drops_unfinished_scan_after_pause() -> None:
    device = FakeKeyDevice()
    settings = HidScannerSettings(path=device.path, timeout_ms=20)
    scanner = HidScanner("s", settings, open_device=plugged(device))
    scans = scanner.scans()
    device.send(keystrokes(US, "CUT", end=0, start=1000.0))
    pending = asyncio.ensure_future(anext(scans))
    # Real time passes beyond the timeout: the reader reads "CUT", then its timer drops it.
    decoder = scanner._decoder
    await until(lambda: decoder.pending, "the reader to read the unfinished scan")
    await until(lambda: not decoder.pending, "the reader's timer to drop it")
    # Event times continue as if no pause happened: only the timer can have dropped "CUT".
    device.send(keystrokes(US, "NEXT", start=1000.02))
    assert (await pending).data == b"NEXT"
    await scanner.close()


@pytest.mark.parametrize(
    ("typed", "uid", "order", "expected"),
    [
        ("3735928559", "decimal", "as-read", b"EFBEADDE"),  # 0xDEADBEEF read little-endian
        ("3735928559", "decimal", "reversed", b"DEADBEEF"),
        ("04a1b2c3d4e580", "hex", "as-read", b"04A1B2C3D4E580"),
        ("04:A1:B2:C3", "hex", "reversed", b"C3B2A104"),
        ("XYZ", "hex", "as-read", UNREADABLE),
    ],
)
async def test_nfc_reader_uids(typed: str, uid: str, order: str, expected: bytes) -> None:
    device = FakeKeyDevice()
    settings = HidScannerSettings(path=device.path, uid=uid, uid_order=order)
    scanner = HidScanner("nfc", settings, open_device=plugged(device))
    scans = scanner.scans()
    device.send(keystrokes(US, typed))
    assert await take(scans, 1) == [expected]
    await scanner.close()


async def test_grab_refused_is_retried() -> None:
    class Busy(FakeKeyDevice):
        def grab(self) -> None:
            raise OSError(16, "Device or resource busy")

    busy, good = Busy(), FakeKeyDevice()
    opener = Plugged(busy, good)
    scanner = HidScanner("s", SETTINGS, open_device=opener, poll_seconds=0.001)
    scans = scanner.scans()
    good_scan = asyncio.ensure_future(anext(scans))
    assert await opener.opened.get() is busy
    assert await opener.opened.get() is good
    assert busy.closed
    good.send(keystrokes(US, "OK"))
    assert (await good_scan).data == b"OK"
    await scanner.close()


def test_missing_evdev_device_is_absent(tmp_path: Path) -> None:
    assert open_evdev(HidScannerSettings(path=str(tmp_path / "no-such-event"))) is None
    # No input device of this vendor/product on a test machine.
    assert open_evdev(HidScannerSettings(vendor="ffff", product="fffe")) is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "give path, or vendor and product"),
        ({"path": "/x", "vendor": "05e0", "product": "1200"}, "not both"),
        ({"vendor": "5e0", "product": "1200"}, "vendor must be 4 hex digits"),
        ({"path": "/x", "layout": "uk"}, "layout must be one of us, de, ch, fr"),
        ({"path": "/x", "terminator": "cr"}, "terminator"),
        ({"path": "/x", "uid": "dec"}, "uid must be"),
        ({"path": "/x", "uid_order": "lsb"}, "uid_order"),
        ({"path": "/x", "max_length": 0}, "max_length"),
    ],
)
def test_bad_settings(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HidScannerSettings(**settings)
