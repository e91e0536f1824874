"""What the store knows about a scanned code: the inputs `decide` needs besides the code."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from edge.core.codes import Claims, EntryPolicy, Kind, Validity


class Direction(enum.Enum):
    """Which way a person passes a lane."""

    ENTRY = "entry"
    EXIT = "exit"


class Revocation(enum.Enum):
    """Why a code, credential or product no longer admits; the values are the wire's too."""

    REVOKED = "revoked"  # withdrawn by the central system, no further detail
    REPLACED = "replaced"  # a lost card was replaced; the new code admits, this one not
    CANCELLED = "cancelled"  # the sale was cancelled


SIGNATURE_BYTES = 64  # an Ed25519 signature


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A public key the central system signs codes with."""

    key_id: int
    public_key: bytes  # 32 raw bytes
    retired: bool = False  # codes signed with a retired key no longer admit
    _open: Callable[[bytes, bytes], bytes] = field(init=False, repr=False, compare=False)
    _bad: type[Exception] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # libsodium loads with the first key, not with every import of the core (`edge
        # --version`, parsing).
        from nacl.bindings import crypto_sign_open  # noqa: PLC0415
        from nacl.exceptions import BadSignatureError  # noqa: PLC0415

        if len(self.public_key) != 32:
            raise ValueError(f"key {self.key_id}: an Ed25519 public key has 32 bytes")
        object.__setattr__(self, "_open", crypto_sign_open)
        object.__setattr__(self, "_bad", BadSignatureError)

    def verify(self, signed: bytes, signature: bytes) -> bool:
        """True if `signature` is this key's signature of `signed`."""
        # edge.core.ed25519.verify, with libsodium's function bound once: this is the scan
        # path, where a lookup per call shows (bench/hotpath.py).
        if len(signature) != SIGNATURE_BYTES:
            return False
        try:
            self._open(signature + signed, self.public_key)
        except self._bad:
            return False
        return True


@dataclass(frozen=True, slots=True)
class Credential:
    """The facts about a credential; synced facts override what a signed code says."""

    credential_id: int
    kind: Kind
    event_id: int = 0
    product_id: int = 0
    policy: EntryPolicy = field(default_factory=EntryPolicy.single)
    validity: Validity | None = None
    zones: int = 0  # bitmask; 0: every zone
    paid: bool = True

    @classmethod
    def from_claims(cls, claims: Claims) -> Credential:
        """The facts a signed code states, for a credential the store has no record of."""
        return cls(
            credential_id=claims.credential_id,
            kind=claims.kind,
            event_id=claims.event_id,
            product_id=claims.product_id,
            policy=claims.policy,
            validity=claims.validity,
            zones=claims.zones,
        )


@dataclass(frozen=True, slots=True)
class EntryState:
    """A credential's passages so far, at any gate of the venue."""

    count: int  # entries (not exits)
    first_at: datetime | None  # first entry
    first_gate: str | None
    last_at: datetime  # last passage, entry or exit
    last_direction: Direction
    last_gate: str


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything the store knows that bears on one code."""

    key: TrustedKey | None = None  # the key named by a signed code, if trusted
    credential: Credential | None = None  # synced facts (required for plain codes)
    code_revoked: Revocation | None = None  # this code (by hash)
    credential_revoked: Revocation | None = None  # every code of the credential
    event_cancelled: bool = False
    product_revoked: Revocation | None = None
    entries: EntryState | None = None
