"""drivers.gates: LCUS frames, outcome timelines, the relay actuator on a pseudo-terminal."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import until
from relays import LcusSimulator

from drivers.gates.lcus import RelayCommand
from drivers.gates.relay import RelayActuator, SerialRelaySettings, serial_relay
from drivers.gates.signals import SignalSettings, Switch, timeline
from drivers.protocols import DeviceState, Outcome
from edge.core.errors import ActuatorError

# The command table of the LCUS-1 module documentation (not re-captured from a board here).
FRAMES = [
    (bytes.fromhex("a0 01 01 a2"), RelayCommand(1, on=True)),  # relay 1 on
    (bytes.fromhex("a0 01 00 a1"), RelayCommand(1, on=False)),  # relay 1 off
    (bytes.fromhex("a0 02 01 a3"), RelayCommand(2, on=True)),  # relay 2 on
    (bytes.fromhex("a0 04 00 a4"), RelayCommand(4, on=False)),  # relay 4 off
]


@pytest.mark.parametrize(("frame", "command"), FRAMES)
def test_lcus_frames(frame: bytes, command: RelayCommand) -> None:
    assert command.to_bytes() == frame
    assert RelayCommand.from_bytes(frame) == command


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ("a0 01 01 a3", "bad checksum"),
        ("a1 01 01 a3", "not an LCUS frame"),
        ("a0 01 02 a3", "bad state"),
        ("a0 01 01", "not an LCUS frame"),
        ("a0 09 01 aa", "channel must be 1..8"),
    ],
)
def test_bad_lcus_frames(frame: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RelayCommand.from_bytes(bytes.fromhex(frame))


def test_timelines() -> None:
    settings = SignalSettings(
        channels=4,
        entry_channel=1,
        exit_channel=2,
        green_channel=3,
        buzzer_channel=4,
        pulse_ms=300,
        light_ms=1000,
        buzzer_admit=(100,),
        buzzer_reject=(100, 50, 100),
    )
    assert timeline(settings, Outcome.ADMIT_ENTRY) == [
        Switch(0.0, 1, on=True),
        Switch(0.0, 3, on=True),
        Switch(0.0, 4, on=True),
        Switch(0.1, 4, on=False),
        Switch(0.3, 1, on=False),
        Switch(1.0, 3, on=False),
    ]
    assert timeline(settings, Outcome.ADMIT_EXIT)[0] == Switch(0.0, 2, on=True)
    assert timeline(settings, Outcome.REJECT) == [
        Switch(0.0, 3, on=False),
        Switch(0.0, 4, on=True),
        Switch(0.1, 4, on=False),
        Switch(0.15, 4, on=True),
        Switch(0.25, 4, on=False),
    ]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"channels": 3}, "channels must be 1, 2, 4 or 8"),
        ({"entry_channel": 2}, "entry_channel must be 0..1"),
        ({"entry_channel": 0}, "entry_channel must name"),
        ({"channels": 2, "green_channel": 1}, "channel 1 drives the turnstile"),
        ({"pulse_ms": 10}, "pulse_ms"),
        ({"buzzer_reject": (5,)}, "buzzer_reject"),
    ],
)
def test_bad_signal_settings(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SignalSettings(**settings)


@pytest.fixture
def board(tmp_path: Path) -> Iterator[LcusSimulator]:
    sim = LcusSimulator(tmp_path / "relay-usb-0-2", channels=4)
    yield sim
    sim.close()


def _gate(board: LcusSimulator, **settings: object) -> RelayActuator:
    base: dict[str, object] = {"url": board.url, "channels": 4, "pulse_ms": 50, "light_ms": 100}
    base.update(settings)
    return serial_relay("north-1", SerialRelaySettings(**base))  # type: ignore[arg-type]


async def test_admit_pulses_turnstile_and_green(board: LcusSimulator) -> None:
    gate = _gate(board, green_channel=3, red_channel=4)
    await gate.signal(Outcome.ADMIT_ENTRY, "Welcome")
    assert await board.commands_until(3) == [
        RelayCommand(1, on=True),
        RelayCommand(3, on=True),
        RelayCommand(4, on=False),
    ]
    assert gate.state is DeviceState.READY
    assert await board.commands_until(2) == [RelayCommand(1, on=False), RelayCommand(3, on=False)]
    await gate.close()


async def test_exit_and_reject_with_buzzer(board: LcusSimulator) -> None:
    gate = _gate(board, exit_channel=2, buzzer_channel=4, buzzer_reject=[20, 20, 20])
    await gate.signal(Outcome.ADMIT_EXIT, "Goodbye")
    assert await board.commands_until(3) == [
        RelayCommand(2, on=True),
        RelayCommand(4, on=False),
        RelayCommand(2, on=False),
    ]
    await gate.signal(Outcome.REJECT, "Already used")
    assert await board.commands_until(4) == [
        RelayCommand(4, on=True),
        RelayCommand(4, on=False),
        RelayCommand(4, on=True),
        RelayCommand(4, on=False),
    ]
    await gate.close()


async def test_new_outcome_switches_off_what_the_last_left_on(board: LcusSimulator) -> None:
    gate = _gate(board, red_channel=4, light_ms=5000)
    await gate.signal(Outcome.REJECT, "No")
    assert await board.commands_until(1) == [RelayCommand(4, on=True)]
    await gate.signal(Outcome.ADMIT_ENTRY, "Yes")
    assert await board.commands_until(3) == [
        RelayCommand(1, on=True),
        RelayCommand(4, on=False),
        RelayCommand(1, on=False),
    ]
    await gate.close()


async def test_unplugged_board_fails_then_recovers(board: LcusSimulator) -> None:
    gate = _gate(board)
    board.unplug()
    with pytest.raises(ActuatorError, match="relay board"):
        await gate.signal(Outcome.ADMIT_ENTRY, "Welcome")
    assert gate.state is DeviceState.ABSENT
    assert gate.failures == 1
    board.plug()
    await gate.signal(Outcome.ADMIT_ENTRY, "Welcome")
    assert await board.commands_until(2) == [RelayCommand(1, on=True), RelayCommand(1, on=False)]
    await gate.close()


async def test_pulse_end_is_retried_until_the_relay_opens(board: LcusSimulator) -> None:
    """Unplugged while the turnstile is open: the 'off' is repeated until the board is back."""
    gate = RelayActuator(
        "north-1",
        _gate(board, pulse_ms=50).board,
        SerialRelaySettings(url=board.url, channels=4, pulse_ms=50),
        off_retry_seconds=0.01,
    )
    await gate.signal(Outcome.ADMIT_ENTRY, "Welcome")
    assert await board.commands_until(1) == [RelayCommand(1, on=True)]
    board.unplug()
    # The pulse ends while the board is away; the "off" fails.
    await until(lambda: gate.failures >= 1, "the pulse end to fail")
    assert gate.failures >= 1
    board.plug()
    assert await board.commands_until(1) == [RelayCommand(1, on=False)]
    await gate.close()


async def test_board_that_stops_taking_bytes(board: LcusSimulator) -> None:
    gate = _gate(board)
    await gate.signal(Outcome.ADMIT_ENTRY, "Welcome")
    assert await board.commands_until(2) == [RelayCommand(1, on=True), RelayCommand(1, on=False)]
    # The module hangs: nothing reads its side, the line's buffers fill up. The kernel moves
    # bytes between the pair's buffers in the background, so fill until nothing more fits.
    slave = os.open(board.link.readlink(), os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        for _ in range(1000):
            if not _fill(slave):
                break
            await asyncio.sleep(0.01)
    finally:
        os.close(slave)
    with pytest.raises(ActuatorError):
        await gate.signal(Outcome.ADMIT_ENTRY, "Welcome")
    board.received()  # the module comes back and drains its input
    await gate.signal(Outcome.ADMIT_ENTRY, "Welcome")
    assert RelayCommand(1, on=True).to_bytes() in board.received() + await board.receive(4)
    await gate.close()


def _fill(fd: int) -> int:
    """Write to `fd` until it would block; how many bytes went in."""
    written = 0
    for size in (4096, 1):
        with contextlib.suppress(BlockingIOError):
            while True:
                written += os.write(fd, b"\xa0" * size)
    return written


def test_settings_need_url() -> None:
    with pytest.raises(ValueError, match="url must name"):
        SerialRelaySettings()
