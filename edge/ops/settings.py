"""[metrics]: the operations area's settings (edge.config composes them)."""

from __future__ import annotations

from dataclasses import dataclass

from edge.core.tables import check_listener


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """[metrics]: the Prometheus endpoint (/metrics) and liveness check (/health)."""

    enabled: bool = True
    address: str = "127.0.0.1"  # an IP address; 0.0.0.0 or :: listens on every interface
    port: int = 9101  # 0 picks a free port (tests); the chosen one is logged

    def __post_init__(self) -> None:
        check_listener(self.address, self.port)
