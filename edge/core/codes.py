"""Signed and plain codes: the binary format, its QR-friendly text, parsing and minting.

The format is specified in docs/codes.md; the annotated examples there are checked by tests.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from edge.core.errors import CodeError

if TYPE_CHECKING:  # only a type here: `edge --version` and parsing load no crypto library
    from edge.core.ed25519 import Signer

PREFIX = "EDGE:"  # marks a signed code; QR alphanumeric mode has ':' and capitals
FORMAT_VERSION = 1  # high nibble of the first payload byte
SIGNATURE_SIZE = 64  # Ed25519
# Signatures cover this domain tag followed by the payload, so a signature made for one
# purpose (a code) can never be replayed as another (a sync envelope).
SIGNING_DOMAIN = b"edge-code-v1\x00"

MAX_SCAN_TEXT = 512  # longer input is never a code of ours nor a legacy barcode
MAX_PLAIN_LENGTH = 128  # longest plain code: 1D barcodes and NFC UIDs are far shorter
MAX_CREDENTIAL_ID = 2**63 - 1  # fits SQLite's signed 64-bit INTEGER
MAX_ID = 2**32 - 1  # event and product ids
MAX_REISSUE = 2**16 - 1
MAX_USES = 2**16 - 1
MAX_PASSBACK_MINUTES = 2**16 - 1
MAX_ZONES = 2**32 - 1  # bit n set: zone n admits (zones 0..31)

_FLAG_VALIDITY = 0x04
_FLAG_ZONES = 0x08
_KIND_MASK = 0x03
_B32_RFC4648 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_B32_ALPHABET = frozenset(_B32_RFC4648)
_B32_TO_INT_DIGITS = str.maketrans(_B32_RFC4648, "0123456789abcdefghijklmnopqrstuv")


class Kind(enum.IntEnum):
    """What a credential is."""

    TICKET = 0  # admits to an event or a day
    PASS = 1  # annual or season pass, usually with re-entry
    VOUCHER = 2  # redeemed at a counter, never opens a gate


class PolicyKind(enum.IntEnum):
    """How often a credential admits."""

    SINGLE = 0  # one entry
    MULTI = 1  # a fixed number of entries
    UNLIMITED = 2  # re-entry at will, with an optional anti-passback window


@dataclass(frozen=True, slots=True)
class EntryPolicy:
    """Entry rule of a credential."""

    kind: PolicyKind
    uses: int = 1  # entries allowed for SINGLE (1) and MULTI (2..MAX_USES); 0 for UNLIMITED
    passback_minutes: int = 0  # UNLIMITED only: no second entry this long after an entry

    @classmethod
    def single(cls) -> EntryPolicy:
        """One entry."""
        return cls(PolicyKind.SINGLE, 1, 0)

    @classmethod
    def multi(cls, uses: int) -> EntryPolicy:
        """`uses` entries."""
        return cls(PolicyKind.MULTI, uses, 0)

    @classmethod
    def unlimited(cls, passback_minutes: int = 0) -> EntryPolicy:
        """Re-entry at will; a second entry within the window without an exit is passback."""
        return cls(PolicyKind.UNLIMITED, 0, passback_minutes)

    def __post_init__(self) -> None:
        if self.kind is PolicyKind.SINGLE and (self.uses != 1 or self.passback_minutes):
            raise CodeError("a single-use policy has uses=1 and no passback window")
        if self.kind is PolicyKind.MULTI and (
            not 2 <= self.uses <= MAX_USES or self.passback_minutes
        ):
            raise CodeError(f"a multi-use policy needs 2..{MAX_USES} uses and no passback window")
        if self.kind is PolicyKind.UNLIMITED and (
            self.uses or not 0 <= self.passback_minutes <= MAX_PASSBACK_MINUTES
        ):
            raise CodeError(
                f"an unlimited policy has a passback window of 0..{MAX_PASSBACK_MINUTES}"
            )


@dataclass(frozen=True, slots=True)
class Validity:
    """A validity window, both ends inclusive, aware UTC, whole seconds."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise CodeError("validity times must be timezone-aware")
        if self.end < self.start:
            raise CodeError("validity ends before it starts")


@dataclass(frozen=True, slots=True)
class Claims:
    """What a signed code states about its credential."""

    key_id: int
    credential_id: int
    kind: Kind
    event_id: int = 0  # 0: not bound to an event
    product_id: int = 0
    policy: EntryPolicy = EntryPolicy(PolicyKind.SINGLE)
    validity: Validity | None = None
    zones: int = 0  # bitmask of zones that admit; 0: every zone
    reissue: int = 0  # counts replacements of a lost card: each one is a new code


@dataclass(frozen=True, slots=True)
class SignedCode:
    """A parsed signed code; the signature is not verified yet (that needs the key)."""

    claims: Claims
    signed: bytes  # SIGNING_DOMAIN + payload: what the signature covers
    signature: bytes
    hash: bytes  # identifies this code (not the credential) in revocations and the journal


@dataclass(frozen=True, slots=True)
class PlainCode:
    """A legacy barcode or NFC UID; valid only if synced data knows its hash."""

    hash: bytes


Code = SignedCode | PlainCode


def code_hash(kind: bytes, data: bytes) -> bytes:
    """The 16-byte identifier the store keeps instead of a code (docs/codes.md, 'Hashes')."""
    return hashlib.blake2b(data, digest_size=16, person=b"edge-" + kind).digest()


def plain_hash(text: str) -> bytes:
    """The hash of a plain code as the central system computes it."""
    return code_hash(b"plain", text.encode("ascii"))


def mask(text: str) -> str:
    """A code shortened for logs and displays: at most its last 4 characters, never half."""
    head, body = (PREFIX, text[len(PREFIX) :]) if text.startswith(PREFIX) else ("", text)
    if not body:
        return "…"
    shown = min(4, len(body) // 2)
    return f"{head}…{body[len(body) - shown :]}"


def scan_text(data: bytes) -> str:
    """Scanner bytes as code text, or CodeError saying why they cannot be a code."""
    if not data:
        raise CodeError("empty scan")
    if len(data) > MAX_SCAN_TEXT:
        raise CodeError(f"scan of {len(data)} bytes is longer than any code ({MAX_SCAN_TEXT})")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as err:
        raise CodeError(f"scan has a non-ASCII byte at offset {err.start}") from err
    text = text.strip(" \t\r\n")
    if not text:
        raise CodeError("scan holds only whitespace")
    if not text.isprintable():
        raise CodeError("scan has control characters")
    return text


def parse(data: bytes) -> Code:
    """Parse scanner bytes into a code, or raise CodeError naming what is wrong."""
    text = scan_text(data)
    if text[: len(PREFIX)].upper() == PREFIX:
        return parse_signed(text.upper())
    if len(text) > MAX_PLAIN_LENGTH:
        raise CodeError(f"plain code of {len(text)} characters (at most {MAX_PLAIN_LENGTH})")
    return PlainCode(plain_hash(text))


def parse_signed(text: str) -> SignedCode:
    """Parse the text of a signed code (upper case, with prefix)."""
    body = text[len(PREFIX) :]
    if not body or not _B32_ALPHABET.issuperset(body):
        raise CodeError("signed code has characters outside base32 (A-Z, 2-7)")
    size, spare = divmod(len(body) * 5, 8)
    if spare >= 5:  # a whole character beyond the last byte: no encoder writes that
        raise CodeError("signed code has an impossible base32 length")
    # int() in base 32 decodes the whole body in one C call once the RFC 4648 alphabet is
    # mapped onto Python's base-32 digits (0-9, a-v).
    value = int(body.translate(_B32_TO_INT_DIGITS), 32)
    # Unused trailing bits must be zero: one text per code, so a code has one hash.
    if value & ((1 << spare) - 1):
        raise CodeError("signed code has non-zero padding bits")
    raw = (value >> spare).to_bytes(size, "big")
    if len(raw) <= SIGNATURE_SIZE:
        raise CodeError("signed code is too short to carry a signature")
    payload, signature = raw[:-SIGNATURE_SIZE], raw[-SIGNATURE_SIZE:]
    claims = decode_payload(payload)
    return SignedCode(claims, SIGNING_DOMAIN + payload, signature, code_hash(b"signed", payload))


def _read_varint(data: bytes, pos: int, what: str, maximum: int) -> tuple[int, int]:
    """The unsigned LEB128 at `pos` (minimal length only, at most `maximum`) and the position
    after it."""
    value = shift = 0
    while True:
        if pos >= len(data):
            raise CodeError(f"signed code ends inside {what}")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if value > maximum:
            raise CodeError(f"{what} is out of range")
        if not byte & 0x80:
            if byte == 0 and shift:
                raise CodeError(f"{what} is not minimally encoded")
            return value, pos
        shift += 7


# Lookups by a byte's value: an enum's call costs a microsecond on the scan path.
_KINDS = {kind.value: kind for kind in Kind}
_POLICY_KINDS = {kind.value: kind for kind in PolicyKind}
_SINGLE = EntryPolicy(PolicyKind.SINGLE)


def decode_payload(payload: bytes) -> Claims:
    """Claims from the binary payload (docs/codes.md, 'Payload'). On the scan path: bytes are
    read by index, without a reader object or enum calls."""
    if not payload:
        raise CodeError("signed code ends inside the header")
    head = payload[0]
    if head >> 4 != FORMAT_VERSION:
        raise CodeError(f"signed code format {head >> 4} is not supported (this gate reads 1)")
    kind = _KINDS.get(head & _KIND_MASK)
    if kind is None:
        raise CodeError("signed code has an unknown credential kind")
    if len(payload) < 3:
        raise CodeError("signed code ends inside the key id")
    key_id = payload[1] << 8 | payload[2]
    credential_id, pos = _read_varint(payload, 3, "the credential id", MAX_CREDENTIAL_ID)
    reissue, pos = _read_varint(payload, pos, "the reissue count", MAX_REISSUE)
    event_id, pos = _read_varint(payload, pos, "the event id", MAX_ID)
    product_id, pos = _read_varint(payload, pos, "the product id", MAX_ID)
    if pos >= len(payload):
        raise CodeError("signed code ends inside the entry policy")
    policy_kind = _POLICY_KINDS.get(payload[pos])
    pos += 1
    if policy_kind is None:
        raise CodeError("signed code has an unknown entry policy")
    if policy_kind is PolicyKind.MULTI:
        uses, pos = _read_varint(payload, pos, "the number of uses", MAX_USES)
        policy = EntryPolicy(policy_kind, uses, 0)
    elif policy_kind is PolicyKind.UNLIMITED:
        window, pos = _read_varint(payload, pos, "the passback window", MAX_PASSBACK_MINUTES)
        policy = EntryPolicy(policy_kind, 0, window)
    else:
        policy = _SINGLE
    validity = None
    if head & _FLAG_VALIDITY:
        if pos + 8 > len(payload):
            raise CodeError("signed code ends inside the validity window")
        start, end = struct.unpack_from(">II", payload, pos)
        pos += 8
        validity = Validity(datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC))
    zones = 0
    if head & _FLAG_ZONES:
        zones, pos = _read_varint(payload, pos, "the zones", MAX_ZONES)
        if not zones:
            raise CodeError("signed code has an empty zone set")
    if pos != len(payload):
        raise CodeError("signed code has trailing bytes")
    return Claims(
        key_id=key_id,
        credential_id=credential_id,
        kind=kind,
        event_id=event_id,
        product_id=product_id,
        policy=policy,
        validity=validity,
        zones=zones,
        reissue=reissue,
    )


def varint(value: int) -> bytes:
    """LEB128 bytes of a non-negative integer (7 bits a byte, low first; protobuf's varint)."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _varint(value: int, what: str, maximum: int) -> bytes:
    if not 0 <= value <= maximum:
        raise CodeError(f"{what} must be 0..{maximum}, not {value}")
    return varint(value)


def _epoch(moment: datetime) -> int:
    seconds = int(moment.timestamp())
    if not 0 <= seconds <= 2**32 - 1:
        raise CodeError("validity times must lie between 1970 and 2106")
    return seconds


def encode_payload(claims: Claims) -> bytes:
    """The binary payload for claims; raises CodeError for values the format cannot carry."""
    if not 0 <= claims.key_id <= 0xFFFF:
        raise CodeError(f"key id must be 0..65535, not {claims.key_id}")
    head = FORMAT_VERSION << 4 | int(claims.kind)
    if claims.validity is not None:
        head |= _FLAG_VALIDITY
    if claims.zones:
        head |= _FLAG_ZONES
    parts = [
        bytes([head]),
        struct.pack(">H", claims.key_id),
        _varint(claims.credential_id, "credential id", MAX_CREDENTIAL_ID),
        _varint(claims.reissue, "reissue count", MAX_REISSUE),
        _varint(claims.event_id, "event id", MAX_ID),
        _varint(claims.product_id, "product id", MAX_ID),
        bytes([int(claims.policy.kind)]),
    ]
    if claims.policy.kind is PolicyKind.MULTI:
        parts.append(_varint(claims.policy.uses, "uses", MAX_USES))
    elif claims.policy.kind is PolicyKind.UNLIMITED:
        parts.append(_varint(claims.policy.passback_minutes, "passback", MAX_PASSBACK_MINUTES))
    if claims.validity is not None:
        parts.append(struct.pack(">II", _epoch(claims.validity.start), _epoch(claims.validity.end)))
    if claims.zones:
        parts.append(_varint(claims.zones, "zones", MAX_ZONES))
    return b"".join(parts)


def mint(claims: Claims, key: Signer) -> str:
    """The text of a signed code for claims, signed with `key` (which must be key_id's)."""
    payload = encode_payload(claims)
    signature = key.sign(SIGNING_DOMAIN + payload)
    return PREFIX + base64.b32encode(payload + signature).decode("ascii").rstrip("=")
