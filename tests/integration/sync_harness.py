"""Real processes on loopback for sync tests: one `edge-central`, gates running `edge run`.

The central system's data is administered in-process through CentralDB on the same database
(a SQLite file, or a PostgreSQL DSN several servers share); the server notices the commits, as
it does for the admin CLI. Gates are scanned
through a FIFO; each decision is read back from the gate's own journal.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import queue
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO
from urllib.parse import quote

from edge.ops import identity
from edge.store.base import journal_path
from sync.central.db import CentralDB

STARTUP_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _pump(stream: IO[bytes], lines: queue.Queue[str]) -> None:
    for raw in iter(stream.readline, b""):
        lines.put(raw.decode(errors="replace"))


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll `condition` every 10 ms; the seconds it took, or AssertionError naming `what`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - started


class CentralProcess:
    """`edge-central serve` on 127.0.0.1 port 0, with its database (by default a SQLite file
    in `directory`; `target` may name another, e.g. a PostgreSQL DSN)."""

    def __init__(self, directory: Path, target: str | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.db_path = directory / "central.db"
        self.target = target or str(self.db_path)
        self.db = CentralDB(self.target)
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.log = directory / "central.log"
        self.verbose = 0  # -v flags for `edge-central` (2: debug lines in central.log)

    def start(self, port: int = 0) -> str:
        """Start the server; returns its base URL."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "sync.central.cli", *["-v"] * self.verbose, "--db",
                 self.target, "serve", "--port", str(port)],
                stdout=subprocess.PIPE,
                stderr=log,
            )  # fmt: skip
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()
        match = re.search(r"listening on (\S+)", line)
        assert match, f"edge-central did not start: {line!r}; log: {self.log.read_text()}"
        self.url = match.group(1)
        return self.url

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Stop the server (SIGKILL by default)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(10)
        self.process = None

    def close(self) -> None:
        """Stop the server and close the database."""
        self.kill(signal.SIGTERM)
        self.db.close()


class GateProcess:
    """`edge run` with one lane fed by a FIFO, syncing with a central system."""

    def __init__(self, directory: Path, name: str, key_id: int, public_b64: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.name = name
        self.fifo = directory / "scans"
        os.mkfifo(self.fifo)
        self.store_path = directory / "edge.db"
        self.key_id, self.public_b64 = key_id, public_b64
        self.identity = identity.ensure(identity.path_for(self.store_path))
        self.process: subprocess.Popen[bytes] | None = None
        self._writer: int | None = None
        self._lines: queue.Queue[str] = queue.Queue()
        self.log = directory / "gate.log"
        self.sync_extra = ""  # more [sync] lines, e.g. "push_listen = false"
        self.verbose = 0  # -v flags for `edge` (2: debug lines in gate.log)

    @property
    def public_key(self) -> bytes:
        """The device key to register with the central system."""
        return base64.b64decode(self.identity.public_b64)

    def config(
        self,
        central_url: str | Sequence[str],
        pull_interval: float,
        push_port: int = 0,
        push_url: str = "",
    ) -> Path:
        """Write the gate's configuration (several URLs: central processes tried in order)."""
        path = self.directory / "gate.toml"
        if isinstance(central_url, str):
            central = f'url = "{central_url}"'
        else:
            central = f"urls = {json.dumps(list(central_url))}"  # a JSON list of text is TOML
        path.write_text(
            f"""
[device]
name = "{self.name}"
store = "edge.db"
repeat_window_ms = 0

[[keys]]
id = {self.key_id}
public = "{self.public_b64}"

[[scanners]]
name = "fifo"
type = "lines"
path = "{self.fifo}"

[[actuators]]
name = "turnstile"
type = "console"
color = "never"

[[lanes]]
name = "{self.name}-lane"
actuator = "turnstile"
entry = ["fifo"]

[metrics]
port = 0

[sync]
{central}
push_port = {push_port}
push_url = "{push_url}"
pull_interval_seconds = {pull_interval}
timeout_seconds = 2.0
{self.sync_extra}
""",
            encoding="utf-8",
        )
        return path

    def start(
        self,
        central_url: str | Sequence[str],
        pull_interval: float = 5.0,
        push_port: int = 0,
        push_url: str = "",
        prefix: tuple[str, ...] = (),
    ) -> None:
        """Start the daemon (after `prefix`, e.g. prlimit) and open its scanner FIFO."""
        config = self.config(central_url, pull_interval, push_port, push_url)
        self._lines = queue.Queue()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    *prefix,
                    sys.executable,
                    "-m",
                    "edge.cli",
                    *["-v"] * self.verbose,
                    "run",
                    "--config",
                    str(config),
                ],
                stdout=subprocess.PIPE,
                stderr=log,
            )
        assert self.process.stdout is not None
        threading.Thread(target=_pump, args=(self.process.stdout, self._lines), daemon=True).start()
        self._writer = self._open_fifo()

    def _open_fifo(self) -> int:
        """The FIFO's write end, once the daemon reads it; fails if the daemon died first."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            try:
                fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as err:
                if err.errno != errno.ENXIO:  # ENXIO: no reader yet
                    raise
            else:
                os.set_blocking(fd, True)
                return fd
            assert self.process is not None
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.01)

    def scan(self, code: str, timeout: float = 10.0) -> str:
        """Scan a code; the reason the gate decided (from its journal)."""
        assert self._writer is not None
        before = self.last_seq()
        os.write(self._writer, code.encode() + b"\n")
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"{self.name}: no decision within {timeout} s; log: {self.log.read_text()[-2000:]}"
            ) from None
        assert line.startswith(("ADMIT", "REJECT")), line
        row = self._query("SELECT seq, reason FROM journal ORDER BY seq DESC LIMIT 1")
        assert row is not None, f"{self.name}: no journal"
        assert int(row[0]) > before, f"{self.name}: decision not journaled"  # type: ignore[call-overload]
        return str(row[1])

    def _query(self, sql: str) -> tuple[object, ...] | None:
        conn = sqlite3.connect(f"file:{self.store_path}?mode=ro", uri=True, timeout=10)
        try:
            journal = quote(journal_path(str(self.store_path)))
            conn.execute(f"ATTACH DATABASE 'file:{journal}?mode=ro' AS journal_file")
            return conn.execute(sql).fetchone()  # type: ignore[no-any-return]
        except sqlite3.OperationalError:
            return None  # not migrated yet
        finally:
            conn.close()

    def last_seq(self) -> int:
        """The newest journal sequence number (0: none)."""
        row = self._query("SELECT coalesce(max(seq), 0) FROM journal")
        return int(row[0]) if row else 0  # type: ignore[call-overload]

    def revision(self) -> int | None:
        """The central revision the gate's store holds."""
        row = self._query("SELECT value FROM sync_cursors WHERE name = 'sync.revision'")
        return int(str(row[0])) if row else None

    def entries(self, credential_id: int) -> int:
        """Entries the gate knows of for a credential, at any gate."""
        row = self._query(f"SELECT count FROM entries WHERE credential_id = {int(credential_id)}")
        return int(row[0]) if row else 0  # type: ignore[call-overload]

    def cursor(self, name: str) -> str | None:
        """A sync cursor of the gate's store."""
        row = self._query(f"SELECT value FROM sync_cursors WHERE name = '{name}'")
        return None if row is None else str(row[0])

    def count(self, table: str) -> int:
        """Rows in one of the gate's tables."""
        row = self._query(f"SELECT count(*) FROM {table}")
        return int(row[0]) if row else 0  # type: ignore[call-overload]

    def unsent(self) -> int:
        """Journal rows not acknowledged by the central system."""
        row = self._query("SELECT count(*) FROM journal WHERE uploaded = 0")
        return int(row[0]) if row else 0  # type: ignore[call-overload]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Stop the daemon (SIGKILL by default)."""
        if self._writer is not None:
            os.close(self._writer)
            self._writer = None
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(10)
        self.process = None
