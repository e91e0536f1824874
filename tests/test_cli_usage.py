"""The command lines as an admin meets them: help, defaults, exit codes, one-line errors."""

from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest

from edge import __version__
from edge.cli import _parser as edge_parser
from edge.config import EXIT_CONFIG
from edge.console import DEFAULT_CONFIG, Progress
from edge.core.messages import counted
from sync.central.cli import _parser as central_parser
from sync.central.db import CentralDB

ROOT = Path(__file__).parent.parent
KEY = '[[keys]]\nid = 1\npublic = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="\n'
GATE = (
    '[device]\nname = "g"\nstore = "{store}"\n\n'
    '[[scanners]]\nname = "s"\ntype = "lines"\npath = "{scans}"\n\n'
    '[[actuators]]\nname = "a"\ntype = "console"\n\n'
    '[[lanes]]\nname = "Lane A"\nactuator = "a"\nentry = ["s"]\n'
)


def run(module: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def gate(tmp_path: Path, store: str = "edge.db", scans: str = "-") -> Path:
    config = tmp_path / "gate.toml"
    config.write_text(GATE.format(store=store, scans=scans), encoding="utf-8")
    return config


def leaves(parser: argparse.ArgumentParser, name: str) -> list[tuple[str, argparse.ArgumentParser]]:
    """Every command a user can run, with its parser."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [(name, parser)]
    found = [(name, parser)] if name.count(" ") else []
    for sub in subs:
        for child, child_parser in sub.choices.items():
            found += leaves(child_parser, f"{name} {child}")
    return found


@pytest.mark.parametrize("module", ["edge", "sync.central.cli"])
def test_no_command_prints_the_help(module: str) -> None:
    result = run(module)
    assert result.returncode == 2
    assert result.stdout.startswith("usage: edge")
    assert "COMMAND --help` shows a command's options and an example" in result.stdout
    assert "error" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("parser", "prog"), [(edge_parser(), "edge"), (central_parser(), "edge-central")]
)
def test_every_option_has_help_and_every_command_an_example(
    parser: argparse.ArgumentParser, prog: str
) -> None:
    commands = leaves(parser, prog)
    assert len(commands) > 10
    for name, command in commands:
        for action in command._actions:
            if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                assert action.help, f"{name}: {action.dest} has no help text"
        assert command.epilog, f"{name} has no example"
        assert command.epilog.startswith("examples:\n  ")
        for line in command.epilog.splitlines()[1:]:
            assert line.strip().startswith(prog), f"{name}: {line!r} is not an example of {prog}"


def test_defaults_are_shown_in_the_help() -> None:
    assert f"(default: {DEFAULT_CONFIG})" in run("edge", "status", "--help").stdout
    assert "(default: central.db)" in run("sync.central.cli", "--help").stdout


def test_python_m_edge_and_versions_agree() -> None:
    assert run("edge", "--version").stdout == f"edge {__version__}\n"
    assert run("sync.central.cli", "--version").stdout == f"edge-central {__version__}\n"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    # The package's own __version__ is the one source.
    assert "version" not in pyproject["project"]
    assert pyproject["project"]["dynamic"] == ["version"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "edge.__version__"}
    assert pyproject["project"]["license"] == "MIT"  # SPDX
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")


def test_commands_read_etc_edge_without_config(tmp_path: Path) -> None:
    result = run("edge", "status", cwd=tmp_path)
    assert result.returncode == EXIT_CONFIG
    assert result.stderr.startswith(f"edge: configuration error: {DEFAULT_CONFIG}: cannot read")


def test_keygen_writes_relative_to_the_callers_folder(tmp_path: Path) -> None:
    result = run("edge", "keygen", "--out", "my.key", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "my.key").stat().st_mode & 0o777 == 0o600
    assert not (ROOT / "my.key").exists()


def test_dev_runs_commands_in_the_callers_folder(tmp_path: Path) -> None:
    """./dev edge keygen --out my.key from another folder writes there, not into the clone."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    # A stand-in console script that reports where it runs; the stamp says "installed".
    (venv / "bin" / "edge").write_text('#!/bin/sh\necho "$PWD" "$@"\n', encoding="utf-8")
    (venv / "bin" / "edge").chmod(0o755)
    (venv / ".installed-test").touch()
    os.utime(venv / ".installed-test", (2**33, 2**33))  # newer than pyproject.toml
    caller = tmp_path / "somewhere"
    caller.mkdir()
    result = subprocess.run(
        [str(ROOT / "dev"), "edge", "keygen", "--out", "my.key"],
        capture_output=True,
        text=True,
        cwd=caller,
        env={**os.environ, "EDGE_VENV": str(venv)},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{caller} keygen --out my.key\n"


def test_check_with_an_unknown_lane_is_a_usage_error(tmp_path: Path) -> None:
    result = run("edge", "check", "x", "--config", str(gate(tmp_path)), "--lane", "NOPE")
    assert result.returncode == 2
    assert result.stderr == "edge: no lane named 'NOPE'; lanes: Lane A\n"


def test_issue_uses_zero_names_the_rule_of_uses(tmp_path: Path) -> None:
    result = run("edge", "issue", "--key", "k", "--credential", "1", "--uses", "0")
    assert result.returncode == 2
    assert "--uses must be 1..65,535, not 0; for re-entry at will use --unlimited" in (
        result.stderr
    )


def test_a_missing_store_directory_is_reported_by_config_check(tmp_path: Path) -> None:
    config = gate(tmp_path, store=str(tmp_path / "nothere" / "edge.db"))
    for args in (("config", "check", str(config)), ("status", "--config", str(config))):
        result = run("edge", *args)
        assert result.returncode == EXIT_CONFIG, result.stderr
        assert f"device.store: the store's directory {tmp_path / 'nothere'} does not exist" in (
            result.stderr
        )
    assert not (tmp_path / "nothere").exists()


def test_config_check_counts_in_words(tmp_path: Path) -> None:
    result = run("edge", "config", "check", str(gate(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert "valid (1 lane, 1 scanner, 1 actuator, 0 printers, 0 keys)" in result.stdout
    assert [counted(n, "batch", "batches") for n in (0, 1, 2)] == [
        "0 batches",
        "1 batch",
        "2 batches",
    ]


def test_a_lines_scanner_on_a_regular_file_is_refused_before_start(tmp_path: Path) -> None:
    scans = tmp_path / "scans.txt"
    scans.write_text("EDGE:x\n", encoding="utf-8")
    config = gate(tmp_path, scans=str(scans))
    for args in (("config", "check", str(config)), ("run", "--config", str(config))):
        result = run("edge", *args)
        assert result.returncode == EXIT_CONFIG
        assert "scanners[0].path: " in result.stderr
        assert "is a regular file: a lines scanner would read it once" in result.stderr
    assert not (tmp_path / "edge.db").exists()


def test_central_refuses_to_create_a_database_except_for_key_add(tmp_path: Path) -> None:
    missing = tmp_path / "nothere.db"
    result = run("sync.central.cli", "--db", str(missing), "status")
    assert result.returncode == 1
    assert result.stderr == (
        f"edge-central: {missing} does not exist; `edge-central --db {missing} key add` sets up "
        "a new central there\n"
    )
    assert not missing.exists()
    assert run("sync.central.cli", "--db", str(missing), "key", "add").stdout == "key 1\n"
    assert run("sync.central.cli", "--db", str(missing), "status").returncode == 0


def test_central_serve_on_a_busy_port_says_so_in_one_line(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    run("sync.central.cli", "--db", str(db), "key", "add")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run("sync.central.cli", "--db", str(db), "serve", "--port", str(port))
    assert result.returncode == 1
    assert result.stderr.startswith(f"edge-central: cannot listen on 127.0.0.1 port {port}: ")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_cancel_sale_prints_a_summary_of_a_large_sale(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    run("sync.central.cli", "--db", str(db), "key", "add")
    run("sync.central.cli", "--db", str(db), "product", "add", "Day")
    for count in ("2", "2500"):
        assert (
            run("sync.central.cli", "--db", str(db), "sell", "1", "--count", count).returncode == 0
        )
    small = run("sync.central.cli", "--db", str(db), "cancel-sale", "1")
    assert small.stdout == "sale 1: cancelled 2 credentials: 1, 2\n"
    large = run("sync.central.cli", "--db", str(db), "cancel-sale", "2")
    assert large.stdout == "sale 2: cancelled 2,500 credentials (ids 3..2502; --list prints each)\n"


def test_sell_reports_progress_while_it_mints(tmp_path: Path) -> None:
    db = CentralDB(tmp_path / "c.db")
    try:
        db.keys.add()
        product = db.catalogue.add_product("Day")
        heard: list[int] = []
        db.sales.sell(product, count=2500, progress=heard.append)
    finally:
        db.close()
    assert heard == [1000, 2000, 2500]


def test_progress_prints_at_most_once_a_second_and_a_last_line() -> None:
    now = [0.0]
    out = io.StringIO()
    progress = Progress("selling", 4000, out, clock=lambda: now[0])
    for done in range(1000, 4001, 1000):
        now[0] += 0.6
        progress.update(done)
    progress.done()
    assert out.getvalue() == (
        "selling: 2,000 of 4,000 (50%)\n"
        "selling: 4,000 of 4,000 (100%)\n"
        "selling: 4,000 done in 2.4 s\n"
    )


def test_dev_without_root_or_sudo_prints_the_one_root_command() -> None:
    """A user without sudo on a machine without Python: one command to run as root, and
    nothing created (no venv a later root run would leave root-owned)."""
    with tempfile.TemporaryDirectory() as where:  # /tmp: the user (nobody) reaches its tools
        Path(where).chmod(0o755)
        as_nobody(Path(where))


def as_nobody(tmp_path: Path) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("sh", "dirname", "id", "tr", "mktemp", "rm", "cat", "stat", "apt-get"):
        found = shutil.which(tool)
        assert found, tool
        (tools / tool).symlink_to(found)
    venv = tmp_path / "venv"
    result = subprocess.run(
        [shutil.which("setpriv") or "setpriv", "--reuid=65534", "--regid=65534",
         "--clear-groups", str(ROOT / "dev"), "edge", "--version"],
        capture_output=True,
        text=True,
        cwd="/",
        env={"PATH": str(tools), "EDGE_VENV": str(venv), "PYTHON": "python3"},
        timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "    apt-get update && apt-get install -y --no-install-recommends "
        "python3 python3-venv python3-dev gcc libc6-dev"
    )
    assert "run this once as root, then ./dev again as yourself" in result.stderr
    assert not venv.exists()
