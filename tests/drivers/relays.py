"""An LCUS-type relay module simulated on a pseudo-terminal: it parses the real frames."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from ptys import PtyDevice

from drivers.gates.lcus import FRAME_BYTES, RelayCommand

COMMAND_WAIT = 10.0


class LcusSimulator(PtyDevice):
    """Relay states driven by the frames the host writes; `commands` keeps them in order."""

    def __init__(self, link: Path, channels: int = 8) -> None:
        super().__init__(link)
        self.states = dict.fromkeys(range(1, channels + 1), False)
        self.commands: list[tuple[float, RelayCommand]] = []  # (monotonic time, command)

    async def command(self) -> RelayCommand:
        """The next command the host sends (waits for it), applied to `states`."""
        frame = await self.receive(FRAME_BYTES)
        command = RelayCommand.from_bytes(frame)
        self.states[command.channel] = command.on
        self.commands.append((time.monotonic(), command))
        return command

    async def commands_until(self, n: int) -> list[RelayCommand]:
        """The next `n` commands (a test that gets fewer fails after COMMAND_WAIT seconds)."""
        return [await asyncio.wait_for(self.command(), COMMAND_WAIT) for _ in range(n)]
