"""[sync]: the sync client's settings (edge.config composes them)."""

from __future__ import annotations

from dataclasses import dataclass

from edge.core.tables import check_listener

MAX_CENTRALS = 16  # URLs in [sync] urls


@dataclass(frozen=True, slots=True)
class SyncConfig:
    """[sync]: the central system (docs/protocol.md). Without this section a device is offline."""

    url: str = ""  # the central system's base URL, e.g. "http://central.venue:8400"
    # Several central processes on one database, tried in this order; a gate stays on the
    # one that answers and moves to the next when it is down (docs/operations.md).
    urls: tuple[str, ...] = ()
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
        named = [(f"urls[{i}]", url) for i, url in enumerate(self.urls)]
        named += [("url", self.url), ("push_url", self.push_url), ("proxy", self.proxy)]
        for key, url in named:
            if url and not url.startswith(("http://", "https://")):
                raise ValueError(f"{key} must be an http:// or https:// URL, not {url!r}")
        if self.url and self.urls:
            raise ValueError(
                "url and urls both name central systems: list every central in urls only"
            )
        if not self.url and not self.urls:
            raise ValueError('url (or urls = ["https://c1", "https://c2"]) must name the central')
        if len(self.urls) > MAX_CENTRALS:
            raise ValueError(f"urls names at most {MAX_CENTRALS} central processes")
        bases = [url.rstrip("/") for url in self.urls]
        for i, base in enumerate(bases):
            if not base.partition("://")[2]:
                raise ValueError(f"urls[{i}] must name a host, not {self.urls[i]!r}")
            if base in bases[:i]:
                raise ValueError(f"urls[{i}] names {self.urls[i]!r} a second time")
        check_listener(self.push_address, self.push_port, "push_")
        if not 0.1 <= self.pull_interval_seconds <= 86400:
            raise ValueError("pull_interval_seconds must be 0.1..86400")
        if not 1 <= self.upload_batch <= 10_000:
            raise ValueError("upload_batch must be 1..10000")
        if not 0.1 <= self.timeout_seconds <= 300:
            raise ValueError("timeout_seconds must be 0.1..300")
        if not 0.2 <= self.keepalive_seconds <= 600:
            raise ValueError("keepalive_seconds must be 0.2..600")
        if self.ca_file and not all(url.startswith("https://") for url in self.centrals):
            raise ValueError("ca_file pins the CA of https:// centrals; a url is not https")

    @property
    def centrals(self) -> tuple[str, ...]:
        """The central processes' base URLs in the order they are tried (no trailing /)."""
        return tuple(url.rstrip("/") for url in (self.urls or (self.url,)))
