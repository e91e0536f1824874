"""The sync protocol between an edge and the central system (docs/protocol.md).

Pure codecs, no I/O: signed envelopes of changes, the changes themselves, signed device
requests, journal rows and error bodies, each parsed strictly. Both sides import this
module; it depends on nothing of the edge but `edge.core` (errors, and the one Revocation
enum, whose values are the wire's reasons).
"""

from __future__ import annotations

import base64
import binascii
import bisect
import enum
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from edge.core import ed25519
from edge.core.errors import SyncError
from edge.core.facts import Revocation as Revocation  # noqa: PLC0414 - re-exported for both sides

VERSION = 1  # this side's protocol version; a peer speaking another major version is refused
VERSION_HEADER = "Edge-Protocol"
DEVICE_HEADER = "Edge-Device"
TIME_HEADER = "Edge-Time"
SIGNATURE_HEADER = "Edge-Signature"
CONTENT_TYPE = "application/msgpack"
HEADERS = {"Content-Type": CONTENT_TYPE, VERSION_HEADER: str(VERSION)}  # on every answer

# Domain tags: a signature made for one purpose is never valid for another (codes use
# b"edge-code-v1\x00", docs/codes.md).
ENVELOPE_DOMAIN = b"edge-sync-v1\x00"
REQUEST_DOMAIN = b"edge-request-v1\x00"
ENDORSE_DOMAIN = b"edge-key-v1\x00"

MAX_ENVELOPE_BYTES = 32 << 20  # a snapshot chunk of 50,000 credentials is about 3 MB
MAX_PUSH_BYTES = 1 << 20  # pushes are small: a few changes
MAX_REQUEST_BYTES = 16 << 20  # a journal batch of 10,000 rows is about 1 MB
MAX_CHAIN = 16  # key endorsements carried by one envelope
REQUEST_MAX_SKEW_MS = 300_000  # a signed request older or newer than this is refused
MAX_ID = 2**63 - 1
MAX_TEXT = 200  # lane and device names, error messages are bounded
MAX_VENUE = 64  # a venue's name (edge-central checks the same bound)

SNAPSHOT_SECTIONS = (
    "keys",
    "credentials",
    "plain_codes",
    "revoked_codes",
    "revoked_credentials",
    "revoked_products",
    "cancelled_events",
    "passages",
)


class EnvelopeKind(enum.Enum):
    """What an envelope carries."""

    CHANGES = "changes"  # revisions first+1..last, one change each (pulls and pushes)
    SNAPSHOT = "snapshot"  # one chunk of the state at a revision (bootstrap)
    BUNDLE = "bundle"  # like CHANGES, written to a file for `edge import`


class ErrorCode(enum.Enum):
    """The `error` field of an error body."""

    BAD_REQUEST = "bad-request"  # malformed body or parameters
    UNAUTHENTICATED = "unauthenticated"  # missing or wrong request signature
    UNKNOWN_DEVICE = "unknown-device"  # the device is not registered
    CLOCK_SKEW = "clock-skew"  # the request's time is too far from the central clock
    UNSUPPORTED_PROTOCOL = "unsupported-protocol"
    TOO_LARGE = "too-large"
    REVISION_AHEAD = "revision-ahead"  # the edge claims a revision the central never had
    UNTRUSTED = "untrusted"  # an envelope signed by a key the reader does not (or no longer) trust
    INTERNAL = "internal"


CHANNEL_PATH = "/v1/channel"  # the outbound push channel (a WebSocket the edge opens)
PUSH_STATUSES = ("applied", "stale", "gap")  # what an edge answers to a pushed envelope


class CloseCode(enum.IntEnum):
    """WebSocket close codes of the push channel (docs/protocol.md, "Push channel")."""

    NORMAL = 1000  # the edge or the central system stops
    GOING_AWAY = 1001  # the central system shuts down: reconnect (to another one)
    UNSUPPORTED = 1003  # a text frame: the channel carries binary msgpack only
    REFUSED = 1008  # a frame that does not verify or parse; the receiver changed nothing
    TOO_LARGE = 1009  # a frame above the push limit
    INTERNAL = 1011  # the receiver could not store what it accepted
    REPLACED = 4001  # the same device opened a newer channel
    REMOVED = 4003  # the device was removed from the central system
    SILENT = 4008  # the edge did not answer a pushed envelope in time


class ProtocolError(SyncError, ValueError):
    """A body from the peer is malformed, wrongly signed or out of bounds."""


class UntrustedError(ProtocolError):
    """An envelope's signing key is unknown or retired, or its signature does not verify."""


class RemoteError(SyncError):
    """The peer answered with an error body."""

    def __init__(self, status: int, code: str, message: str, time_ms: int | None = None) -> None:
        super().__init__(f"central system answered {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.time_ms = time_ms  # the central clock when it answered, if the body said


# -- msgpack with bounds ---------------------------------------------------------------------


def pack(value: Any) -> bytes:
    """msgpack bytes of plain values (bin for bytes, str for text)."""
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(data: bytes, what: str, limit: int) -> Any:
    """Decode msgpack strictly: one object, no extension types, bounded sizes."""
    if len(data) > limit:
        raise ProtocolError(f"{what}: {len(data)} bytes is larger than allowed ({limit})")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_bin_len=limit,
            max_str_len=limit,
            max_array_len=limit,
            max_map_len=limit,
            max_ext_len=0,
        )
    except (ValueError, msgpack.UnpackException, TypeError) as err:
        raise ProtocolError(f"{what}: not valid msgpack ({err})") from err


def unpack_streaming(data: bytes, what: str, limit: int) -> Any:
    """Decode like `unpack`, but a top-level map's array values item by item.

    The same values and the same errors as `unpack`; used for large envelope bodies, which
    are decoded in a worker thread: one `unpackb` of a 50,000-change body holds the GIL for
    tens of milliseconds, while decoding it a few items at a time lets the event loop's
    thread in between (the interpreter switches threads only between Python steps).
    """
    if len(data) > limit:
        raise ProtocolError(f"{what}: {len(data)} bytes is larger than allowed ({limit})")
    unpacker = msgpack.Unpacker(
        raw=False,
        strict_map_key=True,
        max_buffer_size=max(limit, 1),
        max_bin_len=limit,
        max_str_len=limit,
        max_array_len=limit,
        max_map_len=limit,
        max_ext_len=0,
    )
    unpacker.feed(data)
    try:
        if data[:1] and (0x80 <= data[0] <= 0x8F or data[0] in (0xDE, 0xDF)):
            value: Any = {}
            for _ in range(unpacker.read_map_header()):
                key = unpacker.unpack()
                if not isinstance(key, str | bytes):  # as strict_map_key in `unpack`
                    raise ValueError(f"{type(key).__name__} is not allowed for map key")
                first = data[unpacker.tell() : unpacker.tell() + 1]
                if first and (0x90 <= first[0] <= 0x9F or first[0] in (0xDC, 0xDD)):
                    items = []
                    for _ in range(unpacker.read_array_header()):
                        items.append(unpacker.unpack())
                    value[key] = items
                else:
                    value[key] = unpacker.unpack()
        else:
            value = unpacker.unpack()
        if unpacker.tell() != len(data):
            raise ValueError("unpack(b) received extra data.")
    except (ValueError, msgpack.UnpackException, TypeError) as err:
        raise ProtocolError(f"{what}: not valid msgpack ({err})") from err
    return value


class _Fields:
    """Typed access to a decoded map; every error names the field."""

    def __init__(self, value: Any, what: str) -> None:
        if not isinstance(value, dict):
            raise ProtocolError(f"{what}: must be a map, not {type(value).__name__}")
        self.map: dict[str, Any] = value
        self.what = what

    def _get(self, name: str, *, optional: bool) -> Any:
        if name not in self.map:
            if optional:
                return None
            raise ProtocolError(f"{self.what}: field {name!r} is missing")
        return self.map[name]

    def integer(
        self, name: str, low: int = 0, high: int = MAX_ID, *, optional: bool = False
    ) -> Any:
        value = self._get(name, optional=optional)
        if value is None and optional:
            return None
        return _int(value, f"{self.what}.{name}", low, high)

    def blob(self, name: str, size: int | None = None, *, optional: bool = False) -> Any:
        value = self._get(name, optional=optional)
        if value is None and optional:
            return None
        return _bytes(value, f"{self.what}.{name}", size)

    def text(self, name: str, *, optional: bool = False, limit: int = MAX_TEXT) -> Any:
        value = self._get(name, optional=optional)
        if value is None and optional:
            return None
        return printable(value, f"{self.what}.{name}", limit)

    def array(self, name: str) -> list[Any]:
        value = self._get(name, optional=False)
        if not isinstance(value, list):
            raise ProtocolError(f"{self.what}.{name}: must be a list")
        return value


def _int(value: Any, what: str, low: int = 0, high: int = MAX_ID) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ProtocolError(f"{what}: must be an integer {low}..{high}, not {value!r}")
    return value


def _bytes(value: Any, what: str, size: int | None = None) -> bytes:
    if not isinstance(value, bytes) or (size is not None and len(value) != size):
        wanted = f"{size} bytes" if size is not None else "bytes"
        raise ProtocolError(f"{what}: must be {wanted}")
    return value


def printable(value: Any, what: str, limit: int = MAX_TEXT) -> str:
    """`value` if it is printable text of 1..`limit` characters, else ProtocolError naming it."""
    if not isinstance(value, str) or not 0 < len(value) <= limit or not value.isprintable():
        raise ProtocolError(f"{what}: must be printable text of 1..{limit} characters")
    return value


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise ProtocolError(f"{what}: must be true or false")
    return value


def _revocation(value: Any, what: str) -> Revocation:
    try:
        return Revocation(value)
    except ValueError:
        allowed = ", ".join(r.value for r in Revocation)
        raise ProtocolError(f"{what}: reason must be one of {allowed}, not {value!r}") from None


# -- changes ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyChange:
    """Trust a signing key, or retire one (retiring is final)."""

    key_id: int
    public_key: bytes
    retired: bool


@dataclass(frozen=True, slots=True)
class CredentialChange:
    """The facts about a credential; they override what its signed codes state."""

    credential_id: int
    kind: int  # edge.core.codes.Kind
    event_id: int
    product_id: int
    policy: int  # edge.core.codes.PolicyKind
    uses: int
    passback_minutes: int
    valid_from: int | None  # unix seconds, both or neither
    valid_until: int | None
    zones: int
    paid: bool


@dataclass(frozen=True, slots=True)
class PlainCodeChange:
    """A plain code (legacy barcode, NFC UID) by hash belongs to a credential."""

    code_hash: bytes
    credential_id: int


@dataclass(frozen=True, slots=True)
class RevokeCode:
    """One code (by hash) no longer admits."""

    code_hash: bytes
    reason: Revocation


@dataclass(frozen=True, slots=True)
class RevokeCredential:
    """No code of a credential admits."""

    credential_id: int
    reason: Revocation


@dataclass(frozen=True, slots=True)
class RevokeProduct:
    """No credential of a product admits."""

    product_id: int
    reason: Revocation


@dataclass(frozen=True, slots=True)
class CancelEvent:
    """Every ticket of an event is rejected."""

    event_id: int


@dataclass(frozen=True, slots=True)
class Passage:
    """A passage admitted at some gate of the venue: (device, seq) identifies it."""

    device: str
    seq: int
    credential_id: int
    at_ms: int
    gate: str  # the lane's name
    entry: bool  # False: an exit


Change = (
    KeyChange
    | CredentialChange
    | PlainCodeChange
    | RevokeCode
    | RevokeCredential
    | RevokeProduct
    | CancelEvent
    | Passage
)

_HASH = 16  # code hashes (docs/codes.md, "Hashes")
_MAX32 = 2**32 - 1


def change_to_wire(change: Change) -> list[Any]:
    """A change as its msgpack array: the operation name first."""
    match change:
        case KeyChange():
            return ["key", change.key_id, change.public_key, change.retired]
        case CredentialChange():
            return [
                "credential",
                change.credential_id,
                change.kind,
                change.event_id,
                change.product_id,
                change.policy,
                change.uses,
                change.passback_minutes,
                change.valid_from,
                change.valid_until,
                change.zones,
                change.paid,
            ]
        case PlainCodeChange():
            return ["plain", change.code_hash, change.credential_id]
        case RevokeCode():
            return ["revoke-code", change.code_hash, change.reason.value]
        case RevokeCredential():
            return ["revoke-credential", change.credential_id, change.reason.value]
        case RevokeProduct():
            return ["revoke-product", change.product_id, change.reason.value]
        case CancelEvent():
            return ["cancel-event", change.event_id]
        case Passage():
            return [
                "passage",
                change.device,
                change.seq,
                change.credential_id,
                change.at_ms,
                change.gate,
                change.entry,
            ]


def _credential(a: list[Any], w: str) -> CredentialChange:
    valid_from = None if a[8] is None else _int(a[8], f"{w} valid_from", 0, _MAX32)
    valid_until = None if a[9] is None else _int(a[9], f"{w} valid_until", 0, _MAX32)
    if (valid_from is None) != (valid_until is None):
        raise ProtocolError(f"{w}: valid_from and valid_until go together")
    if valid_from is not None and valid_until is not None and valid_until < valid_from:
        raise ProtocolError(f"{w}: validity ends before it starts")
    policy = _int(a[5], f"{w} policy", 0, 2)
    uses = _int(a[6], f"{w} uses", 0, 0xFFFF)
    passback = _int(a[7], f"{w} passback_minutes", 0, 0xFFFF)
    if (policy, uses, passback) != (0, 1, 0) and not (
        (policy == 1 and uses >= 2 and passback == 0) or (policy == 2 and uses == 0)
    ):
        raise ProtocolError(f"{w}: policy {policy} with {uses} uses and passback is invalid")
    return CredentialChange(
        credential_id=_int(a[1], f"{w} credential_id"),
        kind=_int(a[2], f"{w} kind", 0, 2),
        event_id=_int(a[3], f"{w} event_id", 0, _MAX32),
        product_id=_int(a[4], f"{w} product_id", 0, _MAX32),
        policy=policy,
        uses=uses,
        passback_minutes=passback,
        valid_from=valid_from,
        valid_until=valid_until,
        zones=_int(a[10], f"{w} zones", 0, _MAX32),
        paid=_bool(a[11], f"{w} paid"),
    )


_ARITY = {
    "key": 4,
    "credential": 12,
    "plain": 3,
    "revoke-code": 3,
    "revoke-credential": 3,
    "revoke-product": 3,
    "cancel-event": 2,
    "passage": 7,
}


_REASONS = {r.value: r for r in Revocation}


def _credential_fast(a: list[Any]) -> CredentialChange | None:
    """`_credential` for a well-formed array without building the error texts it may need
    (a bootstrap parses a million); None: anything else, which `_credential` then names."""
    if len(a) != 12:
        return None
    _, cid, kind, event, product, policy, uses, passback, start, end, zones, paid = a
    if not (
        type(cid) is int and 0 <= cid <= MAX_ID
        and type(kind) is int and 0 <= kind <= 2
        and type(event) is int and 0 <= event <= _MAX32
        and type(product) is int and 0 <= product <= _MAX32
        and type(zones) is int and 0 <= zones <= _MAX32
        and type(paid) is bool
        and type(policy) is int and type(uses) is int and type(passback) is int
        and (
            (policy == 0 and uses == 1 and passback == 0)
            or (policy == 1 and 2 <= uses <= 0xFFFF and passback == 0)
            or (policy == 2 and uses == 0 and 0 <= passback <= 0xFFFF)
        )
        and (
            (start is None and end is None)
            or (type(start) is int and type(end) is int and 0 <= start <= end <= _MAX32)
        )
    ):  # fmt: skip
        return None
    return CredentialChange(
        credential_id=cid, kind=kind, event_id=event, product_id=product, policy=policy,
        uses=uses, passback_minutes=passback, valid_from=start, valid_until=end, zones=zones,
        paid=paid,
    )  # fmt: skip


def _revoke_code_fast(a: list[Any]) -> RevokeCode | None:
    """Likewise for a code revocation."""
    if len(a) != 3 or type(a[1]) is not bytes or len(a[1]) != _HASH or type(a[2]) is not str:
        return None
    reason = _REASONS.get(a[2])
    return None if reason is None else RevokeCode(a[1], reason)


_FAST: dict[str, Callable[[list[Any]], Change | None]] = {
    "credential": _credential_fast,
    "revoke-code": _revoke_code_fast,
}


def change_from_wire(value: Any, what: str) -> Change:
    """Parse one change array, or ProtocolError naming the change and field."""
    if type(value) is list and value and type(value[0]) is str:
        fast = _FAST.get(value[0])
        change = None if fast is None else fast(value)
        if change is not None:
            return change
    return _change_checked(value, what)


def _change_checked(value: Any, what: str) -> Change:
    if not isinstance(value, list) or not value or not isinstance(value[0], str):
        raise ProtocolError(f"{what}: a change is an array starting with its operation")
    op, w = value[0], f"{what} ({value[0]})"
    if op not in _ARITY:
        raise ProtocolError(f"{what}: unknown operation {op[:40]!r}")
    if len(value) != _ARITY[op]:
        raise ProtocolError(f"{w}: has {len(value)} items, expected {_ARITY[op]}")
    a = value
    if op == "key":
        return KeyChange(
            _int(a[1], f"{w} key_id", 0, 0xFFFF),
            _bytes(a[2], f"{w} public", 32),
            _bool(a[3], f"{w} retired"),
        )
    if op == "credential":
        return _credential(a, w)
    if op == "plain":
        return PlainCodeChange(_bytes(a[1], f"{w} hash", _HASH), _int(a[2], f"{w} credential"))
    if op == "revoke-code":
        return RevokeCode(_bytes(a[1], f"{w} hash", _HASH), _revocation(a[2], w))
    if op == "revoke-credential":
        return RevokeCredential(_int(a[1], f"{w} credential"), _revocation(a[2], w))
    if op == "revoke-product":
        return RevokeProduct(_int(a[1], f"{w} product", 0, _MAX32), _revocation(a[2], w))
    if op == "cancel-event":
        return CancelEvent(_int(a[1], f"{w} event", 0, _MAX32))
    return Passage(
        device=printable(a[1], f"{w} device"),
        seq=_int(a[2], f"{w} seq", 1),
        credential_id=_int(a[3], f"{w} credential"),
        at_ms=_int(a[4], f"{w} at"),
        gate=printable(a[5], f"{w} gate"),
        entry=_bool(a[6], f"{w} entry"),
    )


# -- signing keys and envelopes --------------------------------------------------------------


public_bytes = ed25519.public_bytes  # the raw 32-byte public key of a private key


@dataclass(frozen=True, slots=True)
class Endorsement:
    """A newer key, vouched for by an older one (key rotation)."""

    key_id: int
    public_key: bytes
    by: int  # the vouching key: trusted by the reader, or an earlier link of the chain
    signature: bytes


def _endorsed_bytes(link: Endorsement) -> bytes:
    return ENDORSE_DOMAIN + pack([link.key_id, link.public_key, link.by])


def endorse(signer: ed25519.Signer, by: int, key_id: int, public_key: bytes) -> Endorsement:
    """Key `by` (private `signer`) vouches for a newer key."""
    link = Endorsement(key_id, public_key, by, b"")
    return Endorsement(key_id, public_key, by, signer.sign(_endorsed_bytes(link)))


@dataclass(frozen=True, slots=True)
class Envelope:
    """A verified batch from the central system."""

    kind: EnvelopeKind
    key_id: int  # the key that signed it
    first: int  # CHANGES/BUNDLE: the revision before the first change; SNAPSHOT: the revision
    last: int  # CHANGES/BUNDLE: the revision of the last change; SNAPSHOT: same as first
    at_ms: int  # when the central system signed it
    changes: tuple[Change, ...]
    next_cursor: tuple[str, Any] | None = None  # SNAPSHOT: where the next chunk starts
    chain: tuple[Endorsement, ...] = ()  # how the signing key descends from an older one
    head: int = 0  # the central system's newest revision when it signed
    # CHANGES of a device with a venue: the revision of each change (the others in
    # first+1..last concern other venues). Empty: the changes are first+1..last, one each.
    revisions: tuple[int, ...] = ()
    # SNAPSHOT and BUNDLE: the venue whose share it holds (with the group's); None: every
    # venue's (docs/protocol.md, "Venues").
    venue: str | None = None

    def since(self, revision: int) -> tuple[Change, ...]:
        """The changes after `revision` (CHANGES/BUNDLE with first <= revision <= last)."""
        if self.revisions:
            return self.changes[bisect.bisect_right(self.revisions, revision) :]
        return self.changes[revision - self.first :]


@dataclass(frozen=True, slots=True)
class PackedChanges:
    """Changes in wire form already packed: `count` msgpack arrays one after another (as the
    central system stores them), sealed as they are instead of decoded and packed again."""

    count: int
    data: bytes


def _pack_map(fields: Mapping[str, Any]) -> bytes:
    """`pack(fields)`, with PackedChanges values written as the array they hold."""
    packer = msgpack.Packer(use_bin_type=True)
    parts = [packer.pack_map_header(len(fields))]
    for name, value in fields.items():
        parts.append(packer.pack(name))
        if isinstance(value, PackedChanges):
            parts += (packer.pack_array_header(value.count), value.data)
        else:
            parts.append(packer.pack(value))
    return b"".join(parts)


def seal(
    kind: EnvelopeKind,
    key_id: int,
    key: ed25519.Signer,
    *,
    first: int,
    last: int,
    at_ms: int,
    changes: Sequence[Change] | Sequence[list[Any]] | PackedChanges,
    next_cursor: tuple[str, Any] | None = None,
    chain: Sequence[Endorsement] = (),
    head: int | None = None,
    revisions: Sequence[int] | None = None,
    venue: str | None = None,
) -> bytes:
    """A signed envelope; `changes` may be Change values, their wire arrays, or those
    packed already. `revisions` (a venue's CHANGES or BUNDLE): the revision of each change,
    where they are fewer than first+1..last. `venue` (SNAPSHOT, BUNDLE): the venue whose share
    it holds."""
    wire: list[Any] | PackedChanges = (
        changes
        if isinstance(changes, PackedChanges)
        else [c if isinstance(c, list) else change_to_wire(c) for c in changes]
    )
    fields: dict[str, Any] = {
        "kind": kind.value,
        "first": first,
        "last": last,
        "head": last if head is None else head,
        "at": at_ms,
        "changes": wire,
        "next": list(next_cursor) if next_cursor is not None else None,
    }
    if revisions is not None:
        fields["revisions"] = list(revisions)
    if venue is not None:
        fields["venue"] = venue
    body = _pack_map(fields)
    return pack(
        {
            "v": VERSION,
            "key": key_id,
            "chain": [[e.key_id, e.public_key, e.by, e.signature] for e in chain],
            "body": body,
            "sig": key.sign(ENVELOPE_DOMAIN + body),
        }
    )


# key id -> (32-byte public key, retired) of every key the reader knows, retired ones included:
# a retired key must be told apart from an unknown one, which an endorsement may introduce.
KeyLookup = Callable[[int], "tuple[bytes, bool] | None"]


def open_envelope(
    data: bytes,
    keys: KeyLookup,
    *,
    limit: int = MAX_ENVELOPE_BYTES,
    kinds: tuple[EnvelopeKind, ...] = tuple(EnvelopeKind),
) -> Envelope:
    """Verify and parse an envelope, or raise ProtocolError saying what is wrong."""
    outer = _Fields(unpack(data, "envelope", limit), "envelope")
    version = outer.integer("v", 0, 1 << 16)
    if version != VERSION:
        raise ProtocolError(
            f"envelope: protocol version {version}; this edge speaks version {VERSION}"
        )
    key_id = outer.integer("key", 0, 0xFFFF)
    body = outer.blob("body")
    signature = outer.blob("sig", 64)
    chain_raw = outer.array("chain")
    if len(chain_raw) > MAX_CHAIN:
        raise ProtocolError(f"envelope: key chain longer than {MAX_CHAIN}")
    chain = []
    for i, link in enumerate(chain_raw):
        if not isinstance(link, list) or len(link) != 4:
            raise ProtocolError(f"envelope.chain[{i}]: must be [key_id, public, by, signature]")
        chain.append(
            Endorsement(
                _int(link[0], f"envelope.chain[{i}].key_id", 0, 0xFFFF),
                _bytes(link[1], f"envelope.chain[{i}].public", 32),
                _int(link[2], f"envelope.chain[{i}].by", 0, 0xFFFF),
                _bytes(link[3], f"envelope.chain[{i}].signature", 64),
            )
        )
    public, path = _signing_key(key_id, chain, keys)
    if not ed25519.verify(public, signature, ENVELOPE_DOMAIN + body):
        raise UntrustedError(f"envelope: the signature does not verify with key {key_id}")
    fields = _Fields(unpack_streaming(body, "envelope body", limit), "envelope body")
    try:
        kind = EnvelopeKind(fields.map.get("kind"))
    except ValueError:
        raise ProtocolError(f"envelope body: unknown kind {fields.map.get('kind')!r}") from None
    if kind not in kinds:
        raise ProtocolError(f"envelope body: a {kind.value} envelope is not accepted here")
    first = fields.integer("first")
    last = fields.integer("last")
    head = fields.integer("head")
    at_ms = fields.integer("at")
    raw_changes = fields.array("changes")
    changes = tuple(
        change_from_wire(c, f"envelope change {i + 1}") for i, c in enumerate(raw_changes)
    )
    next_cursor = None
    revisions: tuple[int, ...] = ()
    if kind is EnvelopeKind.SNAPSHOT:
        if first != last:
            raise ProtocolError("envelope body: a snapshot chunk has first == last")
        raw_next = fields.map.get("next")
        if raw_next is not None:
            next_cursor = snapshot_cursor(raw_next, "envelope body.next")
    elif fields.map.get("revisions") is not None:
        revisions = _revisions(fields.array("revisions"), first, last, len(changes))
    elif last - first != len(changes):
        raise ProtocolError(
            f"envelope body: revisions {first + 1}..{last} but {len(changes)} changes"
        )
    if head < last:
        raise ProtocolError("envelope body: head revision is older than the last change")
    venue = fields.text("venue", optional=True, limit=MAX_VENUE)
    if venue is not None and not venue:
        raise ProtocolError("envelope body.venue: must not be empty")
    return Envelope(
        kind, key_id, first, last, at_ms, changes, next_cursor, path, head, revisions, venue
    )


def _revisions(raw: list[Any], first: int, last: int, count: int) -> tuple[int, ...]:
    """A venue envelope's revision of each change: ascending, within first+1..last."""
    if len(raw) != count:
        raise ProtocolError(f"envelope body: {len(raw)} revisions for {count} changes")
    out = tuple(_int(r, f"envelope body.revisions[{i}]", 0, 1 << 62) for i, r in enumerate(raw))
    previous = first
    for revision in out:
        if revision <= previous or revision > last:
            raise ProtocolError(f"envelope body: revisions must ascend within {first + 1}..{last}")
        previous = revision
    return out


def _signing_key(
    key_id: int, chain: list[Endorsement], keys: KeyLookup
) -> tuple[bytes, tuple[Endorsement, ...]]:
    """The public key of `key_id` and the endorsements that lead to it (docs/security.md).

    A retired key authorizes nothing: it signs no envelope, its endorsements do not count,
    and no endorsement brings it back, at any depth. A key the reader knows is taken as it
    knows it; only keys it has never seen can be introduced, by a chain from an active key.
    """
    known = keys(key_id)
    if known is not None:
        if known[1]:
            raise UntrustedError(f"envelope: signed with key {key_id}, which is retired")
        return known[0], ()
    paths: dict[int, tuple[bytes, tuple[Endorsement, ...]]] = {}
    refused: dict[int, str] = {}
    for i, link in enumerate(chain):
        target, by = keys(link.key_id), keys(link.by)
        voucher: tuple[bytes, tuple[Endorsement, ...]] | None = None
        if target is not None and target[1]:
            reason = f"key {link.key_id} is retired; no endorsement brings it back"
        elif target is not None and target[0] != link.public_key:
            reason = f"key {link.key_id} is known with another public key"
        elif by is not None and by[1]:
            reason = f"key {link.by} is retired; its endorsements no longer count"
        elif by is None and link.by not in paths:
            reason = f"key {link.by} is neither trusted nor endorsed earlier in the chain"
            if link.by in refused:
                reason = f"its voucher, key {link.by}, is refused: {refused[link.by]}"
        else:
            voucher = (by[0], ()) if by is not None else paths[link.by]
            reason = ""
            if not ed25519.verify(voucher[0], link.signature, _endorsed_bytes(link)):
                reason = f"the endorsement of key {link.key_id} by key {link.by} does not verify"
        if reason or voucher is None:
            refused.setdefault(link.key_id, f"chain[{i}]: {reason}")
            continue
        paths.setdefault(link.key_id, (link.public_key, (*voucher[1], link)))
    if key_id in paths:
        return paths[key_id]
    if key_id in refused:
        raise UntrustedError(f"envelope: key {key_id} is not trusted: {refused[key_id]}")
    raise UntrustedError(f"envelope: signed with key {key_id}, which this edge does not trust")


def snapshot_cursor(value: Any, what: str) -> tuple[str, Any]:
    """A snapshot position: [section, last key] (int or 16-byte hash or None)."""
    if not isinstance(value, list) or len(value) != 2 or value[0] not in SNAPSHOT_SECTIONS:
        raise ProtocolError(f"{what}: must be [section, after] with a known section")
    after = value[1]
    if after is not None and not isinstance(after, int | bytes | list):
        raise ProtocolError(f"{what}: position must be an integer, bytes or a pair")
    if isinstance(after, list) and (len(after) != 2 or not isinstance(after[0], str)):
        raise ProtocolError(f"{what}: a passage position is [device, seq]")
    return (value[0], after)


# -- device requests -------------------------------------------------------------------------


def request_signed_bytes(method: str, path: str, time_ms: int, device: str, body: bytes) -> bytes:
    """What a device signs for one request."""
    digest = hashlib.sha256(body).digest()
    line = f"{method.upper()}\n{path}\n{time_ms}\n{device}\n".encode()
    return REQUEST_DOMAIN + line + digest


def sign_request(
    key: ed25519.Signer, device: str, *, method: str, path: str, time_ms: int, body: bytes
) -> dict[str, str]:
    """The headers that authenticate a device's request."""
    signature = key.sign(request_signed_bytes(method, path, time_ms, device, body))
    return {
        VERSION_HEADER: str(VERSION),
        DEVICE_HEADER: device,
        TIME_HEADER: str(time_ms),
        SIGNATURE_HEADER: base64.b64encode(signature).decode("ascii"),
        "Content-Type": CONTENT_TYPE,
    }


def verify_request(
    headers: Mapping[str, str],
    *,
    method: str,
    path: str,
    body: bytes,
    now_ms: int,
    public_key_of: Callable[[str], bytes | None],
) -> str:
    """The authenticated device name, or RequestRejectedError saying why not."""
    version = headers.get(VERSION_HEADER)
    if version != str(VERSION):
        raise RequestRejectedError(
            ErrorCode.UNSUPPORTED_PROTOCOL,
            f"this central system speaks protocol version {VERSION}, the request {version!r}",
        )
    device = headers.get(DEVICE_HEADER, "")
    time_text = headers.get(TIME_HEADER, "")
    signature_text = headers.get(SIGNATURE_HEADER, "")
    if not device or not time_text.isdigit() or not signature_text:
        raise RequestRejectedError(
            ErrorCode.UNAUTHENTICATED,
            f"requests carry {DEVICE_HEADER}, {TIME_HEADER} and {SIGNATURE_HEADER}",
        )
    public = public_key_of(device)
    if public is None:
        raise RequestRejectedError(
            ErrorCode.UNKNOWN_DEVICE, f"device {device[:60]!r} is not registered"
        )
    time_ms = int(time_text)
    if abs(time_ms - now_ms) > REQUEST_MAX_SKEW_MS:
        raise RequestRejectedError(
            ErrorCode.CLOCK_SKEW,
            f"request time is {(time_ms - now_ms) / 1000:+.0f} s from the central clock",
        )
    try:
        signature = base64.b64decode(signature_text, validate=True)
    except binascii.Error:
        signature = b""
    signed = request_signed_bytes(method, path, time_ms, device, body)
    if len(signature) != 64 or not ed25519.verify(public, signature, signed):
        raise RequestRejectedError(
            ErrorCode.UNAUTHENTICATED, "the request signature does not verify"
        )
    return device


class RequestRejectedError(SyncError):
    """A request the central system refuses; becomes an error body."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def channel_path(revision: int) -> str:
    """The path (with query) a device opens, and signs, for its push channel."""
    return f"{CHANNEL_PATH}?revision={revision}"


def push_answer(revision: int, status: str) -> bytes:
    """What an edge answers to a pushed envelope (the POST body, or a channel frame)."""
    return pack({"revision": revision, "status": status})


def parse_push_answer(data: bytes) -> tuple[int, str]:
    """(revision, status) of an edge's answer to a push."""
    answer = fields(data, "push answer", 1 << 10)
    status = answer.text("status", limit=20)
    if status not in PUSH_STATUSES:
        raise ProtocolError(f"push answer.status: {status!r} is not one of {PUSH_STATUSES}")
    return answer.integer("revision"), status


def error_body(code: ErrorCode, message: str, *, time_ms: int | None = None) -> bytes:
    """An error body: what went wrong, for programs (code) and people (message).

    The central system adds its clock (`time`), so a device refused for `clock-skew` learns
    the offset it must sign with (docs/protocol.md, "hello").
    """
    body: dict[str, object] = {"error": code.value, "message": message[:1000], "protocol": VERSION}
    if time_ms is not None:
        body["time"] = time_ms
    return pack(body)


def limit_error_body(status: int, message: str) -> bytes:
    """The error body for what the HTTP limits refuse: 400 malformed, 408 slow, 413 large."""
    return error_body(ErrorCode.TOO_LARGE if status == 413 else ErrorCode.BAD_REQUEST, message)


def parse_error(status: int, data: bytes) -> RemoteError:
    """The error a non-2xx answer stands for (bodies that are not error bodies included)."""
    try:
        fields = _Fields(unpack(data, "error body", 1 << 16), "error body")
        return RemoteError(
            status,
            fields.text("error", limit=40),
            fields.text("message", limit=1000),
            fields.integer("time", optional=True),
        )
    except ProtocolError:
        return RemoteError(status, "http", f"{len(data)} bytes that are not an error body")


# -- journal upload --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JournalRecord:
    """One journal row as uploaded; (device, seq) is its idempotency key."""

    seq: int
    at_ms: int
    lane: str
    direction: str  # "entry" or "exit"
    reason: str
    admitted: bool
    code_hash: bytes | None
    credential_id: int | None


MAX_JOURNAL_BATCH = 10_000


def journal_to_wire(records: Sequence[JournalRecord]) -> bytes:
    """A journal upload body."""
    return journal_rows_to_wire(
        [
            (
                r.seq,
                r.at_ms,
                r.lane,
                r.direction,
                r.reason,
                r.admitted,
                r.code_hash,
                r.credential_id,
            )
            for r in records
        ]
    )


def journal_rows_to_wire(rows: Sequence[Sequence[Any]]) -> bytes:
    """A journal upload body of rows in JournalRecord's field order (no objects: an upload
    batch of the edge packs straight from its journal's rows)."""
    return pack({"entries": rows})


def journal_from_wire(data: bytes) -> list[JournalRecord]:
    """Parse a journal upload body strictly."""
    fields = _Fields(unpack(data, "journal", MAX_REQUEST_BYTES), "journal")
    rows = fields.array("entries")
    if len(rows) > MAX_JOURNAL_BATCH:
        raise ProtocolError(f"journal: {len(rows)} entries, at most {MAX_JOURNAL_BATCH} a batch")
    out = []
    for i, row in enumerate(rows):
        w = f"journal.entries[{i}]"
        if not isinstance(row, list) or len(row) != 8:
            raise ProtocolError(f"{w}: must be an array of 8 items")
        direction = printable(row[3], f"{w}.direction")
        if direction not in ("entry", "exit"):
            raise ProtocolError(f"{w}.direction: must be entry or exit")
        out.append(
            JournalRecord(
                seq=_int(row[0], f"{w}.seq", 1),
                at_ms=_int(row[1], f"{w}.at"),
                lane=printable(row[2], f"{w}.lane"),
                direction=direction,
                reason=printable(row[4], f"{w}.reason", 40),
                admitted=_bool(row[5], f"{w}.admitted"),
                code_hash=None if row[6] is None else _bytes(row[6], f"{w}.code_hash", _HASH),
                credential_id=None if row[7] is None else _int(row[7], f"{w}.credential_id"),
            )
        )
    return out


def fields(data: bytes, what: str, limit: int = 1 << 16) -> _Fields:
    """A small msgpack map body with typed, named access (hello, changes requests)."""
    return _Fields(unpack(data, what, limit), what)
