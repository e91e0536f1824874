"""Progress of a long command on the console."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

PROGRESS_SECONDS = 1.0  # a long command prints where it is at most this often


class Progress:
    """Progress of a long command on a stream (stderr): at most one line a second, so a run
    of minutes shows it moves, and a pipe or a log file gets a few lines, not thousands."""

    def __init__(
        self,
        what: str,
        total: int,
        stream: TextIO,
        *,
        every: float = PROGRESS_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._what = what
        self._total = total
        self._stream = stream
        self._every = every
        self._clock = clock
        self._started = clock()
        self._shown = self._started
        self._done = 0
        self._printed = False

    def update(self, done: int) -> None:
        """`done` of the total are finished; prints a line when a second has passed."""
        self._done = done
        now = self._clock()
        if now - self._shown >= self._every:
            self._shown = now
            self._printed = True
            percent = 100 * done // max(self._total, 1)
            print(f"{self._what}: {done:,} of {self._total:,} ({percent}%)", file=self._stream)
            self._stream.flush()

    def done(self) -> None:
        """The operation finished; a final line if progress was shown."""
        if self._printed:
            elapsed = self._clock() - self._started
            print(f"{self._what}: {self._done:,} done in {elapsed:.1f} s", file=self._stream)
