"""drivers.gates.inputs: a passage sensor ends the pulse early, a door held open is reported."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import until
from evdev import InputEvent
from evdev import ecodes as e
from keyboards import FakeKeyDevice
from relays import LcusSimulator

from drivers.gates.inputs import GateInputs, key_code
from drivers.gates.lcus import RelayCommand
from drivers.gates.relay import RelayActuator, SerialRelayBoard, SerialRelaySettings
from drivers.gates.signals import SignalSettings
from drivers.protocols import DeviceState, Outcome


@pytest.fixture
def board(tmp_path: Path) -> Iterator[LcusSimulator]:
    sim = LcusSimulator(tmp_path / "relay", channels=2)
    yield sim
    sim.close()


def key(code: int, value: int) -> list[InputEvent]:
    return [InputEvent(1, 0, e.EV_KEY, code, value), InputEvent(1, 0, e.EV_SYN, 0, 0)]


def _gate(board: LcusSimulator, sensors: FakeKeyDevice, **extra: object) -> RelayActuator:
    """A relay gate whose inputs device is `sensors` once, then not plugged in."""
    handed = [sensors]
    settings = SerialRelaySettings(
        url=board.url,
        channels=2,
        pulse_ms=5000,  # long: only the passage sensor can end it within the test
        inputs="/dev/input/by-path/platform-gpio-keys-event",
        passage_key="KEY_F1",
        door_key="KEY_F2",
        **extra,  # type: ignore[arg-type]
    )
    inputs = GateInputs(
        "gate",
        settings.inputs,
        passage=e.KEY_F1,
        door=e.KEY_F2,
        open_device=lambda: handed.pop() if handed else None,
    )
    return RelayActuator("gate", SerialRelayBoard("gate", board.url), settings, inputs=inputs)


async def test_passage_ends_the_pulse(board: LcusSimulator) -> None:
    sensors = FakeKeyDevice("/dev/input/by-path/platform-gpio-keys-event")
    gate = _gate(board, sensors)
    await gate.signal(Outcome.ADMIT_ENTRY, "Welcome")
    assert await board.commands_until(1) == [RelayCommand(1, on=True)]
    sensors.send(key(e.KEY_F1, 1) + key(e.KEY_F1, 0))
    assert await board.commands_until(1) == [RelayCommand(1, on=False)]
    assert gate.passages == 1
    assert gate.inputs is not None
    assert gate.inputs.state is DeviceState.READY
    await gate.close()


async def test_door_held_open_is_reported(
    board: LcusSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    sensors = FakeKeyDevice()
    gate = _gate(board, sensors, door_held_ms=1000)
    sensors.send(key(e.KEY_F2, 1))
    # door_held_ms cannot be below 1000 and the actuator's timer takes no clock: real time.
    # (until fails the test if the door is not reported held within its deadline.)
    await until(lambda: gate.door_held, "the door to count as held open")
    assert "door held open" in caplog.text
    sensors.send(key(e.KEY_F2, 0))
    await until(lambda: not gate.door_held, "the door to count as closed")
    assert not gate.door_held
    await gate.close()


async def test_unplugged_inputs_do_not_stop_the_gate(
    board: LcusSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    sensors = FakeKeyDevice()
    gate = _gate(board, sensors)
    sensors.unplug()
    # The watcher notices and waits for the device.
    await until(lambda: "not present; waiting" in caplog.text, "the watcher to wait")
    assert gate.inputs is not None
    assert gate.inputs.state is DeviceState.ABSENT
    await gate.signal(Outcome.ADMIT_ENTRY, "Welcome")
    assert await board.commands_until(1) == [RelayCommand(1, on=True)]
    await gate.close()


def test_input_settings() -> None:
    assert key_code("KEY_F1") == e.KEY_F1
    with pytest.raises(ValueError, match="not an evdev key name"):
        key_code("F1")
    with pytest.raises(ValueError, match="passage_key needs inputs"):
        SignalSettings(passage_key="KEY_F1")
    with pytest.raises(ValueError, match="inputs needs passage_key or door_key"):
        SignalSettings(inputs="/dev/input/event3")
    with pytest.raises(ValueError, match="not an evdev key name"):
        SignalSettings(inputs="/dev/input/event3", door_key="KEY_NOPE")
