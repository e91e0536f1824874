"""A pretix pull in a worker process: pretix's pages are parsed and applied there.

A re-sync reads every order of the event: for 50,000 positions, 1,000 pages of JSON, each
parsed and turned into positions, credentials and code hashes. Done in the daemon, even in a
thread, that holds the interpreter lock, and the 50,000 positions alive until the pull ends
make each of the garbage collector's full passes take tens of milliseconds (measured: 70 ms);
a scan waits for both. The daemon therefore runs the whole pull, HTTP included, in
`python -m sync.pretix.worker STORE`: a child process below the daemon's CPU priority except
for its store writer thread (whatever that writes holds the write lock a journal record may
wait for), writing through its own store connection in parts. The store is the only state the
two share: the daemon reloads its resolver once the worker reported the pull written.

One process per pull: it ends after answering, so the memory a pull needs (for 50,000
positions ~70 MB beyond the ~45 MB of its imports, much of which a Python process keeps once
it had it) goes back to the system between pulls; starting one costs ~0.35 s of CPU, at the
worker's low priority.

Frames both ways: one line of JSON. A request carries the pretix settings, the token too (on
a pipe, never on the command line, where `ps` would show it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp

from edge.core.errors import EdgeError, StoreError, SyncError
from edge.store.database import Store
from edge.store.writer import yield_cpu
from sync.pretix.client import PretixClient, PretixSettings
from sync.pretix.connector import PretixConnector, PullStats
from sync.pretix.resolver import PretixResolver

_LOGGER = logging.getLogger(__name__)

MAX_LINE = 1 << 20  # a request or reply line: settings or stats, a few hundred bytes
# A pull of the largest event (client.MAX_PAGES pages) takes longer; a worker silent for this
# long is stuck, and is killed: the next pull starts a new one.
PULL_TIMEOUT_SECONDS = 3600.0
CLOSE_SECONDS = 5.0  # a worker asked to stop finishes the part it writes within this
_ROOT = str(Path(__file__).resolve().parent.parent.parent)  # holds the `sync` package


class PullWorker:
    """The daemon's side: a worker process per pull, for one store."""

    def __init__(self, store_path: str) -> None:
        self._path = store_path
        self._process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()  # one pull at a time

    async def _start(self) -> asyncio.subprocess.Process:
        if self._process is None or self._process.returncode is not None:
            # The daemon's own code, wherever it was imported from (a clone, a package).
            path = [_ROOT, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "sync.pretix.worker",
                self._path,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=MAX_LINE,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(path)},
            )
        return self._process

    async def pull(self, settings: PretixSettings) -> PullStats:
        """Pull from pretix into the store in the worker; SyncError or StoreError as a pull
        in this process would raise them."""
        async with self._lock:
            process = await self._start()
            if process.stdin is None or process.stdout is None:
                raise SyncError("the pretix worker has no pipes")
            request = {"settings": dataclasses.asdict(settings)}
            answered = False
            try:
                process.stdin.write(json.dumps(request).encode() + b"\n")
                await process.stdin.drain()
                line = await asyncio.wait_for(process.stdout.readline(), PULL_TIMEOUT_SECONDS)
                answered = bool(line)
            except (OSError, ValueError, TimeoutError) as err:
                raise SyncError(f"the pretix worker failed: {type(err).__name__}") from err
            finally:
                if not answered:
                    # Stuck, gone, or its caller cancelled: a reply that came later would
                    # answer the next request. The next pull starts a new worker.
                    self._process = None
                    if process.returncode is None:
                        process.kill()
            if not line:
                await process.wait()
                raise SyncError(f"the pretix worker exited (status {process.returncode})")
            await self._stop(kill=False)  # it has answered: it ends, and frees its memory
        try:
            reply = json.loads(line)
            error = reply.get("error")
            if error is not None:
                if reply.get("kind") == "store":
                    raise StoreError(str(error))
                raise SyncError(str(error))
            return PullStats(**reply["stats"])
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise SyncError(f"the pretix worker answered {line[:100]!r}: {err}") from err

    async def _stop(self, *, kill: bool) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        if not kill and process.stdin is not None:
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), CLOSE_SECONDS)
                return
            except TimeoutError:
                pass
        process.kill()
        await process.wait()

    async def close(self) -> None:
        """Stop a worker left running (none is, between pulls)."""
        async with self._lock:
            await self._stop(kill=False)


# -- the worker process ------------------------------------------------------------------------


def _settings(request: dict[str, Any]) -> PretixSettings:
    fields = request.get("settings")
    if not isinstance(fields, dict):
        raise SyncError("pretix worker request: no settings")
    return PretixSettings(**fields)


async def _pull(store: Store, session: aiohttp.ClientSession, line: bytes) -> dict[str, Any]:
    """One request's reply: the pull's stats, or its error."""
    try:
        request = json.loads(line)
        client = PretixClient(_settings(request), session=session)
        connector = PretixConnector(store, client, PretixResolver(store))
        stats = await connector.pull()
    except StoreError as err:
        return {"error": str(err), "kind": "store"}
    except EdgeError as err:
        return {"error": str(err), "kind": "sync"}
    except (ValueError, TypeError, AttributeError) as err:
        return {"error": f"pretix worker request: {err}", "kind": "sync"}
    return {"stats": dataclasses.asdict(stats)}


async def _serve(path: str, requests: BinaryIO, replies: BinaryIO) -> None:
    # Threads for blocking work (the store's full reads and comparisons) yield the CPU from
    # their start; the store's writer thread (its own, started below) keeps the daemon's
    # priority; this thread (HTTP, JSON, conversion) yields it once the store is open.
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(thread_name_prefix="pretix", initializer=yield_cpu)
    )
    store = await Store.open(path)
    yield_cpu()
    try:
        async with aiohttp.ClientSession() as session:
            while line := await asyncio.to_thread(requests.readline, MAX_LINE):
                reply = await _pull(store, session, line)
                replies.write(json.dumps(reply).encode() + b"\n")
                replies.flush()
    finally:
        await store.close()


def main(argv: list[str]) -> int:
    """Entry point of the worker process: STORE_PATH; requests on stdin, replies on stdout."""
    (path,) = argv
    logging.basicConfig(level=logging.WARNING, format="pretix worker: %(name)s: %(message)s")
    asyncio.run(_serve(path, sys.stdin.buffer, sys.stdout.buffer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
