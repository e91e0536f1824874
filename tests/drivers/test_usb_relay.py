"""drivers.gates.usbrelay: HID relay boards through pyusb's own code and a simulated bus."""

from __future__ import annotations

import pytest
from usbsim import RelayBackend, SimBoard

from drivers.gates.usbrelay import BoardState, HidRelayBoard, HidRelaySettings, command, hid_relay
from drivers.protocols import DeviceState, Outcome
from edge.core.errors import ActuatorError


def test_reports() -> None:
    assert command(1, on=True) == bytes.fromhex("ff 01 00 00 00 00 00 00")  # relay 1 on
    assert command(2, on=False) == bytes.fromhex("fd 02 00 00 00 00 00 00")  # relay 2 off
    state = BoardState.from_bytes(bytes.fromhex("51 41 41 4d 5a 00 00 02"))  # "QAAMZ", relay 2
    assert state.serial == "QAAMZ"
    assert (state.is_on(1), state.is_on(2)) == (False, True)
    with pytest.raises(ValueError, match="state report of 3 bytes"):
        BoardState.from_bytes(b"\x00\x00\x00")


async def test_switches_and_verifies_through_pyusb() -> None:
    board = SimBoard()
    backend = RelayBackend(board)
    relay = HidRelayBoard("gate", channels=2, backend=backend)
    await relay.switch(2, on=True)
    assert board.relays == 0b10
    assert not board.kernel_driver  # detached from usbhid
    assert board.claimed == {0}
    assert relay.state is DeviceState.READY
    await relay.switch(2, on=False)
    assert board.relays == 0
    assert board.commands == [command(2, on=True), command(2, on=False)]
    await relay.close()
    assert board.claimed == set()


async def test_picks_the_board_by_serial() -> None:
    first, second = SimBoard(serial="AAAAA", address=5), SimBoard(serial="BBBBB", address=6)
    relay = HidRelayBoard("gate", serial="BBBBB", backend=RelayBackend(first, second))
    await relay.switch(1, on=True)
    assert (first.relays, second.relays) == (0, 1)
    await relay.close()


async def test_absent_hung_stuck_and_unplugged_boards_fail_cleanly() -> None:
    board = SimBoard(plugged=False)
    relay = HidRelayBoard("gate", backend=RelayBackend(board))
    with pytest.raises(ActuatorError, match="no USB HID relay board 16c0:05df is plugged in"):
        await relay.switch(1, on=True)
    board.plugged = True
    await relay.switch(1, on=True)
    board.hung = True  # stops answering
    with pytest.raises(ActuatorError, match="timed out"):
        await relay.switch(1, on=False)
    assert relay.state is DeviceState.FAILED
    board.hung = False
    board.stuck = True  # answers, but the relay does not move
    with pytest.raises(ActuatorError, match="relay 1 did not switch off"):
        await relay.switch(1, on=False)
    board.stuck = False
    board.plugged = False
    with pytest.raises(ActuatorError, match="no USB HID relay board"):
        await relay.switch(1, on=False)
    board.plugged = True
    await relay.switch(1, on=False)
    # The type checker carries the state asserted above across the awaits that change it.
    assert relay.state is DeviceState.READY  # type: ignore[comparison-overlap]
    await relay.close()  # type: ignore[unreachable]


async def test_board_with_fewer_relays_than_configured() -> None:
    relay = HidRelayBoard("gate", channels=4, backend=RelayBackend(SimBoard(channels=2)))
    with pytest.raises(ActuatorError, match="is a USBRelay2, configured for 4 relays"):
        await relay.switch(1, on=True)


async def test_actuator_pulses_turnstile_on_hid_board() -> None:
    board = SimBoard(channels=2)
    settings = HidRelaySettings(channels=2, entry_channel=1, green_channel=2, pulse_ms=50)
    gate = hid_relay("gate", settings, backend=RelayBackend(board))
    await gate.signal(Outcome.ADMIT_ENTRY, "Welcome")
    assert board.relays == 0b11  # turnstile and green on
    await gate.close()  # switches off what is on
    assert board.relays == 0


def test_settings() -> None:
    with pytest.raises(ValueError, match="serial must be"):
        HidRelaySettings(serial="TOOLONG")
