"""[counter]: the counter area's settings (edge.config composes them)."""

from __future__ import annotations

from dataclasses import dataclass

from edge.core.tables import check_listener


@dataclass(frozen=True, slots=True)
class CounterConfig:
    """[counter]: the local API for web apps at the counter, operator pages, the pass desk."""

    address: str = "127.0.0.1"  # an IP address; anything but loopback needs a firewall
    port: int = 8480  # 0 picks a free port (tests); the chosen one is logged
    token_file: str = "api.token"  # noqa: S105 - a file name; the file is created mode 0600
    allowed_origins: tuple[str, ...] = ()  # web apps that may call the API from a browser
    allowed_hosts: tuple[str, ...] = ()  # Host names besides localhost, 127.0.0.1 and [::1]
    card_template: str = ""  # the pass desk's card layout (a [[templates]] name, kind card)
    ticket_template: str = ""  # the desk's BOCA ticket for a voucher or day ticket (kind ticket)
    offline_pass_days: int = 365  # validity the desk prints for a pass issued offline
    terms_file: str = ""  # the venue's terms (UTF-8 text) the desk prints on request
    nfc_reader: str = ""  # a [[scanners]] entry of type pcsc: the chip of each card issued

    def __post_init__(self) -> None:
        check_listener(self.address, self.port)
        if not self.token_file.strip():
            raise ValueError("token_file must name a file")
        for origin in self.allowed_origins:
            scheme, sep, rest = origin.partition("://")
            if scheme not in ("http", "https") or not sep or not rest or "/" in rest:
                raise ValueError(
                    f"allowed_origins: {origin!r} is not an origin such as "
                    '"https://central.example.org" (scheme and host, no path)'
                )
        for host in self.allowed_hosts:
            if not host or not all(c.isalnum() or c in ".-:[]" for c in host):
                raise ValueError(f"allowed_hosts: {host!r} is not a host name")
        if not 1 <= self.offline_pass_days <= 3660:
            raise ValueError("offline_pass_days must be 1..3660")
