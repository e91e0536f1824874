"""drivers.scanners.serialline and framing: serial scanners on real pseudo-terminals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import mint_code, ticket, until
from hypothesis import given
from hypothesis import strategies as st
from ptys import PtyDevice

from drivers.gates.null import NullActuator, NullActuatorSettings
from drivers.protocols import UNREADABLE, DeviceState, ScanEvent
from drivers.scanners.framing import OVERFLOW, Framing, LineEnd, LineFramer
from drivers.scanners.serialline import SerialScanner, SerialScannerSettings
from edge.core.decide import GateRules
from edge.core.facts import Direction
from edge.gate.gate import Gate
from edge.gate.lane import Lane, LaneResult
from edge.store.database import Store


@pytest.fixture
def device(tmp_path: Path) -> Iterator[PtyDevice]:
    pty = PtyDevice(tmp_path / "scanner-usb-0-1")
    yield pty
    pty.close()


async def take(scans: AsyncIterator[ScanEvent], n: int) -> list[bytes]:
    return [(await anext(scans)).data for _ in range(n)]


# --- the codec ------------------------------------------------------------------------------


def frame(chunks: list[bytes], **framing: object) -> list[bytes]:
    framer = LineFramer(Framing(**framing))  # type: ignore[arg-type]
    return [line for chunk in chunks for line in framer.feed(chunk)]


CODE = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:-/", min_size=1, max_size=60)


@given(
    codes=st.lists(CODE, min_size=1, max_size=10),
    ends=st.lists(st.sampled_from([b"\r", b"\n", b"\r\n"]), min_size=10, max_size=10),
    cuts=st.lists(st.integers(0, 700), max_size=20),
)
def test_any_split_of_the_stream_gives_the_same_codes(
    codes: list[str], ends: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(c.encode() + ends[i] for i, c in enumerate(codes))
    points = sorted({min(c, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    assert frame(chunks) == [c.encode() for c in codes]


def test_line_ends() -> None:
    assert frame([b"A\r", b"\nB\n"], end=LineEnd.ANY) == [b"A", b"B"]
    assert frame([b"A\rB\r"], end=LineEnd.CR) == [b"A", b"B"]
    assert frame([b"A\r\nB\r\n"], end=LineEnd.CRLF) == [b"A", b"B"]
    # A bare CR inside a CR LF line is not an end: the line is bad input.
    assert frame([b"A\rB\r\n"], end=LineEnd.CRLF) == [UNREADABLE]
    # With CR only, a stray LF before the next code is not part of it.
    assert frame([b"A\r", b"\nB\r"], end=LineEnd.ANY) == [b"A", b"B"]


def test_prefix_suffix() -> None:
    stx, etx = b"\x02", b"\x03"
    framing = {"prefix": stx, "suffix": etx}
    assert frame([stx + b"04A1B2C3" + etx + b"\r\n"], **framing) == [b"04A1B2C3"]
    # Noise before the prefix is dropped with it; a missing suffix is a framing error.
    assert frame([b"\xff\xfe" + stx + b"OK" + etx + b"\n"], **framing) == [b"OK"]
    assert frame([stx + b"CUT\n"], **framing) == [UNREADABLE]
    assert frame([b"NOPREFIX" + etx + b"\n"], **framing) == [UNREADABLE]


def test_noise_and_garbage() -> None:
    framer = LineFramer(Framing())
    assert framer.feed(b"\x00\xff\x1b\x7f\r\n") == []  # pure noise: dropped and counted
    assert framer.noise == 1
    assert framer.feed(b"AB\x07C\r\n") == [UNREADABLE]  # a code with a control byte in it
    assert framer.feed("ÄB\n".encode()) == [UNREADABLE]
    assert framer.feed(b"FINE\n") == [b"FINE"]
    assert framer.bad == 2


def test_too_long_line_is_overflow_once() -> None:
    framer = LineFramer(Framing(max_length=8))
    out = [line for _ in range(100) for line in framer.feed(b"X" * 50)]
    assert out == []
    assert framer.feed(b"X\nNEXT\n") == [OVERFLOW, b"NEXT"]
    assert frame([b"123456789\n12345678\n"], max_length=8) == [OVERFLOW, b"12345678"]


# --- the device on a pseudo-terminal -------------------------------------------------------


async def test_reads_codes_byte_by_byte(device: PtyDevice) -> None:
    scanner = SerialScanner("s", SerialScannerSettings(url=device.url, baud=115200))
    scans = scanner.scans()
    first = asyncio.ensure_future(take(scans, 3))
    await scanner.ready.wait()  # what arrives before the port is opened is flushed
    for byte in b"]Q1EDGE:ABC\r\n1234567\r\n\x02noise":
        device.send(bytes([byte]))
        await asyncio.sleep(0)
    device.send(b"\rLAST\n")
    assert await first == [b"EDGE:ABC", b"1234567", UNREADABLE]
    assert await take(scans, 1) == [b"LAST"]
    assert scanner.state is DeviceState.READY
    await scanner.close()
    assert await anext(scans, None) is None


async def test_absent_unplugged_mid_line_and_replugged(
    device: PtyDevice, caplog: pytest.LogCaptureFixture
) -> None:
    device.unplug()
    scanner = SerialScanner("s", SerialScannerSettings(url=device.url), poll_seconds=0.005)
    scans = scanner.scans()
    pending = asyncio.ensure_future(take(scans, 1))
    await until(lambda: "waiting for it" in caplog.text, "the scanner to look for the port")
    assert scanner.state is DeviceState.ABSENT
    device.plug()
    await scanner.ready.wait()
    device.send(b"FIRST\r")
    assert await pending == [b"FIRST"]
    pending = asyncio.ensure_future(take(scans, 1))
    device.send(b"HALF-")
    await until(lambda: scanner.framer.pending, "the driver to read the half line")
    device.unplug()
    await until(lambda: scanner.unplugged == 1, "the driver to notice the device is gone")
    device.plug()
    await scanner.ready.wait()
    device.send(b"WHOLE\r")
    assert await pending == [b"WHOLE"]
    assert scanner.unplugged == 1
    await scanner.close()


async def test_line_cut_off_by_silence_is_dropped(
    device: PtyDevice, caplog: pytest.LogCaptureFixture
) -> None:
    settings = SerialScannerSettings(url=device.url, timeout_ms=20)
    scanner = SerialScanner("s", settings)
    scans = scanner.scans()
    pending = asyncio.ensure_future(take(scans, 1))
    await scanner.ready.wait()
    device.send(b"CUT-OFF")
    await until(lambda: "dropped a line cut off" in caplog.text, "the silence to drop the line")
    device.send(b"NEXT\n")
    assert await pending == [b"NEXT"]
    await scanner.close()


async def test_card_reader_uids(device: PtyDevice) -> None:
    settings = SerialScannerSettings(
        url=device.url, prefix="\u0002", suffix="\u0003", uid="hex", uid_order="reversed"
    )
    scanner = SerialScanner("nfc", settings)
    scans = scanner.scans()
    pending = asyncio.ensure_future(take(scans, 2))
    await scanner.ready.wait()
    device.send(b"\x0204A1B2C3\x03\r\n\x02ZZ\x03\r\n")
    assert await pending == [b"C3B2A104", UNREADABLE]
    await scanner.close()


async def test_flood_of_ten_thousand_lines_loses_none(device: PtyDevice) -> None:
    """A scanner stuck sending: every line is framed; dropping is the lane's decision."""
    scanner = SerialScanner("s", SerialScannerSettings(url=device.url, baud=921600))
    scans = scanner.scans()
    lines = [f"CODE{i:05d}".encode() for i in range(10_000)]
    pending = asyncio.ensure_future(take(scans, len(lines)))
    await scanner.ready.wait()
    loop = asyncio.get_running_loop()
    sending = loop.run_in_executor(None, device.send, b"\r\n".join(lines) + b"\r\n")
    assert await pending == lines
    await sending
    await scanner.close()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"url": ""}, "url must name the port"),
        ({"url": "/dev/x", "baud": 1000}, "baud must be one of"),
        ({"url": "/dev/x", "terminator": "etx"}, "terminator must be"),
        ({"url": "/dev/x", "prefix": "\r"}, "prefix must be"),
        ({"url": "/dev/x", "suffix": "€"}, "suffix must be"),
        ({"url": "/dev/x", "uid": "bcd"}, "uid must be"),
    ],
)
def test_bad_settings(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SerialScannerSettings(**settings)


async def test_flood_into_a_lane_is_accounted_for_and_the_lane_recovers(
    device: PtyDevice, store: Store
) -> None:
    """10,000 lines as fast as the pty takes them: each is decided or counted as dropped."""
    scanner = SerialScanner("s", SerialScannerSettings(url=device.url, baud=921600))
    results: list[LaneResult] = []
    settled = asyncio.Event()
    total = 10_000

    def report(result: LaneResult) -> None:
        results.append(result)
        if len(results) + lane.dropped >= total:
            settled.set()

    lane = Lane(
        rules=GateRules("North 1"),
        gate=Gate(store),
        actuator=NullActuator("none", NullActuatorSettings()),
        sources=[(scanner, Direction.ENTRY)],
        repeat_window=0.0,
        on_result=report,
    )
    running = asyncio.create_task(lane.run())
    await scanner.ready.wait()
    loop = asyncio.get_running_loop()
    flood = b"".join(b"NOISE%05d\r\n" % i for i in range(total))
    await loop.run_in_executor(None, device.send, flood)
    await settled.wait()
    assert len(results) + lane.dropped == total
    assert all(r.check is not None for r in results)  # unknown plain codes: rejected, journaled
    settled.clear()
    results.clear()
    lane.dropped = 0
    total = 1
    device.send(mint_code(ticket(9001)).encode() + b"\r\n")
    await settled.wait()
    assert results[0].check is not None
    assert results[0].check.decision.admitted
    await scanner.close()
    await running


async def test_socket_url_reads_from_a_network_bridge() -> None:
    """socket://host:port (a serial-to-Ethernet bridge) uses the same code path."""
    connected = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def bridge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        connected.set()

    server = await asyncio.start_server(bridge, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    scanner = SerialScanner("s", SerialScannerSettings(url=f"socket://127.0.0.1:{port}"))
    scans = scanner.scans()
    pending = asyncio.ensure_future(take(scans, 2))
    await connected.wait()
    # pyserial's socket:// open() empties the socket after connecting: bytes sent before it
    # returns are dropped, so write only once the scanner reads (this hung under disk load).
    await scanner.ready.wait()
    writers[0].write(b"OVER-THE-NET\r\nSECOND")
    writers[0].write(b"\r\n")
    await writers[0].drain()
    assert await pending == [b"OVER-THE-NET", b"SECOND"]
    await scanner.close()
    writers[0].close()
    server.close()
    await server.wait_closed()
