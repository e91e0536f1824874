"""The devices registered with the central system: their keys and last contact."""

from __future__ import annotations

from sync import protocol
from sync.central.changelog import now_ms
from sync.central.connection import Connection, Notice
from sync.central.errors import CentralError

DEVICE_KEY_BYTES = 32  # an Ed25519 public key
DEVICES = Notice(head=None, devices=True)  # what a change of a device tells the servers


class Devices:
    """Edges allowed to call the central system, each by its identity key."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, name: str, public_key: bytes, venue: str | None = None) -> None:
        """Register a device by its identity key (from its start log); with a venue, it is
        sent only that venue's changes and the whole group's."""
        if len(public_key) != DEVICE_KEY_BYTES:
            raise CentralError("a device key is a 32-byte Ed25519 public key")
        protocol.printable(name, "device name")
        if venue is not None:
            venue_name(venue)
        with self._connection.transaction() as conn:
            if not conn.execute(
                "INSERT INTO devices (name, public_key, venue) VALUES (?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (name, public_key, venue),
            ).rowcount:
                raise CentralError(f"device {name!r} is registered already")
            self._connection.announce(conn, DEVICES)  # a server may hold it as removed

    def venue(self, name: str) -> str | None:
        """The venue a device belongs to (None: every venue's changes)."""
        row = self._connection.row("SELECT venue FROM devices WHERE name = ?", name)
        return None if row is None else row[0]

    def move(self, name: str, venue: str | None) -> None:
        """Move a device to another venue (None: all of them). What it holds was chosen for
        its old venue, so the central system refuses its pulls and channel with
        revision-ahead until it bootstraps again (its revision is reset to 0)."""
        if venue is not None:
            venue_name(venue)
        with self._connection.transaction() as conn:
            if not conn.execute(
                "UPDATE devices SET venue = ?, revision = 0, rebootstrap = 1 WHERE name = ?",
                (venue, name),
            ).rowcount:
                raise CentralError(f"no device {name!r}")
            self._connection.announce(conn, DEVICES)  # servers drop its channel and pushes

    def must_bootstrap(self, name: str) -> bool:
        """Whether a moved device has not bootstrapped since."""
        row = self._connection.row("SELECT rebootstrap FROM devices WHERE name = ?", name)
        return row is not None and bool(row[0])

    def bootstrapped(self, name: str) -> None:
        """A moved device asked for a fresh snapshot: its pulls are served again."""
        with self._connection.transaction() as conn:
            if conn.execute(
                "UPDATE devices SET rebootstrap = 0 WHERE name = ? AND rebootstrap <> 0", (name,)
            ).rowcount:
                self._connection.announce(conn, DEVICES)  # every server serves it again

    def remove(self, name: str) -> None:
        """Forget a device (stolen, retired): its requests are refused, it gets no pushes."""
        with self._connection.transaction() as conn:
            if not conn.execute("DELETE FROM devices WHERE name = ?", (name,)).rowcount:
                raise CentralError(f"no device {name!r}")
            self._connection.announce(conn, DEVICES)  # servers drop its channel and pushes

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

    def route(self, name: str) -> tuple[str | None, bool] | None:
        """A device's venue and whether it must bootstrap again (moved); None: not registered."""
        row = self._connection.row("SELECT venue, rebootstrap FROM devices WHERE name = ?", name)
        return None if row is None else (row[0], bool(row[1]))

    def routes(self) -> dict[str, tuple[str | None, bool]]:
        """`route` of every registered device, in one read."""
        rows = self._connection.rows("SELECT name, venue, rebootstrap FROM devices")
        return {str(n): (v, bool(r)) for n, v, r in rows}

    def venues(self) -> dict[str, str | None]:
        """The venue of every device (None: all venues)."""
        rows = self._connection.rows("SELECT name, venue FROM devices ORDER BY name")
        return {str(n): v for n, v in rows}


def venue_name(venue: str) -> str:
    """A venue's name, checked: printable, 1..64 characters."""
    if not 0 < len(venue) <= 64:
        raise CentralError("a venue name has 1 to 64 characters")
    protocol.printable(venue, "venue name")
    return venue
