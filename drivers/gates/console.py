"""An actuator that prints each outcome as a line, in colour on a terminal (demo, tests)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TextIO

from drivers.protocols import Outcome

_COLOURS = {Outcome.ADMIT_ENTRY: "32", Outcome.ADMIT_EXIT: "36", Outcome.REJECT: "31"}
_LABELS = {Outcome.ADMIT_ENTRY: "ADMIT", Outcome.ADMIT_EXIT: "EXIT", Outcome.REJECT: "REJECT"}


@dataclass(frozen=True, slots=True)
class ConsoleActuatorSettings:
    """Configuration of a console actuator."""

    color: str = "auto"  # "auto" (when the output is a terminal), "always" or "never"

    def __post_init__(self) -> None:
        if self.color not in ("auto", "always", "never"):
            raise ValueError(f"color must be 'auto', 'always' or 'never', not {self.color!r}")


class ConsoleActuator:
    """Writes `LABEL  name  text` per outcome; a line is flushed before signal() returns."""

    def __init__(
        self, name: str, settings: ConsoleActuatorSettings, *, stream: TextIO | None = None
    ) -> None:
        self.name = name
        self._stream = stream if stream is not None else sys.stdout
        isatty = getattr(self._stream, "isatty", lambda: False)()
        self._colour = settings.color == "always" or (settings.color == "auto" and isatty)

    async def signal(self, outcome: Outcome, text: str) -> None:
        """Print the outcome."""
        label = _LABELS[outcome]
        if self._colour:
            label = f"\x1b[1;{_COLOURS[outcome]}m{label}\x1b[0m"
        self._stream.write(f"{label}  {self.name}  {text}\n")
        self._stream.flush()

    async def close(self) -> None:
        """Nothing to release."""
