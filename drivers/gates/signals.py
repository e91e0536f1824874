"""What a relay gate does per outcome: turnstile pulse, lights and buzzer (pure timelines).

`timeline` turns an outcome into relay switchings at offsets from now; the actuator carries
them out. Channels are 1-based relay numbers on the board; 0 means "not connected".
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.gates.inputs import key_code
from drivers.protocols import Outcome

MAX_PATTERN_MS = 10_000  # a buzzer or light pattern longer than this is a mistake


@dataclass(frozen=True, slots=True)
class Switch:
    """Set one relay at `at` seconds after the outcome."""

    at: float
    channel: int
    on: bool


@dataclass(frozen=True, slots=True)
class SignalSettings:
    """Which relay does what, and for how long (the settings every relay board shares)."""

    channels: int = 1  # relays on the board
    entry_channel: int = 1  # pulsed to let a person in
    exit_channel: int = 0  # pulsed to let a person out (0: the entry channel)
    pulse_ms: int = 500  # how long the turnstile contact stays closed
    green_channel: int = 0  # green light (0: none)
    red_channel: int = 0  # red light (0: none)
    buzzer_channel: int = 0  # buzzer (0: none)
    light_ms: int = 2000  # how long a light stays on
    buzzer_admit: tuple[int, ...] = ()  # on, off, on, ... milliseconds; empty: silent
    buzzer_reject: tuple[int, ...] = (150, 100, 150)
    inputs: str = ""  # input device with the gate's sensors (gpio-keys), "" for none
    passage_key: str = ""  # key the passage sensor sends (KEY_F1, ...): ends the pulse early
    door_key: str = ""  # key held while the door is open
    door_held_ms: int = 10_000  # a door open longer than this is reported

    def __post_init__(self) -> None:
        if self.channels not in (1, 2, 4, 8):
            raise ValueError("channels must be 1, 2, 4 or 8")
        for key in ("entry_channel", "exit_channel", "green_channel", "red_channel"):
            if not 0 <= getattr(self, key) <= self.channels:
                raise ValueError(f"{key} must be 0..{self.channels} (0: not connected)")
        if not 0 <= self.buzzer_channel <= self.channels:
            raise ValueError(f"buzzer_channel must be 0..{self.channels} (0: not connected)")
        if self.entry_channel == 0:
            raise ValueError("entry_channel must name the turnstile's relay")
        if not 50 <= self.pulse_ms <= 10_000:
            raise ValueError("pulse_ms must be 50..10000")
        if not 100 <= self.light_ms <= MAX_PATTERN_MS:
            raise ValueError(f"light_ms must be 100..{MAX_PATTERN_MS}")
        for key in ("buzzer_admit", "buzzer_reject"):
            pattern = getattr(self, key)
            if any(not 10 <= ms <= 5000 for ms in pattern) or sum(pattern) > MAX_PATTERN_MS:
                raise ValueError(f"{key}: each step 10..5000 ms, {MAX_PATTERN_MS} ms in all")
        for key in ("passage_key", "door_key"):
            name = getattr(self, key)
            if name:
                if not self.inputs:
                    raise ValueError(f"{key} needs inputs (the input device's path)")
                key_code(name)
        if self.inputs and not (self.passage_key or self.door_key):
            raise ValueError("inputs needs passage_key or door_key")
        if not 1000 <= self.door_held_ms <= 600_000:
            raise ValueError("door_held_ms must be 1000..600000")
        used = [
            c
            for c in (self.green_channel, self.red_channel, self.buzzer_channel)
            if c in (self.entry_channel, self.exit_channel or self.entry_channel)
        ]
        if used:
            raise ValueError(f"channel {used[0]} drives the turnstile and a light or buzzer")

    @property
    def used_channels(self) -> tuple[int, ...]:
        """Every relay this configuration switches."""
        channels = (
            self.entry_channel,
            self.exit_channel,
            self.green_channel,
            self.red_channel,
            self.buzzer_channel,
        )
        return tuple(sorted({c for c in channels if c}))


def _beeps(channel: int, pattern: tuple[int, ...]) -> list[Switch]:
    out: list[Switch] = []
    at_ms = 0
    for i, ms in enumerate(pattern):
        out.append(Switch(at_ms / 1000, channel, on=i % 2 == 0))
        at_ms += ms
    if pattern and len(pattern) % 2:  # ends on an "on" step: switch it off after it
        out.append(Switch(at_ms / 1000, channel, on=False))
    return out


def timeline(settings: SignalSettings, outcome: Outcome) -> list[Switch]:
    """The switchings for one outcome, in time order; the turnstile first at 0."""
    out: list[Switch] = []
    light = settings.light_ms / 1000
    if outcome is Outcome.REJECT:
        if settings.red_channel:
            out += [Switch(0.0, settings.red_channel, on=True)]
            out += [Switch(light, settings.red_channel, on=False)]
        if settings.green_channel:
            out.append(Switch(0.0, settings.green_channel, on=False))
        buzzer = settings.buzzer_reject
    else:
        relay = settings.entry_channel
        if outcome is Outcome.ADMIT_EXIT and settings.exit_channel:
            relay = settings.exit_channel
        out += [Switch(0.0, relay, on=True), Switch(settings.pulse_ms / 1000, relay, on=False)]
        if settings.green_channel:
            out += [Switch(0.0, settings.green_channel, on=True)]
            out += [Switch(light, settings.green_channel, on=False)]
        if settings.red_channel:
            out.append(Switch(0.0, settings.red_channel, on=False))
        buzzer = settings.buzzer_admit
    if settings.buzzer_channel:
        out += _beeps(settings.buzzer_channel, buzzer) or [
            Switch(0.0, settings.buzzer_channel, on=False)
        ]
    # Stable sort: at equal times the order above holds, so the turnstile relay goes first.
    return sorted(out, key=lambda s: s.at)
