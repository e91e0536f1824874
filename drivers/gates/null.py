"""An actuator that does nothing: lanes without a turnstile (handheld scanners)."""

from __future__ import annotations

from dataclasses import dataclass

from drivers.protocols import Outcome


@dataclass(frozen=True, slots=True)
class NullActuatorSettings:
    """No settings."""


class NullActuator:
    """Accepts every outcome; the scanner itself shows the decision."""

    def __init__(self, name: str, settings: NullActuatorSettings) -> None:
        del settings
        self.name = name

    async def signal(self, outcome: Outcome, text: str) -> None:
        """Nothing to do."""
        del outcome, text

    async def close(self) -> None:
        """Nothing to release."""
