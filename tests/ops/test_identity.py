"""The device key: created once, private, never replaced."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.core.errors import ConfigError
from edge.ops import identity


def test_created_on_first_use_with_mode_0600_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "device.key"
    first = identity.ensure(path)
    assert path.stat().st_mode & 0o777 == 0o600
    before = path.read_bytes()
    again = identity.ensure(path)
    assert again.public_b64 == first.public_b64
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["device.key"]  # no temporary left


def test_a_key_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "device.key"
    identity.ensure(path)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=r"readable by others \(mode 644\); run: chmod 600"):
        identity.ensure(path)


def test_a_damaged_key_is_refused_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "device.key"
    path.write_text('private = "short"\n', encoding="ascii")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="not an edge device key file"):
        identity.ensure(path)
    assert path.read_text(encoding="ascii") == 'private = "short"\n'


def test_missing_state_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot create the device key"):
        identity.ensure(tmp_path / "missing" / "device.key")
