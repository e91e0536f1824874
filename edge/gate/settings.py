"""[[lanes]]: the gate area's settings, one per lane (edge.config composes them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from edge.core.decide import GateRules
from edge.core.tables import MAX_NAME


@dataclass(frozen=True, slots=True)
class LaneConfig:
    """[[lanes]]: which scanners feed which actuator, and what the lane admits."""

    name: str
    actuator: str
    entry: tuple[str, ...] = ()  # scanners on the outside
    exit: tuple[str, ...] = ()  # scanners on the inside (bidirectional lanes)
    zone: int | None = None  # zone 0..31 the lane leads into
    events: tuple[int, ...] | None = None  # only these events (default: all)
    products: tuple[int, ...] | None = None  # only these products (default: all)
    free_exit: bool = False  # exits open even where the central system would refuse them
    ignore_unpaid: bool = False  # pretix: admit pending orders of include_pending lists
    pretix_gate: int | None = None  # pretix's id of this gate (check-in rules on "gate")

    def __post_init__(self) -> None:
        if not 0 < len(self.name) <= MAX_NAME or not self.name.isprintable():
            # Lane names travel in every journal upload (docs/protocol.md, "Limits").
            raise ValueError(f"name must be 1..{MAX_NAME} printable characters")
        if not self.entry and not self.exit:
            raise ValueError("a lane needs at least one scanner in entry or exit")
        if self.zone is not None and not 0 <= self.zone <= 31:
            raise ValueError("zone must be 0..31")
        if self.pretix_gate is not None and self.pretix_gate < 1:
            raise ValueError("pretix_gate must be a pretix gate id (1 or more)")

    def rules(self, clock_skew: timedelta) -> GateRules:
        """The decision rules of this lane, with the device's validity tolerance."""
        return GateRules(
            gate=self.name,
            zone=self.zone,
            events=frozenset(self.events) if self.events is not None else None,
            products=frozenset(self.products) if self.products is not None else None,
            clock_skew=clock_skew,
            free_exit=self.free_exit,
            ignore_unpaid=self.ignore_unpaid,
            gate_id=self.pretix_gate,
        )
