"""The central system's signing keys: rotation by endorsement, retirement."""

from __future__ import annotations

from edge.core.ed25519 import PrivateKey
from sync import protocol
from sync.central.changelog import ChangeLog
from sync.central.connection import SQL, Connection
from sync.central.errors import CentralError
from sync.protocol import Endorsement, KeyChange

MAX_KEY_ID = 0xFFFF  # key ids are 16 bits in codes and envelopes


class SigningKeys:
    """The keys codes and envelopes are signed with; the newest active one signs."""

    def __init__(self, connection: Connection, log: ChangeLog) -> None:
        self._connection = connection
        self._log = log

    def add(self) -> int:
        """A new signing key; the newest active key vouches for it. Returns its id."""
        private = PrivateKey.generate()
        public = protocol.public_bytes(private)
        with self._connection.transaction() as conn:
            (newest,) = conn.execute("SELECT coalesce(max(key_id), 0) FROM signing_keys").fetchone()
            key_id = newest + 1
            if key_id > MAX_KEY_ID:
                raise CentralError("all 65536 key ids are used")
            endorsement = None
            signer = self.active(conn)
            if signer is not None:
                endorsement = protocol.endorse(signer[1], signer[0], key_id, public).signature
            conn.execute(
                "INSERT INTO signing_keys VALUES (?, ?, ?, 0, ?, ?)",
                (
                    key_id,
                    private.private_bytes_raw(),
                    public,
                    signer[0] if signer else None,
                    endorsement,
                ),
            )
            self._log.append(conn, [KeyChange(key_id, public, retired=False)])
        return int(key_id)

    def retire(self, key_id: int) -> None:
        """Retire a key: codes and envelopes it signed no longer count. Final."""
        with self._connection.transaction() as conn:
            row = conn.execute(
                "SELECT public, retired FROM signing_keys WHERE key_id = ?", (key_id,)
            ).fetchone()
            if row is None:
                raise CentralError(f"no key {key_id}")
            if row[1]:
                raise CentralError(f"key {key_id} is retired already")
            active = conn.execute(
                "SELECT count(*) FROM signing_keys WHERE retired = 0 AND key_id != ?", (key_id,)
            ).fetchone()[0]
            if not active:
                raise CentralError(f"key {key_id} is the last active key; add a new key first")
            conn.execute("UPDATE signing_keys SET retired = 1 WHERE key_id = ?", (key_id,))
            self._reendorse(conn, key_id)
            self._log.append(conn, [KeyChange(key_id, bytes(row[0]), retired=True)])

    @staticmethod
    def _reendorse(conn: SQL, retired: int) -> None:
        """Keys the retired key vouched for get a voucher that still counts, if one exists.

        Edges drop every endorsement by a retired key; an active key it vouched for is
        vouched for again by the newest active key older than it, so an edge that trusts
        that older key still follows the rotation. Without one, the endorsement is dropped.
        """
        endorsed = conn.execute(
            "SELECT key_id, public FROM signing_keys WHERE endorsed_by = ? AND retired = 0",
            (retired,),
        ).fetchall()
        for key_id, public in endorsed:
            voucher = conn.execute(
                "SELECT key_id, private FROM signing_keys WHERE retired = 0 AND key_id < ?"
                " ORDER BY key_id DESC",
                (key_id,),
            ).fetchone()
            if voucher is None:
                conn.execute(
                    "UPDATE signing_keys SET endorsed_by = NULL, endorsement = NULL"
                    " WHERE key_id = ?",
                    (key_id,),
                )
                continue
            signer = PrivateKey.from_private_bytes(bytes(voucher[1]))
            link = protocol.endorse(signer, int(voucher[0]), int(key_id), bytes(public))
            conn.execute(
                "UPDATE signing_keys SET endorsed_by = ?, endorsement = ? WHERE key_id = ?",
                (link.by, link.signature, key_id),
            )

    def public_keys(self) -> list[tuple[int, bytes, bool]]:
        """(id, public key, retired) of every key."""
        rows = self._connection.rows(
            "SELECT key_id, public, retired FROM signing_keys ORDER BY key_id"
        )
        return [(k, bytes(p), bool(r)) for k, p, r in rows]

    @staticmethod
    def active(conn: SQL) -> tuple[int, PrivateKey] | None:
        """The newest active key (id, private key), or None if there is none."""
        row = conn.execute(
            "SELECT key_id, private FROM signing_keys WHERE retired = 0 ORDER BY key_id DESC"
        ).fetchone()
        if row is None:
            return None
        return int(row[0]), PrivateKey.from_private_bytes(bytes(row[1]))

    def current(self, conn: SQL) -> tuple[int, PrivateKey]:
        """The newest active key (id, private key); CentralError if there is none."""
        active = self.active(conn)
        if active is None:
            raise CentralError("no signing key; run `edge-central key add`")
        return active

    def signer(self) -> tuple[int, PrivateKey, tuple[Endorsement, ...]]:
        """The key envelopes are signed with, and the endorsements that lead to it.

        Only endorsements of an active key by an active key are carried: edges refuse any
        link that touches a retired key (docs/security.md, "Signing keys").
        """
        with self._connection.reading() as conn:
            key_id, key = self.current(conn)
            rows = conn.execute(
                "SELECT k.key_id, k.public, k.endorsed_by, k.endorsement FROM signing_keys k"
                " JOIN signing_keys v ON v.key_id = k.endorsed_by"
                " WHERE k.retired = 0 AND v.retired = 0 AND k.key_id <= ? ORDER BY k.key_id",
                (key_id,),
            ).fetchall()
        chain = tuple(Endorsement(k, bytes(p), b, bytes(s)) for k, p, b, s in rows)
        return key_id, key, chain[-protocol.MAX_CHAIN :]
