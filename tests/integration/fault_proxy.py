"""A TCP proxy that drops, delays, duplicates and cuts connections mid-body (sync fault tests).

It runs its own event loop in a thread, so synchronous tests and benchmarks can use it.
Each accepted connection draws one fault (or none) from a seeded generator:

- ``refuse``: closed at once, nothing forwarded;
- ``blackhole``: accepted and read, never forwarded nor answered (the client times out);
- ``delay``: every chunk in both directions waits 20..200 ms;
- ``duplicate``: the client's bytes also go to a second upstream connection whose answers
  are discarded, so the server sees every request twice;
- ``cut-request`` / ``cut-response``: the connection is closed after a random number of
  bytes of the request or of the answer, mid-body.

Connections are kept alive by HTTP clients, so a connection without a fault may still be
cut later: each chunk it carries is cut with a fifth of the fault rate.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import threading
from collections.abc import Callable

FAULTS = ("refuse", "blackhole", "delay", "duplicate", "cut-request", "cut-response")
CHUNK = 65536


class FaultProxy:
    """Forwards 127.0.0.1:port to 127.0.0.1:target, with faults at a given rate."""

    def __init__(self, target: int, *, rate: float, seed: int, port: int = 0) -> None:
        self.target = target
        self.rate = rate
        self.port = port
        self.counts: collections.Counter[str] = collections.Counter()
        self._rng = random.Random(seed)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepted = 0  # connections accepted so far; each is numbered in order
        self._frozen_below = 0  # connections numbered below this forward nothing any more

    def start(self) -> int:
        """Listen; returns the port."""
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self.port = future.result(10)
        return self.port

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        return int(self._server.sockets[0].getsockname()[1])

    def stop(self) -> None:
        """Close the listener and every connection."""

        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def blackhole_open(self) -> None:
        """Every connection open now silently drops what it carries, both ways, from now on
        (a NAT entry lost, a cable pulled); new connections pass as before."""
        self._loop.call_soon_threadsafe(setattr, self, "_frozen_below", self._accepted)

    def cut_open(self) -> None:
        """Close every connection open now, abruptly; new connections pass as before."""

        async def cut() -> None:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cut(), self._loop).result(10)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        fault = self._rng.choice(FAULTS) if self._rng.random() < self.rate else "pass"
        self.counts[fault] += 1
        budget = self._rng.randint(1, 600)
        delay = self._rng.uniform(0.02, 0.2)
        number = self._accepted
        self._accepted += 1
        task = asyncio.get_running_loop().create_task(
            self._connection(
                reader, writer, fault, budget, delay, lambda: number < self._frozen_below
            )
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connection(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        fault: str,
        budget: int,
        delay: float,
        frozen: Callable[[], bool],
    ) -> None:
        writers = [writer]
        try:
            if fault == "refuse":
                return
            if fault == "blackhole":
                while await reader.read(CHUNK):
                    pass
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
            writers.append(up_writer)
            copies: list[asyncio.StreamWriter] = []
            if fault == "duplicate":
                dup_reader, dup_writer = await asyncio.open_connection("127.0.0.1", self.target)
                writers.append(dup_writer)
                copies.append(dup_writer)
                drain = asyncio.create_task(self._discard(dup_reader))
            wait = delay if fault == "delay" else 0.0
            request_budget = budget if fault == "cut-request" else None
            response_budget = budget if fault == "cut-response" else None
            pipes = [
                asyncio.create_task(
                    self._pipe(reader, up_writer, request_budget, wait, copies, self._cut, frozen)
                ),
                asyncio.create_task(
                    self._pipe(up_reader, writer, response_budget, wait, [], self._cut, frozen)
                ),
            ]
            try:
                await asyncio.wait(pipes, return_when=asyncio.FIRST_EXCEPTION)
            finally:
                for pipe in pipes:
                    pipe.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
                if fault == "duplicate":
                    drain.cancel()
        except (OSError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for w in writers:
                w.close()
                with contextlib.suppress(Exception):
                    await w.wait_closed()

    @staticmethod
    async def _discard(reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while await reader.read(CHUNK):
                pass

    def _cut(self) -> bool:
        cut = self._rng.random() < self.rate / 5
        if cut:
            self.counts["cut-later"] += 1
        return cut

    @staticmethod
    async def _pipe(
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        budget: int | None,
        wait: float,
        copies: list[asyncio.StreamWriter],
        cut: Callable[[], bool],
        frozen: Callable[[], bool],
    ) -> None:
        sent = 0
        while data := await source.read(CHUNK):
            if frozen():
                continue
            if wait:
                await asyncio.sleep(wait)
            if cut():
                budget = sent + len(data) // 2
            if budget is not None and sent + len(data) >= budget:
                sink.write(data[: budget - sent])
                await sink.drain()
                raise ConnectionResetError("cut by the fault proxy")
            sent += len(data)
            sink.write(data)
            for copy in copies:
                copy.write(data)
            await sink.drain()
        with contextlib.suppress(OSError):
            sink.write_eof()
