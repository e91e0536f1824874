"""The unit file, sysusers entry and udev rules, checked by systemd's own tools.

CI (.ci/run) installs Debian's systemd package when systemd-analyze is missing and sets
EDGE_REQUIRE_SYSTEMD=1, so there a missing tool fails instead of skipping.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge.web.http import MAX_CONNECTIONS, connection_cap

ROOT = Path(__file__).parent.parent
UNITS = ROOT / "systemd"
INSTALLED_EDGE = "/opt/edge/bin/edge"  # where README's install guide puts the command
SAFE_RATINGS = ("SAFE", "OK")  # systemd-analyze security: exposure below 5


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("EDGE_REQUIRE_SYSTEMD"):
            pytest.fail(f"{name} is missing; install Debian's systemd package")
        pytest.skip(f"{name} is missing (apt-get install systemd); CI runs this test")
    return path


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False, cwd=cwd)


def _unit_here(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's edge (verify checks it exists)."""
    edge = Path(sys.executable).parent / "edge"
    assert edge.exists(), "edge is not installed in this environment"
    text = (UNITS / "edge.service").read_text(encoding="utf-8")
    assert f"ExecStart={INSTALLED_EDGE} " in text
    unit = tmp_path / "edge.service"
    unit.write_text(text.replace(INSTALLED_EDGE, str(edge)), encoding="utf-8")
    return unit


def test_unit_verifies_clean(tmp_path: Path) -> None:
    analyze = _tool("systemd-analyze")
    result = _run(analyze, "verify", str(_unit_here(tmp_path)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # no warnings either


def test_unit_security_exposure_is_ok_or_better(tmp_path: Path) -> None:
    analyze = _tool("systemd-analyze")
    result = _run(
        analyze, "security", "--offline=yes", "--no-pager", str(_unit_here(tmp_path)), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    found = re.search(r"Overall exposure level for edge\.service: ([\d.]+) (\w+)", result.stdout)
    assert found, result.stdout[-2000:]
    level, rating = float(found[1]), found[2]
    assert rating in SAFE_RATINGS, f"exposure {level} {rating}:\n{result.stdout}"
    assert level < 5.0


def test_unit_speaks_notify_with_watchdog_and_stops_on_config_errors() -> None:
    text = (UNITS / "edge.service").read_text(encoding="utf-8")
    for line in (
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=10",
        "Restart=always",
        "RestartPreventExitStatus=78",
        "StateDirectory=edge",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "DevicePolicy=closed",
    ):
        assert f"\n{line}\n" in text, line


def test_unit_leaves_room_above_the_connection_cap() -> None:
    """The soft descriptor limit (1,024 by default) is raised well above the HTTP cap."""
    text = (UNITS / "edge.service").read_text(encoding="utf-8")
    found = re.search(r"^LimitNOFILE=(\d+)$", text, re.MULTILINE)
    assert found, "LimitNOFILE= is missing"
    limit = int(found[1])
    assert limit >= 4 * MAX_CONNECTIONS
    assert connection_cap(limit) == MAX_CONNECTIONS


def test_sysusers_entry_is_accepted(tmp_path: Path) -> None:
    sysusers = _tool("systemd-sysusers")
    result = _run(sysusers, "--dry-run", str(UNITS / "edge.sysusers"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Failed" not in result.stderr


UDEV_MATCH = {"SUBSYSTEM", "KERNEL", "ATTRS", "ATTR", "ENV"}
UDEV_ASSIGN = {"GROUP", "MODE", "SYMLINK", "ENV"}
UDEV_PAIR = re.compile(r'([A-Z]+)(?:\{([A-Za-z_]+)\})?(==|!=|\+=|=)"([^"]*)"\Z')


def test_udev_rules_give_every_device_to_the_edge_group_with_a_stable_name() -> None:
    rules = [
        line
        for line in (UNITS / "70-edge.rules").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert len(rules) >= 10
    for rule in rules:
        pairs = [UDEV_PAIR.match(part.strip()) for part in rule.split(", ")]
        assert all(pairs), rule
        keys = {(p[1], p[3]) for p in pairs if p}
        assert all(k in (UDEV_MATCH if op in ("==", "!=") else UDEV_ASSIGN) for k, op in keys)
        values = {p[1]: p[4] for p in pairs if p and p[3] in ("=", "+=")}
        assert values["GROUP"] == "edge", rule
        assert values["MODE"] == "0660", rule
        assert values["SYMLINK"].startswith("edge/"), rule
        assert "$env{ID_PATH_TAG}" in values["SYMLINK"], rule
