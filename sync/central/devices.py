"""The devices registered with the central system: their keys and last contact."""

from __future__ import annotations

from sync import protocol
from sync.central.changelog import now_ms
from sync.central.connection import Connection
from sync.central.errors import CentralError

DEVICE_KEY_BYTES = 32  # an Ed25519 public key


class Devices:
    """Edges allowed to call the central system, each by its identity key."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, name: str, public_key: bytes) -> None:
        """Register a device by its identity key (from its start log)."""
        if len(public_key) != DEVICE_KEY_BYTES:
            raise CentralError("a device key is a 32-byte Ed25519 public key")
        protocol.printable(name, "device name")
        with self._connection.transaction() as conn:
            if not conn.execute(
                "INSERT INTO devices (name, public_key) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (name, public_key),
            ).rowcount:
                raise CentralError(f"device {name!r} is registered already")

    def remove(self, name: str) -> None:
        """Forget a device (stolen, retired): its requests are refused, it gets no pushes."""
        with self._connection.transaction() as conn:
            if not conn.execute("DELETE FROM devices WHERE name = ?", (name,)).rowcount:
                raise CentralError(f"no device {name!r}")
            self._connection.announce(conn)  # servers drop its channel and pushes

    def public_key(self, name: str) -> bytes | None:
        """The public key a registered device signs its requests with."""
        row = self._connection.row("SELECT public_key FROM devices WHERE name = ?", name)
        return None if row is None else bytes(row[0])

    def seen(self, name: str, *, revision: int | None = None, push_url: str | None = None) -> None:
        """Note contact with a device, its revision and (hello) where it takes pushes."""
        with self._connection.transaction() as conn:
            conn.execute(
                "UPDATE devices SET last_seen_ms = ?, revision = coalesce(?, revision),"
                " push_url = coalesce(?, push_url) WHERE name = ?",
                (now_ms(), revision, push_url, name),
            )

    def registered(self) -> list[tuple[str, str | None, int, int | None]]:
        """(name, push url, revision, last seen ms) of every device."""
        rows = self._connection.rows(
            "SELECT name, push_url, revision, last_seen_ms FROM devices ORDER BY name"
        )
        return [(str(n), u, int(r), s) for n, u, r, s in rows]
