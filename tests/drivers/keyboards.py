"""A keyboard-wedge scanner at the hardware boundary: real evdev.InputEvents, a real fd.

`FakeKeyDevice` has what drivers.scanners.hid reads from an evdev.InputDevice: a file
descriptor the event loop watches (a pipe here), `read()` returning pending InputEvents or
raising BlockingIOError, and OSError(ENODEV) once "unplugged", as the kernel does.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections import deque
from collections.abc import Iterator, Sequence

from evdev import InputEvent
from evdev import ecodes as e

from drivers.scanners.keymap import Layout


def keystrokes(
    layout: Layout, text: str, *, start: float = 1000.0, gap: float = 0.001, end: int = e.KEY_ENTER
) -> list[InputEvent]:
    """The events a scanner set to `layout` sends for `text`, keys `gap` seconds apart."""
    events: list[InputEvent] = []
    t = start

    def emit(code: int, value: int) -> None:
        nonlocal t
        sec, usec = int(t), round((t - int(t)) * 1_000_000)
        events.append(InputEvent(sec, usec, e.EV_MSC, e.MSC_SCAN, 0x70000 + code))
        events.append(InputEvent(sec, usec, e.EV_KEY, code, value))
        events.append(InputEvent(sec, usec, e.EV_SYN, e.SYN_REPORT, 0))
        t += gap

    strokes = layout.strokes(text)
    if end:
        strokes.append((end, False, False))
    for code, shift, altgr in strokes:
        if shift:
            emit(e.KEY_LEFTSHIFT, 1)
        if altgr:
            emit(e.KEY_RIGHTALT, 1)
        emit(code, 1)
        emit(code, 0)
        if altgr:
            emit(e.KEY_RIGHTALT, 0)
        if shift:
            emit(e.KEY_LEFTSHIFT, 0)
    return events


def recorded(rows: Sequence[tuple[float, int, int]]) -> list[InputEvent]:
    """Events from (milliseconds, key code, value) rows as `evtest` lists them."""
    out = []
    for ms, code, value in rows:
        sec, usec = divmod(round(1_700_000_000_000_000 + ms * 1000), 1_000_000)
        out.append(InputEvent(sec, usec, e.EV_KEY, code, value))
        out.append(InputEvent(sec, usec, e.EV_SYN, e.SYN_REPORT, 0))
    return out


class FakeKeyDevice:
    """An input device node: events become readable on a pipe; unplug() makes reads fail."""

    def __init__(self, path: str = "/dev/input/by-id/usb-Scanner-event-kbd") -> None:
        self.path = path
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        self._events: deque[InputEvent] = deque()
        self._gone = False
        self.grabbed = False
        self.closed = False

    def fileno(self) -> int:
        return self._r

    def grab(self) -> None:
        self.grabbed = True

    def send(self, events: Sequence[InputEvent]) -> None:
        """The device produces events."""
        self._events.extend(events)
        os.write(self._w, b".")

    def unplug(self) -> None:
        """The kernel removes the device: the fd becomes readable, reads fail with ENODEV."""
        self._gone = True
        os.write(self._w, b".")

    def read(self) -> Iterator[InputEvent]:
        with contextlib.suppress(BlockingIOError):
            os.read(self._r, 4096)
        if not self._events and not self._gone:
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        while self._events:
            yield self._events.popleft()
        if self._gone:  # queued events first, then the error, as the kernel does
            raise OSError(errno.ENODEV, "No such device")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self._r)
            os.close(self._w)
