"""One contract for every relay board: the LCUS serial module and the USB HID board.

Each backend runs the same checks against its simulator speaking the real bytes: a pty for
the serial module, a pyusb backend for the HID board.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from relays import LcusSimulator
from usbsim import RelayBackend, SimBoard

from drivers.gates.relay import RelayBoard, SerialRelayBoard
from drivers.gates.usbrelay import HidRelayBoard
from drivers.protocols import DeviceState
from edge.core.errors import ActuatorError


@dataclass
class Rig:
    """A board under test and the means to see and break its simulated device."""

    board: RelayBoard
    relays: Callable[[], dict[int, bool]]  # what the device's relays are now
    unplug: Callable[[], None]
    plug: Callable[[], None]
    settle: Callable[[int], Awaitable[None]]  # let the device take `n` commands


@pytest.fixture(params=["serial", "hid"])
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    if request.param == "serial":
        sim = LcusSimulator(tmp_path / "relay", channels=2)

        async def settle(n: int) -> None:
            await sim.commands_until(n)

        yield Rig(
            SerialRelayBoard("gate", sim.url),
            lambda: dict(sim.states),
            sim.unplug,
            sim.plug,
            settle,
        )
        sim.close()
    else:
        board = SimBoard(channels=2)

        async def settled(n: int) -> None:
            del n  # USB transfers complete before switch() returns

        def plug() -> None:
            board.plugged = True

        def unplug() -> None:
            board.plugged = False

        yield Rig(
            HidRelayBoard("gate", channels=2, backend=RelayBackend(board)),
            lambda: {c: bool(board.relays >> (c - 1) & 1) for c in (1, 2)},
            unplug,
            plug,
            settled,
        )


async def test_switches_relays(rig: Rig) -> None:
    await rig.board.switch(1, on=True)
    await rig.board.switch(2, on=True)
    await rig.board.switch(1, on=False)
    await rig.settle(3)
    assert rig.relays() == {1: False, 2: True}
    assert rig.board.state is DeviceState.READY
    await rig.board.close()


async def test_absent_board_is_an_error_until_plugged(rig: Rig) -> None:
    rig.unplug()
    with pytest.raises(ActuatorError):
        await rig.board.switch(1, on=True)
    assert rig.board.state is not DeviceState.READY
    rig.plug()
    await rig.board.switch(1, on=True)
    await rig.settle(1)
    assert rig.relays()[1]
    await rig.board.close()


async def test_unplugged_while_in_use_then_back(rig: Rig) -> None:
    await rig.board.switch(2, on=True)
    await rig.settle(1)
    rig.unplug()
    with pytest.raises(ActuatorError):
        await rig.board.switch(2, on=False)
    assert rig.board.state is DeviceState.FAILED
    rig.plug()
    await rig.board.switch(2, on=False)
    await rig.settle(1)
    assert not rig.relays()[2]
    # The type checker carries the state asserted above across the awaits that change it.
    assert rig.board.state is DeviceState.READY  # type: ignore[comparison-overlap]
    await rig.board.close()  # type: ignore[unreachable]
