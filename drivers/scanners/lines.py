"""A scanner that reads one code per line from stdin, a FIFO or a file (demo, tests, pipes)."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from drivers.protocols import MAX_SCAN_BYTES, ScanEvent
from edge.core.errors import ScannerError

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LineScannerSettings:
    """Configuration of a line scanner."""

    path: str = "-"  # '-' is standard input

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError("path must name a file or FIFO, or be '-' for standard input")


class LineScanner:
    """Yields each line of its input as a scan; ends at end of input."""

    def __init__(self, name: str, settings: LineScannerSettings) -> None:
        self.name = name
        self._settings = settings
        self._transport: asyncio.ReadTransport | None = None
        self._closed = asyncio.Event()

    async def _open(self) -> asyncio.StreamReader:
        loop = asyncio.get_running_loop()
        # A long line must not grow memory: the limit bounds the buffer, overflow is reported.
        reader = asyncio.StreamReader(limit=MAX_SCAN_BYTES + 2)
        protocol = asyncio.StreamReaderProtocol(reader)
        path = self._settings.path
        try:
            if path == "-":
                fd = os.dup(sys.stdin.fileno())
            elif stat.S_ISFIFO(os.stat(path).st_mode):  # noqa: PTH116 - os-level like os.open
                # Held open for writing too, so the FIFO never reads as ended when the
                # process feeding it goes away and comes back.
                fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
            else:
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            pipe = os.fdopen(fd, "rb", buffering=0)
        except OSError as err:
            raise ScannerError(f"cannot open {path}: {err.strerror}", device=self.name) from err
        if stat.S_ISREG(os.fstat(fd).st_mode):
            # Regular files cannot be watched by the loop; they are small, read them whole.
            data = pipe.read()
            pipe.close()
            reader.feed_data(data)
            reader.feed_eof()
            return reader
        transport, _ = await loop.connect_read_pipe(lambda: protocol, pipe)
        self._transport = transport
        return reader

    async def scans(self) -> AsyncIterator[ScanEvent]:
        """Yield one scan per line until end of input or close()."""
        reader = await self._open()
        _LOGGER.info("%s: reading codes from %s", self.name, self._settings.path)
        while not self._closed.is_set():
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as err:
                if err.partial.strip():
                    yield ScanEvent(self.name, err.partial.rstrip(b"\r"), time.monotonic())
                return
            except asyncio.LimitOverrunError as err:
                # Too long to be a code: drop the rest of the line, pass on a marker that
                # is over the limit so the core rejects it as malformed.
                await reader.readexactly(err.consumed)
                while True:
                    try:
                        await reader.readuntil(b"\n")
                        break
                    except asyncio.LimitOverrunError as more:
                        await reader.readexactly(more.consumed)
                    except asyncio.IncompleteReadError:
                        break
                yield ScanEvent(self.name, b"\x00" * (MAX_SCAN_BYTES + 1), time.monotonic())
                continue
            data = line.rstrip(b"\r\n")
            if data:
                yield ScanEvent(self.name, data, time.monotonic())

    async def close(self) -> None:
        """Stop reading."""
        self._closed.set()
        if self._transport is not None:
            self._transport.close()
