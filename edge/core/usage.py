"""Command-line help shared by `edge` and `edge-central`: each subcommand shows an example."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any, TextIO

PROGRESS_SECONDS = 1.0  # a long command prints where it is at most this often


def subcommand(sub: Any, name: str, summary: str, *examples: str) -> argparse.ArgumentParser:
    """A subparser whose --help ends with worked examples (kept as written, one a line)."""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples) if examples else None
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=summary,
        description=summary[:1].upper() + summary[1:] + ".",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def positive(name: str, maximum: int, hint: str = "") -> Any:
    """An argparse type: an integer 1..maximum, with a message that names the option's rule."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} is a whole number, not {value!r}") from None
        if not 1 <= number <= maximum:
            raise argparse.ArgumentTypeError(
                f"{name} must be 1..{maximum:,}, not {number}" + (f"; {hint}" if hint else "")
            )
        return number

    return parse


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
