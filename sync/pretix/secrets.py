"""pretix ticket secrets: the pretix_sig1 signed scheme, parsed and verified without I/O.

pretix (src/pretix/base/secrets.py, Sig1TicketSecretGenerator) builds a secret as

    0x01                      version
    uint16 big-endian  n      payload length
    uint16 big-endian  m      signature length (64: Ed25519)
    n bytes                   protobuf message Ticket (pretix_sig1.proto)
    m bytes                   Ed25519 signature of the payload, no prefix or domain tag

then base64-encodes it and REVERSES the text. The Ticket message is

    string seed = 1;  int64 item = 2;  int64 variation = 3;  int64 subevent = 4;
    optional int64 validFromUnixTime = 5;  optional int64 validUntilUnixTime = 6;

with 0 meaning "none" for ids and times. Five small fields do not justify the protobuf
runtime as a dependency: `decode_ticket` reads the wire format directly.

pretix itself decodes leniently (non-alphabet characters skipped, trailing bytes ignored).
Here one ticket has exactly one text: the base64 must be canonical and the lengths exact,
because revocations are matched by the hash of the text, and a second spelling of a revoked
secret would otherwise pass a gate.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

from edge.core.codes import code_hash, varint
from edge.core.errors import CodeError

SIG1_VERSION = 0x01  # first byte of a pretix_sig1 secret
HEADER_SIZE = 5  # version, payload length, signature length
SIGNATURE_SIZE = 64  # Ed25519
MAX_PAYLOAD = 1024  # pretix's payload is ~30 bytes; a scanner cannot read much more anyway
MAX_SECRET_LENGTH = 512  # the scan path's bound on any code (edge.core.codes.MAX_SCAN_TEXT)
MAX_KEY_TEXT = 4096  # base64 of a PEM public key is ~150 characters
_B64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
_MAX_VARINT_BYTES = 10
_INT64 = 1 << 64

# Protobuf wire types (https://protobuf.dev/programming-guides/encoding/).
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


@dataclass(frozen=True, slots=True)
class Ticket:
    """The pretix_sig1 Ticket message; 0 in an id means none."""

    seed: str  # random, makes each secret unique
    item: int  # pretix product (Item) id
    variation: int = 0
    subevent: int = 0  # date of an event series; 0 for a single event
    valid_from: datetime | None = None  # position's own validity, if pretix set one
    valid_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Sig1Secret:
    """A parsed pretix_sig1 secret; the signature is not verified yet."""

    ticket: Ticket
    payload: bytes  # what the signature covers
    signature: bytes
    hash: bytes  # secret_hash of the text: what revocations and the journal keep


def secret_hash(text: str) -> bytes:
    """The 16-byte identifier the store keeps for a pretix secret (signed or random)."""
    return code_hash(b"pretix", text.encode("ascii"))


def looks_sig1(text: str) -> bool:
    """True if `text` can only be meant as a pretix_sig1 secret (reversed base64 of 0x01...)."""
    # Reversed, the text ends with the base64 of the version byte and the payload length:
    # "AQA" / "AQB"... pretix's random secrets (lower case and digits) never end like this.
    return len(text) > 100 and text[-2:] == "QA" and _B64_ALPHABET.issuperset(text)


def parse_sig1(text: str) -> Sig1Secret:
    """Parse a pretix_sig1 secret, or raise CodeError naming what is wrong."""
    if len(text) > MAX_SECRET_LENGTH:
        raise CodeError(f"pretix secret of {len(text)} characters (at most {MAX_SECRET_LENGTH})")
    forward = text[::-1]
    try:
        raw = base64.b64decode(forward, validate=True)
    except (binascii.Error, ValueError) as err:
        raise CodeError(f"pretix secret is not base64: {err}") from None
    if base64.b64encode(raw).decode("ascii") != forward:
        raise CodeError("pretix secret is not canonical base64")
    if len(raw) < HEADER_SIZE:
        raise CodeError("pretix secret is shorter than its header")
    if raw[0] != SIG1_VERSION:
        raise CodeError(f"pretix secret version {raw[0]} is not supported (this gate reads 1)")
    payload_size, signature_size = struct.unpack(">HH", raw[1:HEADER_SIZE])
    if signature_size != SIGNATURE_SIZE:
        raise CodeError(f"pretix secret has a {signature_size}-byte signature (Ed25519: 64)")
    if payload_size > MAX_PAYLOAD:
        raise CodeError(f"pretix secret payload of {payload_size} bytes (at most {MAX_PAYLOAD})")
    if len(raw) != HEADER_SIZE + payload_size + signature_size:
        raise CodeError(
            f"pretix secret has {len(raw)} bytes, its header says "
            f"{HEADER_SIZE + payload_size + signature_size}"
        )
    payload = raw[HEADER_SIZE : HEADER_SIZE + payload_size]
    signature = raw[HEADER_SIZE + payload_size :]
    return Sig1Secret(decode_ticket(payload), payload, signature, secret_hash(text))


class _Wire:
    """Bounds-checked reads of protobuf wire format."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    @property
    def done(self) -> bool:
        return self._pos >= len(self._data)

    def varint(self) -> int:
        value = 0
        for index in range(_MAX_VARINT_BYTES):
            if self._pos >= len(self._data):
                raise CodeError("pretix ticket payload ends inside a number")
            byte = self._data[self._pos]
            self._pos += 1
            value |= (byte & 0x7F) << (7 * index)
            if not byte & 0x80:
                return value & (_INT64 - 1)
        raise CodeError("pretix ticket payload has a number longer than 10 bytes")

    def take(self, size: int) -> bytes:
        end = self._pos + size
        if end > len(self._data):
            raise CodeError("pretix ticket payload ends inside a field")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk


def _int64(value: int) -> int:
    """A varint's 64 bits as protobuf int64 (two's complement)."""
    return value - _INT64 if value >= _INT64 >> 1 else value


def _time(seconds: int) -> datetime | None:
    if seconds == 0:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise CodeError(f"pretix ticket has an impossible time {seconds}") from None


def decode_ticket(payload: bytes) -> Ticket:
    """The Ticket message from protobuf bytes; unknown fields are skipped as protobuf does."""
    wire = _Wire(payload)
    seed = ""
    numbers = {2: 0, 3: 0, 4: 0, 5: 0, 6: 0}
    while not wire.done:
        tag = wire.varint()
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise CodeError("pretix ticket payload has field number 0")
        if wire_type == _VARINT:
            value = wire.varint()
            if number in numbers:
                numbers[number] = _int64(value)
        elif wire_type == _LEN:
            chunk = wire.take(wire.varint())
            if number == 1:
                try:
                    seed = chunk.decode("utf-8")
                except UnicodeDecodeError:
                    raise CodeError("pretix ticket seed is not UTF-8") from None
            elif number in numbers:
                raise CodeError(f"pretix ticket field {number} has the wrong wire type")
        elif wire_type == _I64:
            wire.take(8)
        elif wire_type == _I32:
            wire.take(4)
        else:
            raise CodeError(f"pretix ticket payload has wire type {wire_type}")
        if wire_type != _LEN and number == 1:
            raise CodeError("pretix ticket field 1 (seed) has the wrong wire type")
    for number in (2, 3, 4):
        if numbers[number] < 0:
            raise CodeError(f"pretix ticket field {number} is negative")
    return Ticket(
        seed=seed,
        item=numbers[2],
        variation=numbers[3],
        subevent=numbers[4],
        valid_from=_time(numbers[5]),
        valid_until=_time(numbers[6]),
    )


def _varint(value: int) -> bytes:
    return varint(value & (_INT64 - 1))  # protobuf writes negative int64s as 10-byte varints


def encode_ticket(ticket: Ticket) -> bytes:
    """Protobuf bytes of a Ticket as pretix writes them (proto3: zero fields left out)."""
    out = bytearray()
    seed = ticket.seed.encode("utf-8")
    if seed:
        out += _varint(1 << 3 | _LEN) + _varint(len(seed)) + seed
    numbers = (
        ticket.item,
        ticket.variation,
        ticket.subevent,
        int(ticket.valid_from.timestamp()) if ticket.valid_from else 0,
        int(ticket.valid_until.timestamp()) if ticket.valid_until else 0,
    )
    for number, value in enumerate(numbers, start=2):
        # pretix sets the optional validity fields explicitly, so they are written even as 0.
        if value or number >= 5:
            out += _varint(number << 3 | _VARINT) + _varint(value)
    return bytes(out)


def sign_sig1(ticket: Ticket, key: Ed25519PrivateKey) -> str:
    """A pretix_sig1 secret for `ticket` (tests and tools; pretix signs real tickets)."""
    payload = encode_ticket(ticket)
    signature = key.sign(payload)
    raw = bytes([SIG1_VERSION]) + struct.pack(">HH", len(payload), len(signature))
    return base64.b64encode(raw + payload + signature).decode("ascii")[::-1]


def load_key(text: str) -> Ed25519PublicKey:
    """A public key as pretix publishes it in valid_keys: base64 of a PEM Ed25519 key."""
    if len(text) > MAX_KEY_TEXT:
        raise CodeError(f"pretix key of {len(text)} characters (at most {MAX_KEY_TEXT})")
    try:
        pem = base64.b64decode(text, validate=True)
        key = load_pem_public_key(pem)
    except (binascii.Error, ValueError, UnsupportedAlgorithm) as err:
        raise CodeError(f"pretix key is not base64 of a PEM public key: {err}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise CodeError(f"pretix key is a {type(key).__name__}, not Ed25519")
    return key


def raw_key(key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of a public key."""
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def find_key(secret: Sig1Secret, keys: Sequence[Ed25519PublicKey]) -> Ed25519PublicKey | None:
    """The key among `keys` whose signature the secret carries, or None (forged, unknown)."""
    for key in keys:
        try:
            key.verify(secret.signature, secret.payload)
        except InvalidSignature:
            continue
        return key
    return None
