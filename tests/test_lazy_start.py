"""A gate imports only what its configuration uses; `edge --version` imports almost nothing."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import KEY_ID, PRIVATE, mint_code, public_bytes, ticket

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


_FIRST_DECISION = """
import asyncio, importlib.abc, importlib.machinery, json, os, sys, time, tty
from pathlib import Path


class SlowLoader(importlib.abc.Loader):
    def __init__(self, real):
        self.real = real

    def create_module(self, spec):
        return self.real.create_module(spec)

    def exec_module(self, module):
        time.sleep(3)  # aiohttp, the metrics endpoint's server, loading on a slow board
        self.real.exec_module(module)
        LOADED.append(module.__name__)


class SlowHttpServer(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "aiohttp":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        spec.loader = SlowLoader(spec.loader)
        return spec


LOADED = []
sys.meta_path.insert(0, SlowHttpServer())
from edge.config import parse
from edge.daemon import serve

directory = Path(sys.argv[1])
scanner, scanner_device = os.openpty()
relay, relay_device = os.openpty()
for fd in (scanner, scanner_device, relay, relay_device):
    tty.setraw(fd)
text = (directory / "gate.toml").read_text().format(
    scanner=os.ttyname(scanner_device), relay=os.ttyname(relay_device)
)
config = parse(text, directory / "gate.toml")


async def main():
    results = asyncio.Queue()
    stop = asyncio.Event()
    started = time.monotonic()
    daemon = asyncio.create_task(serve(config, stop=stop, on_result=results.put_nowait))
    while True:
        os.write(scanner, sys.argv[2].encode() + b"\\r\\n")
        try:
            result = await asyncio.wait_for(results.get(), 0.05)
            break
        except TimeoutError:
            continue
    answer = {
        "admitted": result.check.decision.admitted,
        "seconds": time.monotonic() - started,
        "aiohttp_loaded": bool(LOADED),
    }
    stop.set()
    await daemon
    print(json.dumps(answer))


asyncio.run(main())
"""


def _serve_with_metrics(directory: Path, config: str, script: str, *args: str) -> Any:
    """Run `script` (directory, *args) beside gate.toml: `config` with the key and metrics on;
    the JSON it prints last."""
    public = base64.b64encode(public_bytes(PRIVATE)).decode()
    config += f'\n[[keys]]\nid = {KEY_ID}\npublic = "{public}"\n\n[metrics]\nport = 0\n'
    (directory / "gate.toml").write_text(config, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", script, str(directory), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_the_first_decision_does_not_wait_for_the_metrics_server(tmp_path: Path) -> None:
    config = (
        GATE.replace("{store}", str(tmp_path / "edge.db"))
        .replace('url = "/dev/null"\n\n[[actuators]]', 'url = "{scanner}"\n\n[[actuators]]')
        .replace('url = "/dev/null"\n\n[[lanes]]', 'url = "{relay}"\n\n[[lanes]]')
    )
    answer = _serve_with_metrics(tmp_path, config, _FIRST_DECISION, mint_code(ticket(4711)))
    assert answer["admitted"], answer
    # The lane decided while the HTTP server was still loading, not after.
    assert not answer["aiohttp_loaded"], answer


_FROZEN_AT_READY = """
import asyncio, gc, json, os, socket, sys
from pathlib import Path

notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify.bind(str(Path(sys.argv[1]) / "notify"))
notify.setblocking(False)
os.environ["NOTIFY_SOCKET"] = str(Path(sys.argv[1]) / "notify")
from edge.config import parse
from edge.daemon import serve

config = parse((Path(sys.argv[1]) / "gate.toml").read_text(), Path(sys.argv[1]) / "gate.toml")


async def main():
    stop = asyncio.Event()
    daemon = asyncio.create_task(serve(config, stop=stop))
    loop = asyncio.get_running_loop()
    while b"READY=1" not in await loop.sock_recv(notify, 4096):
        pass
    walked = [
        o for o in gc.get_objects()  # what a full collection walks; frozen objects are not
        if callable(o) and str(getattr(o, "__module__", "")).startswith("aiohttp")
    ]
    loaded = "aiohttp.web" in sys.modules
    stop.set()
    await daemon
    print(json.dumps({"aiohttp_loaded": loaded, "walked": len(walked)}))


asyncio.run(main())
"""


def test_what_loads_after_the_lanes_is_frozen_by_ready(tmp_path: Path) -> None:
    answer = _serve_with_metrics(
        tmp_path, GATE.format(store=tmp_path / "edge.db"), _FROZEN_AT_READY
    )
    assert answer == {"aiohttp_loaded": True, "walked": 0}, answer
