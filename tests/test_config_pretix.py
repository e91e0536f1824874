"""The [pretix] section: a gate whose central system is pretix."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge import daemon
from edge.config import EXIT_CONFIG, load, parse
from edge.core.errors import ConfigError
from edge.store.database import Store
from sync.pretix.resolver import KEYS_CURSOR, LIST_CURSOR, ListState, keys_to_json
from sync.pretix.secrets import Ticket, raw_key, sign_sig1
from sync.pretix.service import PretixService, read_token
from sync.pretix.settings import PretixConfig

DEVICE = '[device]\nname = "g"\nstore = "edge.db"\n[metrics]\nenabled = false\n'
PRETIX = """
[pretix]
url = "https://pretix.example.org"
organizer = "venue"
event = "openair"
checkin_list = 3
token_file = "pretix.token"
"""


def test_section_parses_with_defaults(tmp_path: Path) -> None:
    config = parse(DEVICE + PRETIX, tmp_path / "edge.toml")
    assert config.pretix == PretixConfig(
        url="https://pretix.example.org",
        organizer="venue",
        event="openair",
        checkin_list=3,
        token_file="pretix.token",
    )
    assert config.pretix.sync_interval_seconds == 30
    assert parse(DEVICE, tmp_path / "edge.toml").pretix is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("https://pretix.example.org", "ftp://x"), "pretix: url must start with http"),
        (("checkin_list = 3", "checkin_list = 0"), "checkin_list must be a check-in list id"),
        (("checkin_list = 3", 'checkin_list = "3"'), "pretix.checkin_list: must be integer"),
        (('event = "openair"', 'event = " "'), "organizer and event must be pretix slugs"),
        (('event = "openair"', "sync_interval_seconds = 1\nevent = 'e'"), "5..3600"),
        (('token_file = "pretix.token"', ""), "pretix.token_file: is required"),
        (('token_file = "pretix.token"', 'token = "abc"'), "unknown key 'token'"),
    ],
)
def test_section_errors_name_the_key(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(DEVICE + PRETIX.replace(*change), tmp_path / "edge.toml")


def test_token_file(tmp_path: Path) -> None:
    token = tmp_path / "pretix.token"
    with pytest.raises(ConfigError, match="cannot read the token"):
        read_token(token)
    token.write_text("abc def\n")
    with pytest.raises(ConfigError, match="one pretix API or device token"):
        read_token(token)
    token.write_text("npq19o34mwq0zvykmn2nrt1u5aospk40\n")
    assert read_token(token) == "npq19o34mwq0zvykmn2nrt1u5aospk40"


async def test_daemon_without_token_file_does_not_start(tmp_path: Path) -> None:
    config = parse(DEVICE + PRETIX, tmp_path / "edge.toml")
    with pytest.raises(ConfigError, match=r"pretix\.token: cannot read the token"):
        await asyncio.wait_for(daemon.serve(config), 30)


async def test_service_from_its_settings(tmp_path: Path) -> None:
    (tmp_path / "pretix.token").write_text("tok3n\n")
    text = DEVICE + PRETIX.replace("checkin_list = 3", "checkin_list = 3\ndevice_token = true")
    config = parse(text, tmp_path / "edge.toml")
    assert config.pretix is not None
    store = await Store.open(tmp_path / "edge.db")
    try:
        service = PretixService.from_settings(
            config.pretix, store, token_file=config.file(config.pretix.token_file)
        )
    finally:
        await store.close()
    assert service.settings.token == "tok3n"
    assert service.settings.device
    assert service.settings.event_api == (
        "https://pretix.example.org/api/v1/organizers/venue/events/openair"
    )


def test_example_configuration_parses() -> None:
    config = load(Path(__file__).parent.parent / "config" / "pretix-gate.toml")
    assert config.pretix is not None
    assert config.pretix.checkin_list == 3
    assert config.lanes


async def test_edge_check_decides_pretix_secrets(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
    store = await Store.open(tmp_path / "edge.db")
    try:
        await store.set_cursor(KEYS_CURSOR, keys_to_json([raw_key(key.public_key())]))
        await store.set_cursor(
            LIST_CURSOR,
            ListState(
                3, frozenset({1}), None, include_pending=False, multiple_entries=False
            ).to_json(),
        )
    finally:
        await store.close()
    lanes = (
        '[[scanners]]\nname = "s"\ntype = "lines"\n[[actuators]]\nname = "a"\ntype = "console"\n'
    )
    lanes += '[[lanes]]\nname = "L"\nactuator = "a"\nentry = ["s"]\n'
    config = tmp_path / "edge.toml"
    config.write_text(DEVICE + PRETIX + lanes)

    def check(secret: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "edge.cli", "check", secret, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    admitted = check(sign_sig1(Ticket(seed="abcdefghi", item=1), key))
    assert (admitted.returncode, admitted.stdout.split()[:2]) == (0, ["ADMIT", "admitted"])
    other = check(sign_sig1(Ticket(seed="abcdefghi", item=2), key))
    assert (other.returncode, other.stdout.split()[:2]) == (1, ["REJECT", "wrong-gate"])


def test_config_check_and_start_refuse_rules_the_gate_cannot_evaluate(tmp_path: Path) -> None:
    lanes = (
        '[[scanners]]\nname = "s"\ntype = "lines"\n[[actuators]]\nname = "a"\ntype = "console"\n'
        '[[lanes]]\nname = "North 1"\nactuator = "a"\nentry = ["s"]\n'
    )
    config = tmp_path / "edge.toml"
    config.write_text(DEVICE + PRETIX + lanes)
    (tmp_path / "pretix.token").write_text("a" * 64)

    def config_check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "edge.cli", "config", "check", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    async def sync_list(rules: str) -> None:
        store = await Store.open(tmp_path / "edge.db")
        try:
            state = ListState(3, None, None, include_pending=False, multiple_entries=False)
            await store.set_cursor(LIST_CURSOR, dataclasses.replace(state, rules=rules).to_json())
        finally:
            await store.close()

    assert config_check().returncode == 0  # nothing synced yet
    asyncio.run(sync_list('{"and": [{"<": [{"var": "entries_number"}, 2]}]}'))
    assert config_check().returncode == 0
    asyncio.run(sync_list('{"and": [{"if": [true, true, false]}]}'))
    refused = config_check()
    assert refused.returncode == EXIT_CONFIG
    assert "North 1" in refused.stderr
    assert "'if'" in refused.stderr
    with pytest.raises(ConfigError, match="'if'"):
        asyncio.run(daemon.serve(parse(config.read_text(), config)))
