"""The [sync] section: defaults, and errors that name the key and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import parse
from edge.core.errors import ConfigError

DEVICE = '[device]\nname = "g"\n'


KEY = '[[keys]]\nid = 1\npublic = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="\n'


def test_sync_is_optional_and_has_defaults() -> None:
    assert parse(DEVICE, Path("e.toml")).sync is None
    sync = parse(DEVICE + KEY + '[sync]\nurl = "http://c:8400"\n', Path("e.toml")).sync
    assert sync is not None
    assert (sync.push_address, sync.push_port, sync.upload_batch) == ("127.0.0.1", 8401, 1000)


def test_sync_without_keys_is_refused_with_what_to_add() -> None:
    with pytest.raises(ConfigError) as caught:
        parse(DEVICE + '[sync]\nurl = "http://c:8400"\n', Path("e.toml"))
    assert "e.toml: keys: [sync] needs the central system's public keys as [[keys]]" in str(
        caught.value
    )


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("[sync]\n", 'e.toml: sync: url (or urls = ["https://c1", "https://c2"]) must name'),
        (
            '[sync]\nurl = "ftp://c"\n',
            "sync: url must be an http:// or https:// URL, not 'ftp://c'",
        ),
        ('[sync]\nurl = "http://c"\npush_address = "gate.local"\n', "push_address must be an IP"),
        ('[sync]\nurl = "http://c"\npush_port = -1\n', "push_port must be 0..65535"),
        ('[sync]\nurl = "http://c"\nupload_batch = 0\n', "upload_batch must be 1..10000"),
        ('[sync]\nurl = "http://c"\npull_interval_seconds = 0\n', "pull_interval_seconds must be"),
        ('[sync]\nurl = "http://c"\ntimeout_seconds = "10s"\n', "must be number, not str '10s'"),
        ('[sync]\nurl = "http://c"\ntoken = "x"\n', "sync: unknown key 'token'; allowed: url,"),
    ],
)
def test_sync_errors_name_the_key(section: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(DEVICE + section, Path("e.toml"))
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[device]\nname = "' + "x" * 201 + '"\n', "device: name must be at most 200 printable"),
        ('[device]\nname = "a\\tb"\n', "device: name must be at most 200 printable"),
        (
            DEVICE + '[[scanners]]\nname = "s"\ntype = "lines"\n[[actuators]]\nname = "a"\n'
            'type = "console"\n[[lanes]]\nname = "L\\n2"\nactuator = "a"\nentry = ["s"]\n',
            "lanes[0]: name must be 1..200 printable characters",
        ),
    ],
)
def test_names_that_travel_to_the_central_system_are_bounded(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(text, Path("e.toml"))
    assert message in str(caught.value)
