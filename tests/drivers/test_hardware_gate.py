"""A gate from its configuration: serial scanner -> lane -> LCUS relay, on pseudo-terminals."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
from conftest import KEY_ID, PRIVATE, mint_code, public_bytes, ticket
from ptys import PtyDevice
from relays import LcusSimulator
from usbsim import RelayBackend, SimBoard

from drivers.gates.lcus import RelayCommand
from drivers.gates.relay import RelayActuator
from drivers.gates.usbrelay import HidRelaySettings, hid_relay
from drivers.protocols import Outcome
from drivers.registry import ACTUATORS, SCANNERS
from drivers.scanners.hid import HidScanner, HidScannerSettings
from drivers.scanners.serialline import SerialScanner
from edge.config import parse
from edge.core.decide import GateRules, Reason
from edge.core.errors import ConfigError
from edge.core.facts import Direction
from edge.daemon import serve
from edge.gate.gate import Gate
from edge.gate.lane import Lane, LaneResult
from edge.ops.health import _lane_metrics
from edge.ops.metrics import Registry
from edge.store.database import Store


def gate_config(tmp_path: Path, scanner: str, relay: str) -> str:
    return f"""
[device]
name = "north-gate-1"
store = "{tmp_path / "edge.db"}"
repeat_window_ms = 0

[[keys]]
id = {KEY_ID}
public = "{base64.b64encode(public_bytes(PRIVATE)).decode()}"

[[scanners]]
name = "outside"
type = "serial"
url = "{scanner}"
baud = 115200
terminator = "crlf"

[[scanners]]
name = "inside"
type = "hid"
path = "{tmp_path / "no-such-event-device"}"
layout = "de"

[[actuators]]
name = "turnstile"
type = "serial-relay"
url = "{relay}"
channels = 2
entry_channel = 1
red_channel = 2
pulse_ms = 100
light_ms = 200
buzzer_reject = [100, 50, 100]

[[lanes]]
name = "North 1"
actuator = "turnstile"
entry = ["outside"]
exit = ["inside"]

[metrics]
enabled = false
"""


def test_hardware_configuration_builds_drivers(tmp_path: Path) -> None:
    config = parse(gate_config(tmp_path, "/dev/ttyACM0", "/dev/ttyUSB0"), tmp_path / "gate.toml")
    outside, inside = config.scanners
    assert (outside.type, outside.settings.baud, outside.settings.terminator) == (
        "serial",
        115200,
        "crlf",
    )
    assert (inside.type, inside.settings.layout) == ("hid", "de")
    relay = config.actuators[0].settings
    assert (relay.pulse_ms, relay.red_channel, relay.buzzer_reject) == (100, 2, (100, 50, 100))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('layout = "de"', 'layout = "dvorak"', "scanners[1]: layout must be one of us, de, ch, fr"),
        ("baud = 115200", "baud = 115201", "scanners[0]: baud must be one of"),
        ("red_channel = 2", "red_channel = 3", "actuators[0]: red_channel must be 0..2"),
        ("pulse_ms = 100", 'pulse_ms = "100"', "actuators[0].pulse_ms: must be integer"),
        ("buzzer_reject = [100, 50, 100]", "buzzer_reject = 100", "actuators[0].buzzer_reject"),
        ('terminator = "crlf"', 'terminatr = "crlf"', "unknown key 'terminatr'"),
    ],
)
def test_hardware_configuration_errors(tmp_path: Path, old: str, new: str, message: str) -> None:
    text = gate_config(tmp_path, "/dev/ttyACM0", "/dev/ttyUSB0").replace(old, new)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse(text, tmp_path / "gate.toml")


async def test_scan_on_serial_scanner_pulses_relay(tmp_path: Path) -> None:
    scanner = PtyDevice(tmp_path / "scanner")
    relay = LcusSimulator(tmp_path / "relay", channels=2)
    config = parse(gate_config(tmp_path, scanner.url, relay.url), tmp_path / "gate.toml")
    results: asyncio.Queue[LaneResult] = asyncio.Queue()
    stop = asyncio.Event()
    daemon = asyncio.create_task(serve(config, stop=stop, on_result=results.put_nowait))
    try:
        code = mint_code(ticket(4711)).encode()
        # The daemon opens the scanner's port when its lane starts; resend until it reads.
        while True:
            scanner.send(code + b"\r\n")
            try:
                first = await asyncio.wait_for(results.get(), 2.0)
                break
            except TimeoutError:
                continue
        assert first.check is not None
        assert first.check.decision.admitted
        assert first.actuated
        assert await relay.commands_until(3) == [
            RelayCommand(1, on=True),  # the turnstile first
            RelayCommand(2, on=False),  # red off
            RelayCommand(1, on=False),  # after pulse_ms
        ]
        scanner.send(code + b"\r\n")  # again: already used, red light and buzzer
        second = await results.get()
        assert second.check is not None
        assert second.check.decision.reason is Reason.ALREADY_USED
        assert (await relay.commands_until(1)) == [RelayCommand(2, on=True)]
        relay.unplug()  # the relay board goes away: reported, the daemon keeps running
        scanner.send(mint_code(ticket(4712)).encode() + b"\r\n")
        third = await results.get()
        assert third.check is not None
        assert third.check.decision.admitted
        assert not third.actuated
        assert not daemon.done()
    finally:
        stop.set()
        await daemon
        scanner.close()
        relay.close()


def test_registry_builds_the_drivers(tmp_path: Path) -> None:
    config = parse(gate_config(tmp_path, "/dev/ttyACM0", "/dev/ttyUSB0"), tmp_path / "gate.toml")
    outside, inside = (SCANNERS[s.type].build(s.name, s.settings) for s in config.scanners)
    assert isinstance(outside, SerialScanner)
    assert isinstance(inside, HidScanner)
    spec = config.actuators[0]
    assert isinstance(ACTUATORS[spec.type].build(spec.name, spec.settings), RelayActuator)


async def test_device_states_on_metrics(tmp_path: Path, store: Store) -> None:
    board = SimBoard()
    scanner = HidScanner("inside", HidScannerSettings(path=str(tmp_path / "absent")))
    gate = hid_relay("turnstile", HidRelaySettings(), backend=RelayBackend(board))
    lane = Lane(
        rules=GateRules("North 1"),
        gate=Gate(store),
        actuator=gate,
        sources=[(scanner, Direction.ENTRY)],
    )
    registry = Registry()
    _lane_metrics(registry, [lane], store)
    text = registry.render()
    assert 'edge_device_up{device="inside",kind="scanner"} 0' in text
    assert 'edge_device_up{device="turnstile",kind="actuator"} 0' in text  # not used yet
    assert 'edge_device_disconnects_total{device="inside"} 0' in text
    await gate.signal(Outcome.REJECT, "No")  # silent: no relay used
    await gate.signal(Outcome.ADMIT_ENTRY, "Welcome")
    assert 'edge_device_up{device="turnstile",kind="actuator"} 1' in registry.render()
    await gate.close()
