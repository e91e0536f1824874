"""[sync]: the sync client's settings (edge.config composes them)."""

from __future__ import annotations

from dataclasses import dataclass

from edge.core.tables import check_listener


@dataclass(frozen=True, slots=True)
class SyncConfig:
    """[sync]: the central system (docs/protocol.md). Without this section a device is offline."""

    url: str  # the central system's base URL, e.g. "http://central.venue:8400"
    push_address: str = "127.0.0.1"  # where the central system's pushes arrive
    push_port: int = 8401  # 0 picks a free port (tests)
    push_url: str = ""  # the URL the central system pushes to; default built from the above
    pull_interval_seconds: float = 30.0  # pull this often even when pushes arrive
    upload_batch: int = 1000  # journal entries per upload request
    timeout_seconds: float = 10.0  # per request to the central system
    channel: bool = True  # open the outbound push channel (gates behind NAT need nothing else)
    push_listen: bool = True  # take inbound pushes on push_address:push_port too
    keepalive_seconds: float = 20.0  # channel pings; a peer silent twice as long is gone
    proxy: str = ""  # HTTP(S) proxy for every request and the channel, e.g. "http://proxy:3128"
    ca_file: str = ""  # PEM CA certificates pinned for an https:// central system (default: system)

    def __post_init__(self) -> None:
        for key, url in (("url", self.url), ("push_url", self.push_url), ("proxy", self.proxy)):
            if url and not url.startswith(("http://", "https://")):
                raise ValueError(f"{key} must be an http:// or https:// URL, not {url!r}")
        if not self.url:
            raise ValueError("url must name the central system")
        check_listener(self.push_address, self.push_port, "push_")
        if not 0.1 <= self.pull_interval_seconds <= 86400:
            raise ValueError("pull_interval_seconds must be 0.1..86400")
        if not 1 <= self.upload_batch <= 10_000:
            raise ValueError("upload_batch must be 1..10000")
        if not 0.1 <= self.timeout_seconds <= 300:
            raise ValueError("timeout_seconds must be 0.1..300")
        if not 0.2 <= self.keepalive_seconds <= 600:
            raise ValueError("keepalive_seconds must be 0.2..600")
        if self.ca_file and not self.url.startswith("https://"):
            raise ValueError("ca_file pins the CA of an https:// url; url is not https")
