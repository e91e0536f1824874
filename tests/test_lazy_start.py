"""A gate imports only what its configuration uses; `edge --version` imports almost nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from drivers.registry import ACTUATORS, PRINTERS, SCANNERS, DriverType

GATE = """
[device]
name = "gate"
store = "{store}"

[[scanners]]
name = "scanner"
type = "serial"
url = "/dev/null"

[[actuators]]
name = "turnstile"
type = "serial-relay"
url = "/dev/null"

[[lanes]]
name = "lane"
actuator = "turnstile"
entry = ["scanner"]
"""

# Modules a gate without printers, counter, pretix, sync or gate inputs has no use for.
NOT_ON_A_GATE = (
    "PIL",
    "segno",
    "evdev",
    "usb",
    "msgpack",
    "drivers.printers",
    "drivers.scanners.hid",
    "drivers.scanners.handheld",
    "edge.counter.printqueue",
    "edge.counter.templates",
    "edge.counter.deviceapi",
    "sync.client.replicator",
    "sync.pretix.service",
)

_LOADED = """
import json, sys
{body}
print(json.dumps(sorted(sys.modules)))
"""


def _modules_after(body: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _LOADED.format(body=body)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    loaded: list[str] = json.loads(done.stdout.splitlines()[-1])
    return loaded


def _unwanted(loaded: list[str], names: tuple[str, ...]) -> list[str]:
    return [m for m in loaded if any(m == n or m.startswith(n + ".") for n in names)]


def test_a_gate_without_printers_loads_no_printing_and_no_unused_driver(tmp_path: Path) -> None:
    config = tmp_path / "gate.toml"
    config.write_text(GATE.format(store=tmp_path / "edge.db"), encoding="utf-8")
    loaded = _modules_after(
        "from edge import daemon\n"
        "from edge.config import load\n"
        f"config = load({str(config)!r})\n"
        "daemon._Devices().build(config)\n"
    )
    assert "drivers.scanners.serialline" in loaded  # what it uses is there
    assert "drivers.gates.relay" in loaded
    assert _unwanted(loaded, NOT_ON_A_GATE) == []


def test_version_loads_no_store_no_configuration_no_event_loop() -> None:
    loaded = _modules_after(
        "from edge import cli\ntry:\n    cli.main(['--version'])\nexcept SystemExit:\n    pass\n"
    )
    unwanted = (
        "asyncio",
        "sqlite3",
        "edge.config",
        "edge.store",
        "aiohttp",
        "nacl",
        "cryptography",
        "edge.core.codes",
        "edge.core.messages",
        "edge.printcli",
        "inspect",
    )
    assert _unwanted(loaded, unwanted) == []


@pytest.mark.parametrize(
    ("kind", "driver"),
    [
        (f"{table}:{name}", driver)
        for table, registry in (
            ("scanner", SCANNERS),
            ("actuator", ACTUATORS),
            ("printer", PRINTERS),
        )
        for name, driver in registry.items()
    ],
)
def test_every_registered_driver_resolves(kind: str, driver: DriverType[object]) -> None:
    assert isinstance(driver.settings, type), kind
    assert callable(driver.build), kind
