"""The `edge` command, run as a real process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge.config import EXIT_CONFIG

ROOT = Path(__file__).parent.parent


def edge(*args: str, stdin: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


@pytest.fixture
def gate(tmp_path: Path) -> tuple[Path, Path]:
    """A key file and a gate configuration that trusts it."""
    key_file = tmp_path / "signing.key"
    made = edge("keygen", "--out", str(key_file), "--key-id", "3")
    assert made.returncode == 0, made.stderr
    trust = made.stdout.split("configuration:\n", 1)[1]
    config = tmp_path / "gate.toml"
    config.write_text(
        '[device]\nname = "t"\n\n' + trust + '\n[[scanners]]\nname = "s"\ntype = "lines"\n\n'
        '[[actuators]]\nname = "a"\ntype = "console"\n\n'
        '[[lanes]]\nname = "Lane A"\nactuator = "a"\nentry = ["s"]\nexit = ["s2"]\n'
        '\n[[scanners]]\nname = "s2"\ntype = "lines"\n',
        encoding="utf-8",
    )
    return key_file, config


def test_keygen_writes_a_private_file_and_refuses_to_overwrite(gate: tuple[Path, Path]) -> None:
    key_file, _ = gate
    assert key_file.stat().st_mode & 0o777 == 0o600
    before = key_file.read_bytes()
    again = edge("keygen", "--out", str(key_file))
    assert again.returncode == 1  # not 78: no configuration is involved
    assert (
        again.stderr
        == f"edge: error: {key_file}: exists already; not overwritten, choose another path\n"
    )
    assert key_file.read_bytes() == before


def test_issue_then_check_admits_without_recording(gate: tuple[Path, Path]) -> None:
    key_file, config = gate
    issued = edge("issue", "--key", str(key_file), "--credential", "77", "--event", "5")
    assert issued.returncode == 0, issued.stderr
    code = issued.stdout.strip()
    assert code.startswith("EDGE:")
    for _ in range(2):  # check records nothing, so a single-use ticket checks twice
        checked = edge("check", code, "--config", str(config))
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout.startswith("ADMIT  admitted  Welcome")
        assert "credential: 77" in checked.stdout
    assert code not in checked.stdout  # codes are never printed in full
    status = edge("status", "--config", str(config))
    assert status.returncode == 0, status.stderr
    assert "journal                           0" in status.stdout


def test_check_rejects_with_reason_and_exit_status(gate: tuple[Path, Path]) -> None:
    key_file, config = gate
    code = edge(
        "issue",
        "--key",
        str(key_file),
        "--credential",
        "8",
        "--valid-from",
        "2020-01-01",
        "--days",
        "1",
    ).stdout.strip()
    expired = edge("check", code, "--config", str(config), "--lang", "fr")
    assert expired.returncode == 1
    assert expired.stdout.startswith("REJECT  expired  Expiré le 01.01.2020") or (
        expired.stdout.startswith("REJECT  expired  Expiré le 02.01.2020")  # local zone east of UTC
    )
    leaving = edge("check", code, "--config", str(config), "--exit")
    assert leaving.returncode == 0
    assert "exit" in leaving.stdout
    garbage = edge("check", "\x01\x02", "--config", str(config))
    assert garbage.returncode == 1
    assert "malformed" in garbage.stdout
    assert "why: scan has control characters" in garbage.stdout


def test_check_with_non_utf8_bytes_is_a_usage_error_not_a_reject(gate: tuple[Path, Path]) -> None:
    _, config = gate
    for argument in (b"EDGE:\xff\xfeAB", b"\xc3", b"\xed\xa0\x80"):  # the last: a surrogate
        result = subprocess.run(
            [sys.executable.encode(), b"-m", b"edge.cli", b"check", argument,
             b"--config", bytes(config)],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr  # a reject is 1
        assert b"Traceback" not in result.stderr
        assert b"the code argument is not UTF-8 text" in result.stderr
        assert result.stdout == b""


def test_check_with_a_broken_configuration_exits_78(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[device]\nname = "x"\nlanguage = "it"\n', encoding="utf-8")
    result = edge("check", "123", "--config", str(config))
    assert result.returncode == EXIT_CONFIG
    assert "bad.toml: device: language must be one of en, de, fr" in result.stderr


def test_config_check_accepts_the_shipped_examples(tmp_path: Path) -> None:
    for name in ("gate.toml", "demo.toml"):
        # The installed store directory (/var/lib/edge) is a temporary one here.
        text = (ROOT / "config" / name).read_text(encoding="utf-8")
        (tmp_path / name).write_text(text.replace("/var/lib/edge/", f"{tmp_path}/"))
        result = edge("config", "check", str(tmp_path / name))
        assert result.returncode == 0, result.stderr
        assert "valid" in result.stdout


def test_issue_refuses_values_the_format_cannot_carry(gate: tuple[Path, Path]) -> None:
    key_file, _ = gate
    result = edge("issue", "--key", str(key_file), "--credential", "-1")
    assert result.returncode == 1
    assert "credential id must be 0.." in result.stderr


def test_demo_shows_the_workflows_in_order() -> None:
    # 1 day ticket twice (not a repeat read: another scan is in between), 4 the replaced card,
    # 5 its replacement, 6 cancelled event, 7 unpaid, 8 extended pass, garbage, then leave.
    result = edge("demo", "--color", "never", stdin="1\n2\n1\n4\n5\n6\n7\n8\n\x00\xff\nout 5\n")
    assert result.returncode == 0, result.stderr
    decisions = [
        line for line in result.stdout.splitlines() if line.startswith(("ADMIT", "REJECT", "EXIT"))
    ]
    assert [line.split("  ")[0] for line in decisions] == [
        "ADMIT",
        "ADMIT",
        "REJECT",
        "REJECT",
        "ADMIT",
        "REJECT",
        "REJECT",
        "ADMIT",
        "REJECT",
        "EXIT",
    ]
    assert "Already used at" in decisions[2]
    assert "demo-1" in decisions[2]
    assert "Card replaced" in decisions[3]
    assert "Event cancelled" in decisions[5]
    assert "Not paid yet" in decisions[6]
    assert "10 decisions journaled" in result.stderr


def test_run_stops_cleanly_on_end_of_input(gate: tuple[Path, Path], tmp_path: Path) -> None:
    key_file, config = gate
    code = edge("issue", "--key", str(key_file), "--credential", "9").stdout.strip()
    # Only the entry scanner reads stdin here: the lane has no exit scanner.
    text = config.read_text(encoding="utf-8").replace('exit = ["s2"]\n', "")
    config.write_text(text, encoding="utf-8")
    result = edge("run", "--config", str(config), stdin=f"{code}\n{code}\n", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("ADMIT  a  Welcome")
    assert len(result.stdout.splitlines()) == 1  # the second read was a repeat: one passage
    assert (tmp_path / "edge.db").exists()


def test_an_emptied_store_stops_every_command_until_edge_init(
    gate: tuple[Path, Path], tmp_path: Path
) -> None:
    key_file, config = gate
    code = edge("issue", "--key", str(key_file), "--credential", "5").stdout.strip()
    store = tmp_path / "edge.db"  # the default store path is beside the configuration
    assert edge("status", "--config", str(config)).returncode == 0
    assert store.exists()
    store.write_bytes(b"")  # lost: a full card, a bad copy
    for suffix in ("-wal", "-shm"):
        Path(f"{store}{suffix}").unlink(missing_ok=True)
    for command in (["status"], ["check", code]):
        refused = edge(*command, "--config", str(config))
        assert refused.returncode == EXIT_CONFIG  # systemd stops restarting the daemon
        assert "is empty (0 bytes)" in refused.stderr
        assert "edge init --config" in refused.stderr
        assert store.read_bytes() == b""
    made = edge("init", "--config", str(config))
    assert made.returncode == 0, made.stderr
    assert "moved to" in made.stdout
    assert [p.name for p in tmp_path.glob("edge.db.replaced-*")]
    assert edge("check", code, "--config", str(config)).returncode == 0
    again = edge("init", "--config", str(config))
    assert (again.returncode, "already an edge store" in again.stderr) == (1, True)


def test_a_lost_journal_file_stops_every_command_until_edge_init(
    gate: tuple[Path, Path], tmp_path: Path
) -> None:
    key_file, config = gate
    code = edge("issue", "--key", str(key_file), "--credential", "5").stdout.strip()
    assert edge("status", "--config", str(config)).returncode == 0
    journal = tmp_path / "edge.journal.db"  # beside the store: the passages recorded here
    assert journal.exists()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{journal}{suffix}").unlink(missing_ok=True)
    refused = edge("status", "--config", str(config))
    assert refused.returncode == EXIT_CONFIG
    assert "journal file is missing" in refused.stderr
    assert not journal.exists()  # never re-created behind the operator's back
    made = edge("init", "--config", str(config))
    assert made.returncode == 0, made.stderr
    assert "every ticket counts as unused" in made.stdout
    assert edge("check", code, "--config", str(config)).returncode == 0
    again = edge("init", "--config", str(config))
    assert (again.returncode, "already an edge store" in again.stderr) == (1, True)
