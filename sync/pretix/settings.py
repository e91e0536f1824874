"""[pretix]: the pretix connector's settings (edge.config composes them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PretixConfig:
    """[pretix]: the device's central system is a pretix server (sync/pretix)."""

    url: str  # the pretix server, e.g. https://pretix.example.org
    organizer: str  # organizer slug
    event: str  # event slug
    checkin_list: int  # id of the check-in list the gate scans for
    token_file: str  # file holding the API token; relative to the configuration file
    device_token: bool = False  # the token is a device token, not a team API token
    sync_interval_seconds: int = 30  # pull and upload this often
    # Validity tolerance on pretix lanes: pretix itself has none, so 0 gives its answers.
    clock_skew_seconds: int = 0
    # A valid signed ticket no pull has seen yet: its order's state is unknown offline. True
    # admits it as paid (pretix's own offline scanners do); False answers "unpaid" until a
    # pull brings it, for shops that hand out tickets of pending orders.
    admit_unsynced_signed: bool = True

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        if not self.organizer.strip() or not self.event.strip():
            raise ValueError("organizer and event must be pretix slugs, not empty")
        if self.checkin_list < 1:
            raise ValueError("checkin_list must be a check-in list id (1 or more)")
        if not 5 <= self.sync_interval_seconds <= 3600:
            raise ValueError("sync_interval_seconds must be 5..3600")
        if not 0 <= self.clock_skew_seconds <= 3600:
            raise ValueError("clock_skew_seconds must be 0..3600")
