"""edge.config: the example files parse; every error names the key and what is allowed."""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path

import pytest

from edge.config import MAX_CONFIG_BYTES, Config, load, parse, system_zone
from edge.core.errors import ConfigError

ROOT = Path(__file__).parent.parent
PUBLIC = base64.b64encode(bytes(range(32))).decode()

VALID = f"""
[device]
name = "north-gate-1"
store = "edge.db"
language = "de"
clock_skew_seconds = 90
repeat_window_ms = 1000

[[keys]]
id = 1
public = "{PUBLIC}"

[[keys]]
id = 2
public = "{PUBLIC}"
retired = true

[[scanners]]
name = "outside"
type = "lines"
path = "/run/edge/outside"

[[scanners]]
name = "inside"
type = "lines"
path = "/run/edge/inside"

[[actuators]]
name = "turnstile"
type = "console"
color = "never"

[[lanes]]
name = "North 1"
actuator = "turnstile"
entry = ["outside"]
exit = ["inside"]
zone = 1
events = [42, 43]
products = [10]
"""


def _parse(text: str) -> Config:
    return parse(text, Path("/etc/edge/gate.toml"))


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        _parse(text)
    message = str(caught.value)
    assert message.startswith("/etc/edge/gate.toml: "), message
    return message


def _replace(old: str, new: str) -> str:
    assert old in VALID
    return VALID.replace(old, new, 1)


@pytest.mark.parametrize("name", ["gate.toml", "demo.toml"])
def test_example_configurations_parse(name: str) -> None:
    config = load(ROOT / "config" / name)
    assert config.device.name
    assert config.lanes


def test_valid_configuration_parses_completely() -> None:
    config = _parse(VALID)
    assert config.device.language == "de"
    assert config.store_path == Path("/etc/edge/edge.db")
    assert [(k.id, k.retired, k.public_bytes) for k in config.keys] == [
        (1, False, bytes(range(32))),
        (2, True, bytes(range(32))),
    ]
    assert [s.type for s in config.scanners] == ["lines", "lines"]
    assert config.scanners[0].settings.path == "/run/edge/outside"
    assert config.actuators[0].settings.color == "never"
    (lane,) = config.lanes
    assert (lane.entry, lane.exit, lane.zone) == (("outside",), ("inside",), 1)
    rules = config.rules(lane)
    assert rules.gate == "North 1"
    assert rules.zone == 1
    assert rules.events == frozenset({42, 43})
    assert rules.products == frozenset({10})
    assert rules.clock_skew == timedelta(seconds=90)


def test_defaults_for_optional_keys() -> None:
    config = _parse(
        '[device]\nname = "d"\n[[scanners]]\nname = "s"\ntype = "lines"\n'
        '[[actuators]]\nname = "a"\ntype = "console"\n'
        '[[lanes]]\nname = "L"\nactuator = "a"\nentry = ["s"]\n'
    )
    assert config.device.language == "en"
    assert config.device.clock_skew_seconds == 120
    assert config.device.repeat_window_ms == 1500
    rules = config.rules(config.lanes[0])
    assert rules.events is None
    assert rules.products is None
    assert rules.zone is None
    assert config.scanners[0].settings.path == "-"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # unknown keys
        ("language = ", "colour = 1\nlanguage = ", "device: unknown key 'colour'; allowed: name"),
        ("retired = true", "retired = true\nsecret = 1", "keys[1]: unknown key 'secret'"),
        ("zone = 1", "zone = 1\nspeed = 3", "lanes[0]: unknown key 'speed'"),
        (
            'path = "/run/edge/outside"',
            'path = "x"\nbaud = 9600',
            "scanners[0]: unknown key 'baud'",
        ),
        ("[device]", "[devices]\nx = 1\n[device]", "unknown section 'devices'; allowed:"),
        # missing required keys
        ('name = "north-gate-1"\n', "", "device.name: is required"),
        ("id = 1\n", "", "keys[0].id: is required"),
        ('actuator = "turnstile"\n', "", "lanes[0].actuator: is required"),
        # wrong types
        (
            "clock_skew_seconds = 90",
            'clock_skew_seconds = "90"',
            "device.clock_skew_seconds: must be integer, not str",
        ),
        (
            "repeat_window_ms = 1000",
            "repeat_window_ms = true",
            "device.repeat_window_ms: must be integer, not bool",
        ),
        ("retired = true", 'retired = "yes"', "keys[1].retired: must be boolean"),
        ('entry = ["outside"]', 'entry = "outside"', "lanes[0].entry: must be a list of strings"),
        ("events = [42, 43]", 'events = [42, "43"]', "lanes[0].events[1]: must be integer"),
        ("zone = 1", "zone = 1.5", "lanes[0].zone: must be integer, not float"),
        ('path = "/run/edge/outside"', "path = 5", "scanners[0].path: must be string"),
        ("[device]", "device = 5\n[x]", "device"),
        # driver types
        (
            'type = "console"',
            'type = "relay"',
            "actuators[0]: type 'relay' is unknown; allowed: console",
        ),
        (
            'type = "lines"\npath = "/run/edge/outside"',
            'type = "bluetooth"',
            "scanners[0]: type 'bluetooth' is unknown; allowed: lines (",
        ),
        (
            'type = "lines"\npath = "/run/edge/outside"',
            "",
            "scanners[0]: type None is unknown; allowed: lines",
        ),
        (
            'color = "never"',
            'color = "pink"',
            "actuators[0]: color must be 'auto', 'always' or 'never'",
        ),
        # references
        (
            'actuator = "turnstile"',
            'actuator = "door"',
            "lanes[0].actuator: actuator 'door' is not defined in [[actuators]]",
        ),
        (
            'entry = ["outside"]',
            'entry = ["nowhere"]',
            "lanes[0].entry: scanner 'nowhere' is not defined in [[scanners]]",
        ),
        (
            'exit = ["inside"]',
            'exit = ["outside"]',
            "lanes[0].exit: scanner 'outside' already feeds lane 'North 1'",
        ),
        # values
        (
            f'public = "{PUBLIC}"',
            'public = "not base64!"',
            "keys[0]: public must be the base64 of a 32-byte",
        ),
        (
            f'public = "{PUBLIC}"',
            f'public = "{base64.b64encode(b"short").decode()}"',
            "keys[0]: public must be the base64",
        ),
        ("id = 1\n", "id = 70000\n", "keys[0]: id must be 0..65535"),
        ("zone = 1", "zone = 32", "lanes[0]: zone must be 0..31"),
        ("zone = 1", "zone = -1", "lanes[0]: zone must be 0..31"),
        ('language = "de"', 'language = "it"', "device: language must be one of en, de, fr"),
        (
            'language = "de"',
            'language = "de"\ntimezone = "Europe/Nowhere"',
            "device: timezone: 'Europe/Nowhere' is not a time zone name",
        ),
        (
            'language = "de"',
            'language = "de"\ntimezone = "../../etc/passwd"',
            "device: timezone: '../../etc/passwd' is not a time zone name",
        ),
        (
            "clock_skew_seconds = 90",
            "clock_skew_seconds = 7200",
            "device: clock_skew_seconds must be 0..3600",
        ),
        (
            'entry = ["outside"]\nexit = ["inside"]',
            "",
            "lanes[0]: a lane needs at least one scanner",
        ),
    ],
)
def test_each_error_names_the_key(old: str, new: str, expected: str) -> None:
    message = _error(_replace(old, new))
    assert expected in message, message


def test_a_scanner_feeding_two_lanes_is_refused() -> None:
    text = VALID + '\n[[lanes]]\nname = "North 2"\nactuator = "turnstile"\nentry = ["outside"]\n'
    message = _error(text)
    assert "lanes[1].entry: scanner 'outside' already feeds lane 'North 1'" in message


@pytest.mark.parametrize(
    ("section", "name"), [("scanners", "outside"), ("actuators", "turnstile"), ("lanes", "North 1")]
)
def test_names_defined_twice_are_refused(section: str, name: str) -> None:
    start = VALID.index(f"[[{section}]]")
    end = VALID.find("[[", start + 2)
    block = VALID[start:] if end == -1 else VALID[start:end]
    message = _error(VALID + "\n" + block)
    assert f"{name!r} is defined twice" in message


def test_a_driver_type_that_is_not_a_string_is_a_config_error() -> None:
    # A TOML array is unhashable: the registry lookup must not crash with TypeError.
    message = _error(_replace('type = "console"', 'type = ["console"]'))
    assert "actuators[0]" in message


def test_an_empty_device_name_names_the_key() -> None:
    message = _error(_replace('name = "north-gate-1"', 'name = "  "'))
    assert "name" in message, message


def test_not_toml(tmp_path: Path) -> None:
    path = tmp_path / "gate.toml"
    path.write_text("[device\nname = 1\n")
    with pytest.raises(ConfigError, match=r"gate\.toml: not valid TOML"):
        load(path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "gate.toml"
    path.write_bytes(b'[device]\nname = "Stra\xdfe"\n')
    with pytest.raises(ConfigError, match=r"gate\.toml: not UTF-8 \(byte 21\)"):
        load(path)


def test_oversized(tmp_path: Path) -> None:
    path = tmp_path / "gate.toml"
    path.write_bytes(VALID.encode() + b"#" * MAX_CONFIG_BYTES)
    with pytest.raises(ConfigError, match=f"larger than {MAX_CONFIG_BYTES} bytes"):
        load(path)


def test_exactly_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "gate.toml"
    data = VALID.encode()
    path.write_bytes(data + b"#" * (MAX_CONFIG_BYTES - len(data)))
    assert load(path).device.name == "north-gate-1"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "absent.toml")


def test_missing_device_section() -> None:
    assert "the [device] section is required" in _error('[[keys]]\nid = 1\npublic = "x"\n')


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("keys = 5\n", "keys: must be an array of tables ([[keys]])"),
        ("lanes = 5\n", "lanes: must be an array of tables ([[lanes]])"),
        ("scanners = 5\n", "scanners: must be an array of tables ([[scanners]])"),
        ("actuators = [5]\n", "actuators[0]: must be a table"),
    ],
)
def test_sections_of_the_wrong_shape(prefix: str, expected: str) -> None:
    # Top-level keys must come before the first table header in TOML.
    assert expected in _error(prefix + '[device]\nname = "d"\n')


def test_a_single_keys_table_instead_of_an_array() -> None:
    message = _error('[keys]\nid = 1\n[device]\nname = "d"\n')
    assert "keys: must be an array of tables ([[keys]])" in message


def test_the_device_zone_is_configured_or_the_system_s(tmp_path: Path) -> None:
    config = _parse(_replace('language = "de"', 'language = "de"\ntimezone = "Europe/Vienna"'))
    assert config.zone_name == "Europe/Vienna"
    etc = tmp_path / "etc"
    etc.mkdir()
    assert system_zone({}, etc) == "UTC"  # nothing says: UTC
    (etc / "localtime").symlink_to("/usr/share/zoneinfo/Europe/Paris")
    assert system_zone({}, etc) == "Europe/Paris"
    (etc / "timezone").write_text("Europe/Berlin\n")
    assert system_zone({}, etc) == "Europe/Berlin"
    assert system_zone({"TZ": ":America/New_York"}, etc) == "America/New_York"
    assert system_zone({"TZ": "Not/AZone"}, etc) == "Europe/Berlin"  # a bad TZ is skipped
