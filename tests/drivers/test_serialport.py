"""drivers.serialport: reads on real pseudo-terminals and a real socket:// bridge."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from ptys import PtyDevice

from drivers import serialport
from drivers.serialport import SerialPort


@pytest.fixture
def device(tmp_path: Path) -> Iterator[PtyDevice]:
    pty = PtyDevice(tmp_path / "scanner-usb-0-1")
    yield pty
    pty.close()


async def test_bytes_that_arrive_while_nobody_reads_are_kept_in_order(
    device: PtyDevice,
) -> None:
    """Four times what the port holds for a reader arrives before the first read: the port
    stops taking bytes when its buffer is full (the rest waits in the kernel, the sender
    blocks) and goes on once read; nothing is lost or reordered."""
    port = SerialPort(device.url)
    port.open()
    sent = bytes(range(256)) * (4 * serialport.MAX_RECEIVED // 256)
    with pytest.raises(TimeoutError):  # the port watches its line from the first read on
        await asyncio.wait_for(port.read(), 0.01)
    sender = threading.Thread(target=device.send, args=(sent,))
    sender.start()
    await asyncio.sleep(0.3)  # the sender blocks on the full line, the port on its buffer
    assert sender.is_alive()
    got = bytearray()
    while len(got) < len(sent):
        got += await asyncio.wait_for(port.read(), 5)
    sender.join(5)
    assert got == sent
    port.close()


async def test_a_read_waiting_when_the_port_closes_fails(device: PtyDevice) -> None:
    port = SerialPort(device.url)
    port.open()
    reading = asyncio.ensure_future(port.read())
    await asyncio.sleep(0.05)
    port.close()
    with pytest.raises(OSError, match="port is closed"):
        await asyncio.wait_for(reading, 5)
    with pytest.raises(OSError, match="port is closed"):
        await port.read()


async def test_a_read_cut_off_by_a_timeout_loses_nothing(device: PtyDevice) -> None:
    """wait_for cancels a waiting read (the scanner's cut-off line): bytes that come later
    are there for the next read."""
    port = SerialPort(device.url)
    port.open()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(port.read(), 0.05)
    device.send(b"LATER\r\n")
    assert await asyncio.wait_for(port.read(), 5) == b"LATER\r\n"
    port.close()


async def test_unplugged_and_reopened(device: PtyDevice) -> None:
    port = SerialPort(device.url)
    port.open()
    device.send(b"A")
    assert await asyncio.wait_for(port.read(), 5) == b"A"
    device.unplug()
    with pytest.raises(OSError):
        await asyncio.wait_for(port.read(), 5)
    port.close()
    device.plug()
    port.open()
    device.send(b"B")
    assert await asyncio.wait_for(port.read(), 5) == b"B"
    port.close()


async def test_a_network_bridge_that_hangs_up_ends_the_reads() -> None:
    """socket://: the bridge closing the connection is an OSError, as an unplugged device."""
    writers: list[asyncio.StreamWriter] = []
    connected = asyncio.Event()

    async def bridge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        connected.set()

    server = await asyncio.start_server(bridge, "127.0.0.1", 0)
    url = f"socket://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    port = SerialPort(url)
    await asyncio.to_thread(port.open)
    await connected.wait()
    reading = asyncio.ensure_future(port.read())
    await asyncio.sleep(0.05)  # open() empties the socket: write once the port reads
    writers[0].write(b"CODE\r\n")
    await writers[0].drain()
    assert await asyncio.wait_for(reading, 5) == b"CODE\r\n"
    writers[0].close()
    with pytest.raises(OSError, match="end of file"):
        await asyncio.wait_for(port.read(), 5)
    port.close()
    server.close()
    await server.wait_closed()


def test_reading_never_blocks_the_loop(device: PtyDevice) -> None:
    """The descriptor pyserial opens is non-blocking (the callback's read(2) relies on it)."""
    port = SerialPort(device.url)
    port.open()
    assert not os.get_blocking(port._port.fileno())
    port.close()
