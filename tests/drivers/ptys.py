"""Serial devices simulated on real pseudo-terminal pairs, so the real pyserial code runs.

The driver opens the slave side by path (through a symlink, like /dev/edge/scanner-...);
the simulator owns the master side. Unplugging closes the master: the driver's reads and
writes fail with EIO, as with a USB-serial adapter pulled out. Re-plugging makes a new pair
and points the symlink at it.
"""

from __future__ import annotations

import asyncio
import os
import tty
from pathlib import Path


class PtyDevice:
    """The device end of a serial line, at a stable path."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master = -1
        self._slave = -1
        self.plug()

    @property
    def url(self) -> str:
        return str(self.link)

    def plug(self) -> None:
        """A (new) device appears at the link."""
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo or line editing before the driver opens it
        os.set_blocking(self.master, False)
        self.link.unlink(missing_ok=True)
        self.link.symlink_to(os.ttyname(self._slave))

    def unplug(self) -> None:
        """The device goes away: the port's reads and writes fail."""
        os.close(self.master)
        os.close(self._slave)
        self.master = self._slave = -1
        self.link.unlink(missing_ok=True)

    def send(self, data: bytes) -> None:
        """The device transmits (all of `data`, waiting while the line is full)."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.master, view) :]
            except BlockingIOError:
                os.set_blocking(self.master, True)
                view = view[os.write(self.master, view[:1]) :]
                os.set_blocking(self.master, False)

    def received(self) -> bytes:
        """What the host sent to the device so far (without waiting)."""
        out = bytearray()
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except (BlockingIOError, OSError):
                return bytes(out)
            if not chunk:
                return bytes(out)
            out += chunk

    async def receive(self, size: int) -> bytes:
        """Exactly `size` bytes the host sends, waiting for them on the event loop."""
        loop = asyncio.get_running_loop()
        out = bytearray()
        ready = asyncio.Event()
        loop.add_reader(self.master, ready.set)
        try:
            while len(out) < size:
                await ready.wait()
                ready.clear()
                try:
                    out += os.read(self.master, size - len(out))
                except BlockingIOError:
                    continue
        finally:
            loop.remove_reader(self.master)
        return bytes(out)

    def close(self) -> None:
        if self.master >= 0:
            self.unplug()
