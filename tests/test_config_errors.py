"""Configuration errors name the file, the key and what is allowed (`edge config check`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge.config import EXIT_CONFIG

ROOT = Path(__file__).parent.parent
GATE = """
[device]
name = "g"

[[scanners]]
name = "s"
type = "lines"

[[actuators]]
name = "a"
type = "console"

[[lanes]]
name = "L"
actuator = "a"
entry = ["s"]
"""


def _check(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "edge.toml"
    path.write_text(text, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", "config", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[device]\n", "edge.toml: device.name: is required"),
        (
            GATE + '[sync]\nurl = "http://127.0.0.1:8400"\n[pretix]\nurl = "https://p.example"\n'
            'organizer = "o"\nevent = "e"\ncheckin_list = 1\ntoken_file = "t"\n',
            "edge.toml: pretix: a device has one central system: [sync] (edge-central) or [pretix]",
        ),
        ('[device]\nname = "g"\nlanguage = "it"\n', "device: language must be one of en, de, fr"),
        (
            '[device]\nname = "g"\ncolour = 1\n',
            (
                "device: unknown key 'colour'; allowed: name, store, language, timezone,"
                " clock_skew_seconds, repeat_window_ms"
            ),
        ),
        (
            '[device]\nname = "g"\n[displays]\n',
            (
                "unknown section 'displays'; allowed: actuators, counter, device, keys, lanes,"
                " metrics, pretix, printers, scanners, sync, templates"
            ),
        ),
        ('[device]\nname = "g"\n[printers]\n', "must be an array of tables ([[printers]])"),
        ('[device]\nname = "g"\nrepeat_window_ms = "1s"\n', "must be integer, not str '1s'"),
        (
            GATE + "[metrics]\nport = 70000\n",
            "edge.toml: metrics: port must be 0..65535",
        ),
        (
            GATE + '[metrics]\naddress = "localhost"\n',
            "metrics: address must be an IP address such as 127.0.0.1 or ::1, not 'localhost'",
        ),
        (
            GATE + "[metrics]\nenabled = 1\n",
            "metrics.enabled: must be boolean, not int 1",
        ),
        (
            GATE + "[metrics]\nlisten = 1\n",
            "metrics: unknown key 'listen'; allowed: enabled, address, port",
        ),
        (
            GATE.replace('type = "console"', 'type = "relay9"'),
            "actuators[0]: type 'relay9' is unknown; allowed: console (",
        ),
        (
            GATE.replace('actuator = "a"', 'actuator = "b"'),
            "lanes[0].actuator: actuator 'b' is not defined in [[actuators]]",
        ),
        ("[device\n", "edge.toml: not valid TOML"),
    ],
)
def test_errors_name_file_key_and_what_is_allowed(tmp_path: Path, text: str, message: str) -> None:
    result = _check(tmp_path, text)
    assert result.returncode == EXIT_CONFIG
    assert result.stderr.startswith(f"edge: configuration error: {tmp_path / 'edge.toml'}")
    assert message in result.stderr


def test_the_shipped_examples_are_valid(tmp_path: Path) -> None:
    for name in ("gate.toml", "counter.toml", "demo.toml"):
        # The installed store directory (/var/lib/edge) is a temporary one here.
        text = (ROOT / "config" / name).read_text(encoding="utf-8")
        (tmp_path / name).write_text(text.replace("/var/lib/edge/", f"{tmp_path}/"))
        result = subprocess.run(
            [sys.executable, "-m", "edge.cli", "config", "check", str(tmp_path / name)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"{tmp_path / name}: valid")
