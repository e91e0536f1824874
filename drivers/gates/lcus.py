"""LCUS-type USB-serial relay modules (CH340 + STC MCU, 1/2/4/8 channels): the command frame.

Each command is four bytes: A0, the channel (1-based), the state (01 on, 00 off) and a checksum
that is the low byte of the sum of the first three. `A0 01 01 A2` closes relay 1, `A0 01 00 A1`
opens it. The modules do not answer; a stuck or missing module shows as a failed write.
"""

from __future__ import annotations

from dataclasses import dataclass

START = 0xA0
FRAME_BYTES = 4
MAX_CHANNELS = 8


@dataclass(frozen=True, slots=True)
class RelayCommand:
    """Switch one relay."""

    channel: int  # 1..MAX_CHANNELS
    on: bool

    def __post_init__(self) -> None:
        if not 1 <= self.channel <= MAX_CHANNELS:
            raise ValueError(f"channel must be 1..{MAX_CHANNELS}, not {self.channel}")

    def to_bytes(self) -> bytes:
        """The four-byte frame."""
        body = bytes([START, self.channel, int(self.on)])
        return body + bytes([sum(body) & 0xFF])

    @classmethod
    def from_bytes(cls, frame: bytes) -> RelayCommand:
        """Parse one frame (simulators, tests); ValueError if it is not a valid frame."""
        if len(frame) != FRAME_BYTES or frame[0] != START:
            raise ValueError(f"not an LCUS frame: {frame.hex(' ')}")
        if frame[3] != sum(frame[:3]) & 0xFF:
            raise ValueError(f"bad checksum in {frame.hex(' ')}")
        if frame[2] not in (0, 1):
            raise ValueError(f"bad state byte in {frame.hex(' ')}")
        return cls(frame[1], frame[2] == 1)
