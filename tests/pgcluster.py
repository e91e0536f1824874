"""A throwaway PostgreSQL for tests that run the central system on both of its backends.

`EDGE_TEST_POSTGRES` names a server to use (a DSN whose user may create databases); without it
the first test that needs one starts a private cluster with Debian's PostgreSQL binaries on a
unix socket in a temporary directory (as the `postgres` user when running as root, since
PostgreSQL refuses root) and stops it when the session ends. Every test gets a new database.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import asyncpg

ENV = "EDGE_TEST_POSTGRES"
_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
_counter = itertools.count(1)


def binaries() -> Path | None:
    """The newest installed PostgreSQL's bin directory, or None."""
    for directory in _BIN_DIRS:
        if (directory / "initdb").exists():
            return directory
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class Cluster:
    """A private PostgreSQL cluster, or the server EDGE_TEST_POSTGRES names."""

    def __init__(self) -> None:
        self.dsn = os.environ.get(ENV, "")
        self._directory: Path | None = None
        self._bin: Path | None = None
        self._user: str | None = None
        if not self.dsn:
            self._start()

    def _run(self, *argv: str) -> None:
        assert self._bin is not None
        command = [str(self._bin / argv[0]), *argv[1:]]
        if self._user:
            command = ["runuser", "-u", self._user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def _start(self) -> None:
        self._bin = binaries()
        if self._bin is None:
            raise RuntimeError(
                f"no PostgreSQL here: install it (apt-get install postgresql) or set {ENV}"
            )
        self._directory = Path(tempfile.mkdtemp(prefix="edge-pg-"))
        self._user = "postgres" if os.geteuid() == 0 else None
        if self._user:
            shutil.chown(self._directory, self._user)
            self._directory.chmod(0o755)
        data = self._directory / "data"
        self._run("initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8")
        options = f"-k {self._directory} -c listen_addresses='' -c fsync=off -c max_connections=200"
        log = self._directory / "log"
        self._run("pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-w", "start")
        self.dsn = f"postgresql://postgres@/postgres?host={self._directory}"

    def database(self) -> str:
        """A new empty database; its DSN."""
        name = f"edge_test_{os.getpid()}_{next(_counter)}"

        async def create() -> None:
            conn = await asyncpg.connect(self.dsn)
            try:
                await conn.execute(f"DROP DATABASE IF EXISTS {name}")
                await conn.execute(f"CREATE DATABASE {name}")
            finally:
                await conn.close()

        asyncio.run(create())
        base, _, query = self.dsn.partition("?")
        base = base.rsplit("/", 1)[0] + "/" + name
        return f"{base}?{query}" if query else base

    def stop(self) -> None:
        """Stop the private cluster and remove its files."""
        if self._directory is None:
            return
        self._run("pg_ctl", "-D", str(self._directory / "data"), "-m", "immediate", "stop")
        shutil.rmtree(self._directory, ignore_errors=True)
        self._directory = None
