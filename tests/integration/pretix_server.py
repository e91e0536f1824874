"""A real pretix from PyPI on SQLite over loopback, for the integration tests and benchmarks.

The first run installs pretix into .cache/pretix-venv and keeps a migrated database template
in .cache, so later runs start in seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sync.pretix.client import PretixSettings

PRETIX_VERSION = "2026.8.0"  # the version the secret vectors in test_pretix_secrets come from
ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache"
VENV = CACHE / "pretix-venv"
TEMPLATE_DB = CACHE / f"pretix-{PRETIX_VERSION}-migrated.sqlite3"
SEED = Path(__file__).with_name("pretix_seed.py")
INSTALL_SECONDS = 900
MIGRATE_SECONDS = 600
START_SECONDS = 60


def _run(args: list[str], *, timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )
    if result.returncode:
        raise RuntimeError(
            f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}"
        )
    return result


def _pretix_python() -> Path:
    """pretix's interpreter, installing pretix from PyPI on first use."""
    python = VENV / "bin" / "python"
    stamp = VENV / f".installed-pretix-{PRETIX_VERSION}"
    if not stamp.exists():
        # Minutes of pip with nothing on screen look like a hang: say what runs, past pytest's
        # output capture, and how long it took.
        started = time.monotonic()
        print(
            f"\ninstalling pretix {PRETIX_VERSION} from PyPI into {VENV} (once, a few minutes)",
            file=sys.__stderr__,
            flush=True,
        )
        shutil.rmtree(VENV, ignore_errors=True)
        CACHE.mkdir(exist_ok=True)
        base = getattr(sys, "_base_executable", sys.executable)
        _run([base, "-m", "venv", str(VENV)], timeout=120)
        _run(
            [
                str(python),
                *("-m", "pip", "install", "-q", "--disable-pip-version-check"),
                f"pretix=={PRETIX_VERSION}",
            ],
            timeout=INSTALL_SECONDS,
        )
        stamp.touch()
        print(f"pretix installed in {time.monotonic() - started:.0f} s", file=sys.__stderr__)
    return python


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Pretix:
    """A running pretix and what the seed script made in it."""

    url: str
    seed: dict[str, Any]

    def settings(self, checkin_list: int | None = None) -> PretixSettings:
        return PretixSettings(
            url=self.url,
            organizer=self.seed["organizer"],
            event=self.seed["event"],
            checkin_list=checkin_list or self.seed["list"],
            token=self.seed["token"],
        )


@contextlib.contextmanager
def running_pretix(home: Path) -> Iterator[Pretix]:
    """pretix on 127.0.0.1 with SQLite in `home`, seeded; stopped on exit."""
    python = str(_pretix_python())
    data = home / "data"
    data.mkdir()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    config = home / "pretix.cfg"
    config.write_text(
        "[pretix]\ninstance_name=edge-test\n"
        f"url={url}\ncurrency=EUR\ndatadir={data}\n"
        f"[database]\nbackend=sqlite3\nname={data / 'db.sqlite3'}\n"
        "[django]\ndebug=off\n"
        "[mail]\nfrom=test@example.org\nhost=127.0.0.1\nport=9\n"
    )
    env = {**os.environ, "PRETIX_CONFIG_FILE": str(config)}
    env.pop("VIRTUAL_ENV", None)
    if TEMPLATE_DB.exists():
        shutil.copyfile(TEMPLATE_DB, data / "db.sqlite3")
    else:
        print("migrating a new pretix database (once, about a minute)", file=sys.__stderr__)
    _run([python, "-m", "pretix", "migrate", "--noinput"], timeout=MIGRATE_SECONDS, env=env)
    if not TEMPLATE_DB.exists():
        partial = TEMPLATE_DB.with_suffix(".partial")
        shutil.copyfile(data / "db.sqlite3", partial)
        partial.replace(TEMPLATE_DB)
    seed = json.loads(_run([python, str(SEED)], timeout=120, env=env).stdout.splitlines()[-1])
    log = (home / "server.log").open("w")
    server = subprocess.Popen(
        [python, "-m", "pretix", "runserver", "--noreload", f"127.0.0.1:{port}"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"pretix exited: {(home / 'server.log').read_text()[-3000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("pretix did not listen within a minute")
            time.sleep(0.2)  # polling a port another process opens: no event to wait on
        yield Pretix(url, seed)
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
